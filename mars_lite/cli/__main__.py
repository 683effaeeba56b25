"""``python -m mars_lite.cli ...`` (what ``torchrun -m mars_lite.cli train ...`` runs)."""
from .main import main

raise SystemExit(main())
