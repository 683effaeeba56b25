"""CI keeps the full-mode path of the study notebooks alive (issue 14, item 7).

Full mode reads a real benchmark split with ViT-B-32; CI has neither the benchmark nor the
weights nor a GPU. So the fixture builds Sketchy-Extended in SAKE's exact layout
(``<data>/sake/dataset/Sketchy/...``, what ``mars-lite data download sketchy`` leaves) for every
class of ``sketchy_split2`` — the default full-mode split — from copies of the built-in
mini_sbir images (any class's images: they are only there so that the code paths run), and the
notebooks 00-08 run in full mode with ViT-B-32 at random weights (``WEIGHTS="none"``) on the CPU.

Skipped, and only under random weights (``setup.pretrained is None``): the science assertions
that need real weights (the backbone beats random ranking, the converted sketch closes the gap,
training lifts the validation mAP, the ablation's comparison); each notebook prints what it skipped
and why. Everything else — data layout, split, training, checkpoint reuse, evaluation, ablation,
the demo — runs as it would on the real benchmark.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from mars_lite import study
from mars_lite.data.splits import load_split
from mars_lite.settings import REPO_DIR

SPLIT = "sketchy_split2"  # the default full-mode split; 125 classes (TU-Berlin has 250, QuickDraw 110 in its own layout)
NOTEBOOKS = REPO_DIR / "notebooks"
SKETCHY = Path("sake") / "dataset" / "Sketchy"  # SAKE's zip wraps the data like this
SKETCH_DIR = "256x256/sketch/tx_000000000000_ready"
PHOTO_DIR = "256x256/photo/tx_000000000000_ready"
EXTENDED_DIR = "EXTEND_image_sketchy_ready"


def build_sake_sketchy(root: Path, mini_sbir: Path, split_name: str = SPLIT) -> dict[str, int]:
    """Sketchy-Extended in SAKE's layout under ``root/sake`` for every class of ``split_name``.

    Seen classes: 1 sketch and 1 photo that the split's validation rule leaves to training, and
    for every fourth class 1 more of each that it holds out (so train and validation are both
    there); unseen classes: 2 sketches, 1 original and 1 extended photo. File names follow
    Sketchy's (``<photo>.jpg``, ``<photo>-<n>.png``). Returns the number of files per modality.
    """
    from mars_lite.data.items import ImageItem

    split = load_split(split_name)
    sources = {"sketch": sorted((mini_sbir / "sketch").glob("*/*.png")),
               "photo": sorted((mini_sbir / "photo").glob("*/*.JPEG"))}
    base = root / SKETCHY
    counts = {"sketch": 0, "photo": 0}
    n = 0

    def place(folder: str, modality: str, label: str, val: bool | None) -> None:
        """Copy the next real image into ``folder/label``, named so that it is (not) held out."""
        nonlocal n
        source = sources[modality][n % len(sources[modality])]
        while True:
            n += 1
            name = f"{source.stem}_{n}" + ("-1.png" if modality == "sketch" else ".jpg")
            target = base / folder / label / name
            if val is None or split.val.is_val(ImageItem(target, modality, label)) == val:
                break
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        counts[modality] += 1

    for i, label in enumerate(sorted(split.classes)):
        if label in split.unseen:
            plan = [(SKETCH_DIR, "sketch", None)] * 2 + [(PHOTO_DIR, "photo", None), (EXTENDED_DIR, "photo", None)]
        else:
            plan = [(SKETCH_DIR, "sketch", False), (PHOTO_DIR if i % 2 else EXTENDED_DIR, "photo", False)]
            if i % 4 == 0:
                plan += [(SKETCH_DIR, "sketch", True), (PHOTO_DIR, "photo", True)]
        for folder, modality, val in plan:
            place(folder, modality, label, val)
        for folder in (SKETCH_DIR, PHOTO_DIR, EXTENDED_DIR):  # every class has its folders, as shipped
            (base / folder / label).mkdir(parents=True, exist_ok=True)
    return counts


@pytest.fixture()
def full_mode_env(tmp_path, mini_sbir, monkeypatch):
    """The environment of a full-mode run: a data root holding only the benchmark, artifacts in
    ``tmp_path``, full mode (the notebook kernels inherit ``os.environ``)."""
    data = tmp_path / "data"
    counts = build_sake_sketchy(data, mini_sbir)
    monkeypatch.setenv("MARS_LITE_DATA", str(data))
    monkeypatch.setenv("MARS_LITE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MARS_LITE_FAST", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "2"))
    for name in ("MARS_LITE_MODEL", "MARS_LITE_WEIGHTS", "MARS_LITE_DEVICE"):
        monkeypatch.delenv(name, raising=False)
    return data, counts


def test_fixture_is_the_sake_layout_of_the_whole_split(tmp_path, mini_sbir):
    from mars_lite.data import check_layout, sketchy_extended

    counts = build_sake_sketchy(tmp_path, mini_sbir)
    summary = check_layout("sketchy", tmp_path / "sake")  # all 125 classes in every folder
    assert summary["classes"] == 125 and summary["files"] == counts
    assert sketchy_extended(tmp_path / "sake").counts() == counts
    assert sum(counts.values()) < 400  # ViT-B-32 embeds ~20 images/s on two CPU cores


# The notebook parameters of the run: ViT-B-32 with random weights on the CPU, frozen training.
COMMON = {"SEED": 0, "FULL_SPLIT": SPLIT, "MODEL": "ViT-B-32", "WEIGHTS": "none", "DEVICE": "cpu"}
TRAINING = {"EPOCHS": 8, "BATCH_SIZE": 16, "TRAIN_MODE": "frozen"}


def _outputs(nb) -> str:
    text = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            text.append(out.get("text", "") if out.get("output_type") == "stream"
                        else data.get("text/markdown") or json.dumps(data.get("text/plain", "")))
    return "\n".join(text)


@pytest.mark.slow  # ~4-5 min on two CPU cores; CI runs it (pyproject: slow tests still run in CI)
def test_notebooks_run_in_full_mode_with_random_vit_b_32(full_mode_env, tmp_path):
    import nbformat

    data, _ = full_mode_env
    full_data = str(data / "sake")
    params = {
        "00_setup_and_tour": {**COMMON, "FULL_DATA": full_data},
        "01_data_and_zero_shot_splits": {**COMMON, "FULL_DATA": full_data, "PER_ROW": 1},
        "02_clip_baseline_and_modality_gap": {**COMMON, "FULL_DATA": full_data},
        "03_train_mars": {**COMMON, **TRAINING, "FULL_DATA": full_data},
        "04_modality_gap_before_after": {**COMMON, **TRAINING, "FULL_DATA": full_data},
        "05_evaluate_and_ablate": {**COMMON, **TRAINING, "FULL_DATA": full_data, "ABLATION_EPOCHS": 2},
        # no FULL_DATA: the benchmark is found under MARS_LITE_DATA, which holds nothing else
        "06_live_sketch_query": {**COMMON, **TRAINING},
        "07_captions_matter": {**COMMON, "FULL_DATA": full_data, "SEEDS": 2, "EPOCHS": 3, "SHARES": [0.0, 0.6]},
        "08_your_own_photos": {**COMMON, **TRAINING},
    }
    seconds, printed = {}, {}
    for name, parameters in params.items():
        start = time.perf_counter()
        out = study.run_notebook(NOTEBOOKS / f"{name}.ipynb", parameters, out=tmp_path / "executed" / f"{name}.ipynb",
                                 timeout=600)
        seconds[name] = round(time.perf_counter() - start, 1)
        printed[name] = _outputs(nbformat.read(out, as_version=4))
        assert "Mode: full" in printed[name], name
    print("seconds per notebook:", seconds)
    # notebook 03's checkpoint is reused by 04-06, not retrained with another config
    home = tmp_path / "home" / "study" / "full"
    assert (home / "train" / "best.safetensors").is_file()
    # the skipped science assertions are said aloud, with the reason
    for name in ("02_clip_baseline_and_modality_gap", "03_train_mars", "04_modality_gap_before_after",
                 "05_evaluate_and_ablate", "07_captions_matter", "08_your_own_photos"):
        assert "skipped" in printed[name] and "random weights" in printed[name], (name, printed[name][-2000:])


# ------------------------------------------------------------ the setup behind the full-mode run
@pytest.fixture()
def full_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MARS_LITE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MARS_LITE_FAST", raising=False)
    return tmp_path


@pytest.mark.parametrize("fast", [False, True])
def test_random_weights_reach_the_training_config(full_env, fast):
    """``WEIGHTS="none"`` trains at random weights too; a ``None`` override used to fall back on
    the config's OpenAI weights (and fail offline, or train another backbone than the notebooks')."""
    setup = study.load_study_setup(fast=fast, full_split=SPLIT, full_data=full_env, model="ViT-B-32", weights="none")
    assert setup.pretrained is None and setup.random_weights
    config = study.study_train_config(setup)
    assert (config.model, config.pretrained) == ("ViT-B-32", "none")
    trained = study.load_study_setup(fast=fast, full_split=SPLIT, full_data=full_env, model="ViT-B-32",
                                     weights="openai")
    assert study.study_train_config(trained).pretrained == "openai" and not trained.random_weights


def test_later_notebooks_rebuild_notebook_03s_training_config(full_env):
    """Notebooks 04-06 pass 03's EPOCHS / BATCH_SIZE / TRAIN_MODE to the setup, so that
    ``ensure_checkpoint`` finds 03's checkpoint instead of training the default config again."""
    options = dict(full_split=SPLIT, full_data=full_env, model="ViT-B-32", weights="none")
    in_03 = study.study_train_config(study.load_study_setup(batch_size=16, train_mode="frozen", **options), epochs=8)
    later = study.study_train_config(study.load_study_setup(batch_size=16, train_mode="frozen", epochs=8, **options))
    assert later == in_03 and (later.mode, later.epochs, later.batch_size) == ("frozen", 8, 16)
    assert study.study_train_config(study.load_study_setup(**options)) != in_03


