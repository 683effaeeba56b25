"""nbval runs these notebooks in kernels that inherit this environment: fast mode (CPU sizes),
offline, quiet progress bars — also when only ``pytest --nbval-lax notebooks/`` is run."""
from __future__ import annotations

import os

os.environ.setdefault("MARS_LITE_FAST", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
