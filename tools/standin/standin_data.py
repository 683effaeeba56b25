"""Data for building the ``mobilenet-minilm`` stand-in (shared by pretrain.py and measure.py).

Reads the workshop folders (``tiny_imagenet_val/``, ``tuberlin40/``, ``mini_sbir/``,
``quickdraw_bitmap/``) under a data root given on the command line, applies the zero-shot
exclusions, and caches MobileNet's frozen prefix (stem + blocks 1-12, a (1024,7,7) map per image,
fp16) so that training the heads and the last block costs seconds per epoch.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from mars_lite.method.standin import IMAGE_SIZE, StandinCLIP  # noqa: E402

PREFIX_LAYERS = 25  # stem + 12 blocks frozen and cached; block 13 (layers 25, 26) may train
# Tiny-ImageNet wnids that are mini_sbir unseen classes: never trained on (brief / data README).
UNSEEN_WNIDS = {"n02279972": "butterfly", "n02281406": "butterfly", "n03544143": "hourglass",
                "n07734744": "mushroom", "n07873807": "pizza", "n01742172": "snake"}
# Our own held-out classes (never trained on): a check that the recipe generalises beyond
# mini_sbir. Sketch classes with a photo counterpart in Tiny-ImageNet give a second zero-shot
# sketch->photo test; helicopter/guitar are sketch-only; the photo-only ones test zero-shot
# classification of photos.
HOLDOUT_SKETCH = ["eyeglasses", "sheep", "wine-bottle", "helicopter", "guitar"]
HOLDOUT_WNIDS = {"n04356056": "eyeglasses", "n02415577": "sheep", "n02823428": "wine-bottle",
                 "n03983396": "wine-bottle",  # sunglasses, bighorn, beer bottle, pop bottle
                 "n04146614": "school bus", "n04398044": "teapot", "n07753592": "banana",
                 "n01882714": "koala", "n04507155": "umbrella", "n07749582": "lemon"}
# Tiny-ImageNet synsets pooled into a mini_sbir seen class (for the cross-modal loss).
CONCEPT_OF_WNID = {"n02123045": "cat", "n02123394": "cat", "n02124075": "cat",
                   "n02085620": "dog", "n02094433": "dog", "n02099601": "dog", "n02099712": "dog",
                   "n02106662": "dog", "n02113799": "dog", "n02437312": "camel",
                   "n02504458": "elephant", "n02129165": "lion", "n01443537": "fish"}
QD_CLASSES = ["butterfly", "camel", "cat", "elephant", "lion", "pizza", "helicopter", "sheep"]  # evaluated
QD_TRAIN = ["ant", "bicycle", "cloud", "crown", "key", "keyboard"]  # never evaluated: may train


def pretty(name: str) -> str:
    return name.replace("-", " ").replace("_", " ")


def mini_sbir_split(data: Path) -> dict:
    return json.loads((data / "mini_sbir" / "split_zs.json").read_text())


def tiny_items(data: Path) -> list[dict]:
    """Tiny-ImageNet val photos: {path, wnid, name (first synonym), concept}."""
    root = data / "tiny_imagenet_val"
    words = dict(line.rstrip("\n").split("\t", 1) for line in open(root / "words.txt"))
    items = []
    for line in open(root / "val_annotations.txt"):
        f, wnid = line.split("\t")[:2]
        items.append({"path": str(root / "images" / f), "wnid": wnid,
                      "name": words[wnid].split(",")[0].strip(),
                      "concept": CONCEPT_OF_WNID.get(wnid, UNSEEN_WNIDS.get(wnid, HOLDOUT_WNIDS.get(wnid)))})
    return sorted(items, key=lambda d: d["path"])


def tuberlin_items(data: Path) -> list[dict]:
    """TU-Berlin sketches: {path, name, id, in_mini} (in_mini: also a mini_sbir sketch)."""
    mini = {p.stem for p in (data / "mini_sbir" / "sketch").rglob("*.png")}
    return [{"path": str(p), "name": p.parent.name, "id": p.stem, "in_mini": p.stem in mini}
            for p in sorted((data / "tuberlin40").glob("*/*.png"))]


def mini_photo_items(data: Path) -> list[dict]:
    return [{"path": str(p), "name": p.parent.name}
            for p in sorted((data / "mini_sbir" / "photo").glob("*/*"))]


def quickdraw_items(data: Path, classes: list[str] | None = None) -> list[dict]:
    out = []
    for c in (QD_CLASSES if classes is None else classes):
        arr = np.load(data / "quickdraw_bitmap" / f"{c}.npy")
        out += [{"bitmap": arr[i], "name": c, "row": i} for i in range(len(arr))]
    return out


def render_quickdraw(row: np.ndarray, size: int = 256) -> Image.Image:
    """As mars_lite.data.quickdraw.render_bitmap: ink dark on white, 10% margin, bicubic, levels."""
    try:
        from mars_lite.data.quickdraw import render_bitmap
        return render_bitmap(row, size=size)
    except ImportError:
        a = 255 - np.asarray(row, dtype=np.uint8).reshape(28, 28)
        a = np.pad(a, 3, constant_values=255)
        img = Image.fromarray(a).resize((size, size), Image.Resampling.BICUBIC)
        return img.point(lambda v: int(min(255, max(0, (v - 40) * 255 / 175)))).convert("RGB")


def load_rgb(item: dict) -> Image.Image:
    img = render_quickdraw(item["bitmap"]) if "bitmap" in item else Image.open(item["path"])
    return img.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC)


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB -> (3,H,W) normalised with the stand-in's mean/std 0.5 (i.e. to [-1, 1])."""
    return torch.from_numpy(np.array(img, dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1.0


@torch.no_grad()
def prefix_maps(clip: StandinCLIP, items: list[dict], thicken: int, batch: int = 64,
                flip: bool = False) -> tuple[torch.Tensor, float]:
    """(N,1024,7,7) fp16 maps of the frozen prefix (after the model's sketch thickening), and
    the fraction of items the sketch detector flagged."""
    clip.visual.thicken = thicken
    out, flagged = [], 0
    for s in range(0, len(items), batch):
        x = torch.stack([to_tensor(load_rgb(it)) for it in items[s:s + batch]])
        if flip:
            x = x.flip(-1)
        sketch = clip.visual.is_sketch(x)
        y = clip.visual.prepare(x, sketch)
        flagged += int(sketch.sum())
        out.append(clip.visual.trunk.forward_until(y, PREFIX_LAYERS).half())
    return torch.cat(out), flagged / max(1, len(items))


def cached(cache: Path, key: str, fn):
    """Load ``cache/key.pt`` or compute it with ``fn()`` and save it."""
    path = cache / f"{key}.pt"
    if path.exists():
        return torch.load(path, mmap=True)
    t = time.time()
    value = fn()
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{time.time_ns()}")
    torch.save(value, tmp)
    tmp.replace(path)  # atomic: a concurrent run never reads half a file
    print(f"[cache] {key}: {time.time() - t:.0f}s", flush=True)
    return value