def test_science_checks_are_skipped_aloud_only_for_random_weights(full_env, capsys):
    random = study.load_study_setup(full_split=SPLIT, full_data=full_env, model="ViT-B-32", weights="none")
    assert random.science_check("the gap closes") is False
    said = capsys.readouterr().out
    assert "skipped: the gap closes" in said and "random backbone weights" in said
    standin = study.load_study_setup(fast=True)  # the stand-in has pretrained None too, but real weights
    real = study.load_study_setup(full_split=SPLIT, full_data=full_env, weights="openai")
    assert standin.science_check("x") and real.science_check("x") and capsys.readouterr().out == ""


def test_run_notebook_keeps_an_nbformat_4_4_notebook_valid(tmp_path):
    """Notebook 00 is nbformat 4.4, which has no cell ids: the injected cell must not carry one
    (it made the executed copy invalid, which nbformat reported as an error on every run)."""
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("X = 1", metadata={"tags": ["parameters"]}),
                                         nbformat.v4.new_code_cell("assert X == 2")])
    nb.nbformat_minor = 4
    for cell in nb.cells:
        cell.pop("id")
    src = tmp_path / "old.ipynb"
    nbformat.write(nb, src)
    done = nbformat.read(study.run_notebook(src, {"X": 2}, out=tmp_path / "done.ipynb"), as_version=4)
    assert done.nbformat_minor == 4 and "id" not in done.cells[1]
    nbformat.validate(done)
