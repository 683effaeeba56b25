"""Shared fixtures. Tests run offline: a Hub download attempt would otherwise hang ~47 s."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
# The tests read the data built into the package, whatever data folder the developer works with.
os.environ.pop("MARS_LITE_DATA", None)
# ... and the backbone the kit chooses by itself (tests that need another one say so).
for _name in ("MARS_LITE_MODEL", "MARS_LITE_WEIGHTS", "MARS_LITE_DEVICE"):
    os.environ.pop(_name, None)

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from mars_lite import settings  # noqa: E402

PARITY_DIR = Path(__file__).resolve().parent / "fixtures" / "parity"  # computed with the authors' code


def pytest_collection_modifyitems(config, items):
    import torch
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _no_cached_clip_weights(tmp_path_factory, monkeypatch):
    """An empty Hugging Face cache: CLIP weights a developer has cached would change the backbone
    that fast mode and the demo choose (``choose_backbone``); tests see CI's world."""
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path_factory.getbasetemp() / "empty_hf_cache"))


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module (the training tests: steady timings on a shared 2-core CI box)."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real data built into the package (mini_sbir/, quickdraw_bitmap/)."""
    return settings.BUILTIN_DATA_DIR


@pytest.fixture(scope="session")
def mini_sbir(data_root) -> Path:
    path = data_root / "mini_sbir"
    assert path.is_dir(), f"{path} missing: the package ships mini_sbir (reinstall mars_lite)"
    return path


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    assert PARITY_DIR.is_dir(), f"parity vectors not found at {PARITY_DIR}"
    return PARITY_DIR


@pytest.fixture()
def tiny_model():
    """A fresh random-init tiny model (builds in well under a second)."""
    import torch
    from mars_lite import create_model
    torch.manual_seed(0)
    model, preprocess = create_model("tiny")
    return model
