"""Measure the ``mobilenet-minilm`` stand-in (before any MARS training).

Reports, with the shipped weights run end to end on the image files (``encode_image`` /
``encode_text`` of ``mars_lite.method.standin``):
  unseen_map    mini_sbir's unseen classes: 300 sketches vs 300 photos, mAP@all (reference convention)
  zs_acc        zero-shot accuracy on the 660 mini_sbir photos, 11 classes, "a photo of a {class}"
  new_p10       P@10 of TU-Berlin drawings of mini_sbir seen classes that are not in mini_sbir
                (and were not trained on) against the whole 660-photo mini_sbir gallery
  qd_p10_seen   same for Quick, Draw! drawings of camel/cat/elephant/lion (kit's rendering)
  qd_p10_unseen same for Quick, Draw! butterfly/pizza (mini_sbir unseen classes)
  holdout_map   our own held-out classes: TU-Berlin eyeglasses/sheep/wine-bottle sketches vs
                Tiny-ImageNet sunglasses/bighorn/beer+pop bottle photos, mAP@all
  holdout_zs    zero-shot accuracy on the held-out Tiny-ImageNet photos (10 wnids)
  query_ms_p95  one sketch: encode + top-10 over 100k random gallery embeddings, p95 (ms)

    python tools/standin/measure.py --data DATA [--weights W.safetensors]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import standin_data as D

try:
    from mars_lite.eval.metrics import retrieval_metrics
except ImportError:  # before the package restructuring
    from mars_lite.metrics import retrieval_metrics


def map_all(q: torch.Tensor, g: torch.Tensor, ql, gl) -> float:
    return float(retrieval_metrics((q @ g.T).numpy(), np.array(ql), np.array(gl))["map_all"])


def p_at(q: torch.Tensor, g: torch.Tensor, ql, gl, k: int = 10) -> float:
    top = (q @ g.T).topk(k, dim=1).indices.numpy()
    return float((np.array(gl)[top] == np.array(ql)[:, None]).mean())


def zero_shot(img: torch.Tensor, labels, names: list[str], clip, tokenizer) -> float:
    with torch.no_grad():
        t = clip.encode_text(tokenizer([f"a photo of a {D.pretty(n)}" for n in names]), normalize=True)
    pred = (img @ t.T).argmax(1).numpy()
    return float((np.array(names)[pred] == np.array(labels)).mean())


def metric_rows(data_items: dict, split: dict) -> dict:
    """Index lists of each evaluation role into the item lists (same for cached and file runs)."""
    tb, mp, tiny, qd = data_items["tb"], data_items["mp"], data_items["tiny"], data_items["qd"]
    un, seen = set(split["unseen"]), set(split["seen"])
    hold_s = {"eyeglasses", "sheep", "wine-bottle"}
    return {
        "un_q": [i for i, it in enumerate(tb) if it["in_mini"] and it["name"] in un],
        "un_g": [i for i, it in enumerate(mp) if it["name"] in un],
        "new_q": [i for i, it in enumerate(tb) if not it["in_mini"] and it["name"] in seen],
        "qd_seen": [i for i, it in enumerate(qd) if it["name"] in seen],
        "qd_unseen": [i for i, it in enumerate(qd) if it["name"] in un],
        "ho_q": [i for i, it in enumerate(tb) if it["name"] in hold_s],
        "ho_g": [i for i, it in enumerate(tiny) if D.HOLDOUT_WNIDS.get(it["wnid"]) in hold_s],
        "ho_zs": [i for i, it in enumerate(tiny) if it["wnid"] in D.HOLDOUT_WNIDS],
    }


def compute(emb: dict, items: dict, split: dict, clip, tokenizer) -> dict:
    """emb: {"tb", "mp", "tiny", "qd"} -> (N,D) normalised embeddings aligned with items."""
    r = metric_rows(items, split)
    lab = {k: [it["name"] for it in v] for k, v in items.items()}
    sel = lambda key, rows: (emb[key][rows], [lab[key][i] for i in rows])  # noqa: E731
    out = {}
    q, ql = sel("tb", r["un_q"])
    g, gl = sel("mp", r["un_g"])
    out["unseen_map"] = map_all(q, g, ql, gl)
    out["zs_acc"] = zero_shot(emb["mp"], lab["mp"], sorted(set(lab["mp"])), clip, tokenizer)
    q, ql = sel("tb", r["new_q"])
    out["new_p10"] = p_at(q, emb["mp"], ql, lab["mp"])
    for name in ("qd_seen", "qd_unseen"):
        q, ql = sel("qd", r[name])
        out[f"{name.replace('qd_', 'qd_p10_')}"] = p_at(q, emb["mp"], ql, lab["mp"])
    q, ql = sel("tb", r["ho_q"])
    g = emb["tiny"][r["ho_g"]]
    gl = [D.HOLDOUT_WNIDS[items["tiny"][i]["wnid"]] for i in r["ho_g"]]
    out["holdout_map"] = map_all(q, g, ql, gl)
    words = {it["wnid"]: it["name"] for it in items["tiny"]}
    wn = sorted({items["tiny"][i]["wnid"] for i in r["ho_zs"]})
    out["holdout_zs"] = zero_shot(emb["tiny"][r["ho_zs"]], [words[items["tiny"][i]["wnid"]] for i in r["ho_zs"]],
                                  [words[w] for w in wn], clip, tokenizer)
    return {k: round(v, 4) for k, v in out.items()}


@torch.no_grad()
def cached_metrics(clip, tokenizer, sets: dict, split: dict, thicken: int) -> dict:
    """The metrics from the cached frozen-prefix maps (fast; used while training)."""
    clip.eval()
    emb = {}
    for key, set_key in (("tb", f"tb_k{thicken}"), ("mp", "mini_photo"), ("tiny", "tiny"), ("qd", f"qd_k{thicken}")):
        maps = sets[set_key][1]
        sketch = torch.full((len(maps),), key in ("tb", "qd"))  # what the gate says, up to its few misses
        emb[key] = torch.cat([F.normalize(clip.visual.head(clip.visual.centre(clip.visual.trunk.forward_from(
            maps[i:i + 512].float(), D.PREFIX_LAYERS), sketch[i:i + 512])), dim=-1)
            for i in range(0, len(maps), 512)])
    items = {"tb": sets[f"tb_k{thicken}"][0], "mp": sets["mini_photo"][0], "tiny": sets["tiny"][0],
             "qd": sets[f"qd_k{thicken}"][0]}
    return compute(emb, items, split, clip, tokenizer)


@torch.no_grad()
def file_metrics(clip, tokenizer, data: Path) -> dict:
    """The metrics end to end from the image files (the shipped path, thickening gate included)."""
    items = {"tb": D.tuberlin_items(data), "mp": D.mini_photo_items(data), "tiny": D.tiny_items(data),
             "qd": D.quickdraw_items(data)}
    split = D.mini_sbir_split(data)
    r = metric_rows(items, split)
    need = {"tb": sorted(set(r["un_q"] + r["new_q"] + r["ho_q"])), "mp": list(range(len(items["mp"]))),
            "tiny": sorted(set(r["ho_g"] + r["ho_zs"])), "qd": sorted(set(r["qd_seen"] + r["qd_unseen"]))}
    emb = {}
    for key, rows in need.items():
        full = torch.zeros(len(items[key]), clip.text_projection.shape[1])
        for s in range(0, len(rows), 64):
            x = torch.stack([D.to_tensor(D.load_rgb(items[key][i])) for i in rows[s:s + 64]])
            full[rows[s:s + 64]] = clip.encode_image(x, normalize=True)
        emb[key] = full
    return compute(emb, items, split, clip, tokenizer)


@torch.no_grad()
def query_latency(clip, data: Path, n_gallery: int = 100_000, runs: int = 50) -> float:
    """p95 ms of: encode one sketch (224x224) + cosine top-10 over ``n_gallery`` fp32 embeddings."""
    g = F.normalize(torch.randn(n_gallery, clip.text_projection.shape[1]), dim=-1)
    x = D.to_tensor(D.load_rgb(D.tuberlin_items(data)[0]))[None]
    times = []
    for i in range(runs + 5):
        t = time.perf_counter()
        q = clip.encode_image(x, normalize=True)
        (g @ q[0]).topk(10)
        if i >= 5:
            times.append((time.perf_counter() - t) * 1000)
    return float(np.percentile(times, 95))


def main() -> None:
    ap = argparse.ArgumentParser(description="Measure the stand-in before MARS (see module docstring).")
    ap.add_argument("--data", required=True,
                    help="folder holding mini_sbir/, tuberlin40/, tiny_imagenet_val/ and quickdraw_bitmap/")
    ap.add_argument("--weights", default=None, help="stand-in weights (default: the shipped file)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from mars_lite.method.standin import build_standin
    t = time.time()
    clip, tokenizer, info = build_standin(args.weights)
    out = {"load_s": round(time.time() - t, 2)}
    out.update(file_metrics(clip, tokenizer, Path(args.data)))
    out["query_ms_p95"] = round(query_latency(clip, Path(args.data)), 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
