"""The one on-disk format for image embeddings, shared by training, evaluation and the sketch pad.

A cache entry is a folder ``<cache_dir>/<model key>/<item-set key>/`` holding
``embeddings.safetensors`` (the (N, D) float32 L2-normalised CLIP image embeddings z_v, in item
order) and ``manifest.json`` (model config, backbone weights fingerprint, preprocessing, and per
item: path, modality, label, row, size, mtime and a content fingerprint; and the sha256, shape and
dtype of the embeddings file). The model key changes with the weights or the preprocessing; the
item-set key with the list of files. Within an entry, a manifest that does not match the files on
disk (a file was replaced, rewritten or touched) means the cache is stale and is recomputed —
never silently reused.

The embeddings file is bound to its manifest: on reading, its sha256, shape (count, dim), dtype
(float32) and finiteness are checked. An entry that fails (another file copied in, other rows or
width, NaN) is, being a cache, recomputed and overwritten with a warning naming the entry;
``load_embedding_set`` (an explicit read) raises ``EmbeddingCacheError`` instead.

Content fingerprint (``content_fingerprint``): blake2b of the whole file up to 128 KiB, else of
its first and last 64 KiB, read once per file. Images are small, so this is a full hash of nearly
every image: the manifest records of the built-in mini_sbir (1,320 images, 3.5 MB, all < 128 KiB)
take ~43 ms instead of ~32 ms for paths, sizes and mtimes alone (warm page cache). For bigger
files (QuickDraw arrays) a change in the middle that keeps size and mtime goes unseen.

Embeddings are the *original* ones; the retrieval kinds (converted, semantic) are applied on
top with ``MarsModel.retrieval_embedding`` because they depend on the modality vectors, which
change during training while the backbone does not (frozen mode).
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors, save_file

from .errors import MarsLiteError
from .files import atomic_write
from .settings import progress_enabled

FORMAT = "mars_lite.embeddings/2"  # /2: item content fingerprints, embeddings file bound by sha256
EMBEDDINGS_FILE = "embeddings.safetensors"
FINGERPRINT_BLOCK = 64 * 1024


class EmbeddingCacheError(MarsLiteError, ValueError):
    """A cache entry's embeddings file does not match its manifest (replaced, damaged, not finite)."""


@dataclass
class EmbeddingSet:
    """Embeddings of a list of images, in order.

    Attributes:
        embeddings: (N, D) float32, L2-normalised original image embeddings z_v.
        paths, labels, modalities: N entries each (modality "sketch" or "photo").
        manifest: what produced them (see module docstring).
        from_cache: True when read from disk rather than computed by this call.
        location: the cache entry folder, or None when not cached.
    """

    embeddings: torch.Tensor
    paths: list[str]
    labels: list[str]
    modalities: list[str]
    manifest: dict = field(default_factory=dict)
    from_cache: bool = False
    location: Path | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def select(self, modality: str | None = None, labels: Sequence[str] | None = None) -> "EmbeddingSet":
        """The rows of one modality and/or of some classes (order kept)."""
        wanted = None if labels is None else set(labels)
        rows = [i for i, (m, y) in enumerate(zip(self.modalities, self.labels))
                if (modality is None or m == modality) and (wanted is None or y in wanted)]
        index = torch.tensor(rows, dtype=torch.long)
        return EmbeddingSet(self.embeddings[index], [self.paths[i] for i in rows],
                            [self.labels[i] for i in rows], [self.modalities[i] for i in rows],
                            self.manifest, self.from_cache, self.location)


def backbone_fingerprint(model) -> str:
    """sha256 over the image tower's parameters and buffers (names, shapes, values)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.clip.visual.state_dict().items()):
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}{tuple(data.shape)}{data.dtype}".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def content_fingerprint(path: str | Path, size: int) -> str:
    """blake2b (128 bit) of a file of ``size`` bytes: all of it up to 2 blocks, else first + last block."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        if size <= 2 * FINGERPRINT_BLOCK:
            digest.update(handle.read())
        else:
            digest.update(handle.read(FINGERPRINT_BLOCK))
            handle.seek(-FINGERPRINT_BLOCK, os.SEEK_END)
            digest.update(handle.read(FINGERPRINT_BLOCK))
    return digest.hexdigest()


def _item_records(items) -> list[dict]:
    """Manifest record of each item; a file shared by many items (rows of an array) is read once."""
    fingerprints: dict[tuple, str] = {}
    records = []
    for item in items:
        # Resolved, so that a relative and an absolute path to the same data share one entry.
        path = Path(item.path).resolve()
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in fingerprints:
            fingerprints[key] = content_fingerprint(path, stat.st_size)
        records.append({"path": str(path), "modality": item.modality, "label": item.label,
                        "row": getattr(item, "index", None), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                        "content": fingerprints[key]})
    return records


def _sha(payload) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _load_item(item):
    if hasattr(item, "load"):
        return item.load()
    from .data import load_image
    return load_image(item.path)


@torch.inference_mode()
def compute_embeddings(model, items: Sequence, *, batch_size: int = 64,
                       progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """(N, D) float32 normalised image embeddings of ``items`` (anything with ``.path``)."""
    was_training = model.training
    model.eval()
    chunks = []
    try:
        for start in range(0, len(items), batch_size):
            batch = torch.stack([model.preprocess(_load_item(it)) for it in items[start:start + batch_size]])
            chunks.append(model.encode_image(batch, normalize=True).float().cpu())
            if progress is not None:
                progress(min(start + batch_size, len(items)), len(items))
    finally:
        model.train(was_training)
    width = model.embed_dim
    return torch.cat(chunks) if chunks else torch.empty(0, width)


def _tqdm_progress(total: int, desc: str):
    from tqdm.auto import tqdm
    bar = tqdm(total=total, desc=desc, unit="img", disable=not progress_enabled())
    state = {"done": 0}

    def update(done: int, _total: int) -> None:
        bar.update(done - state["done"])
        state["done"] = done
        if done >= total:
            bar.close()
    return update


def model_manifest(model) -> dict:
    """The part of a manifest that identifies the model: config, weights and preprocessing."""
    from dataclasses import asdict
    return {"model_config": asdict(model.config), "pretrained": model.pretrained,
            "backbone_sha256": backbone_fingerprint(model), "preprocess": repr(model.preprocess),
            "dim": model.embed_dim}


def embed_items(model, items: Sequence, cache_dir: str | Path | None = None, *, batch_size: int = 64,
                progress: bool | Callable[[int, int], None] | None = None) -> EmbeddingSet:
    """Embeddings of ``items``, read from ``cache_dir`` when a matching entry exists.

    Args:
        model: a MarsModel (its image tower and preprocessing are used).
        items: sequence of items with ``.path``, ``.modality``, ``.label`` (e.g. folder_dataset).
        cache_dir: root of the cache; ``None`` computes without caching.
        batch_size: images per forward pass.
        progress: ``True`` for a tqdm bar, or a callback ``(done, total)``.
    Returns:
        an EmbeddingSet with ``from_cache`` telling whether the cache was used.
    """
    records = _item_records(items)
    manifest = {"format": FORMAT, **model_manifest(model), "count": len(records), "items": records}
    callback = _tqdm_progress(len(items), "embedding") if progress is True else (progress or None)
    if cache_dir is None:
        emb = compute_embeddings(model, items, batch_size=batch_size, progress=callback)
        return _from_records(emb, records, manifest, from_cache=False)
    model_key = _sha({k: manifest[k] for k in ("model_config", "pretrained", "backbone_sha256", "preprocess")})
    set_key = _sha([(r["path"], r["row"], r["modality"], r["label"]) for r in records])
    entry = Path(cache_dir) / model_key / set_key
    cached = _read_entry(entry)
    if cached is not None and _describes(cached[1], manifest):
        emb, problem = cached[0], check_entry(entry, *cached)
        if problem is None:
            return _from_records(emb, records, manifest, from_cache=True, location=entry)
        warnings.warn(f"embedding cache {entry}: {problem}; recomputing it", stacklevel=2)
    emb = compute_embeddings(model, items, batch_size=batch_size, progress=callback)
    save_embedding_set(_from_records(emb, records, manifest, from_cache=False), entry)
    return _from_records(emb, records, manifest, from_cache=False, location=entry)


def _from_records(emb, records, manifest, from_cache, location=None) -> EmbeddingSet:
    return EmbeddingSet(emb, [r["path"] for r in records], [r["label"] for r in records],
                        [r["modality"] for r in records], manifest, from_cache, location)


def _describes(stored: dict, wanted: dict) -> bool:
    """Whether a stored manifest is the one ``embed_items`` would write (less the file binding)."""
    return {k: v for k, v in stored.items() if k != "embeddings_file"} == wanted


def _read_entry(entry: Path):
    """(embeddings, manifest, sha256 of the embeddings file) of a cache entry, or None when absent or
    unreadable. The file is read once, so the hash is of the bytes the tensor came from."""
    if not (entry / "manifest.json").is_file() or not (entry / EMBEDDINGS_FILE).is_file():
        return None
    try:
        manifest = json.loads((entry / "manifest.json").read_text())
        data = (entry / EMBEDDINGS_FILE).read_bytes()
        emb = load_tensors(data)["embeddings"]
    except (OSError, ValueError, KeyError, SafetensorError):
        return None  # a damaged entry is recomputed and overwritten
    if not isinstance(manifest, dict):
        return None
    return emb, manifest, hashlib.sha256(data).hexdigest()


def check_entry(entry: Path, emb: torch.Tensor, manifest: dict, sha256: str) -> str | None:
    """What is wrong with an entry's embeddings file against its manifest, or None when it matches:
    the sha256 recorded at writing, shape (count, dim), float32, every value finite."""
    bound = manifest.get("embeddings_file") or {}
    path = entry / EMBEDDINGS_FILE
    if bound.get("sha256") != sha256:
        return f"{path} is not the file written with manifest.json (sha256 differs)"
    expected = [manifest.get("count", len(manifest.get("items", []))), manifest.get("dim", emb.shape[-1])]
    if list(emb.shape) != expected or list(bound.get("shape", [])) != expected:
        return f"{path} holds {tuple(emb.shape)} embeddings, the manifest describes {tuple(expected)}"
    if emb.dtype != torch.float32 or bound.get("dtype") != "float32":
        return f"{path} holds {emb.dtype} embeddings, expected float32"
    if not bool(torch.isfinite(emb).all()):
        return f"{path} holds non-finite values (NaN or inf)"
    return None


def save_embedding_set(es: EmbeddingSet, folder: str | Path) -> Path:
    """Write ``embeddings.safetensors`` then ``manifest.json`` (each atomically) into ``folder``.

    The manifest goes last, so a crash in between leaves an entry that does not match and is
    recomputed rather than one that is wrongly trusted.
    """
    folder = Path(folder)
    manifest = dict(es.manifest)
    manifest.setdefault("items", [{"path": p, "modality": m, "label": y, "row": None}
                                  for p, m, y in zip(es.paths, es.modalities, es.labels)])
    emb = es.embeddings.contiguous().float()

    def write(tmp) -> None:
        save_file({"embeddings": emb}, tmp)
        # hashed before the move: a concurrent writer's file then fails the check (recomputed)
        manifest["embeddings_file"] = {"sha256": hashlib.sha256(Path(tmp).read_bytes()).hexdigest(),
                                       "shape": list(emb.shape), "dtype": "float32"}
    atomic_write(folder / EMBEDDINGS_FILE, write)
    atomic_write(folder / "manifest.json", lambda tmp: Path(tmp).write_text(json.dumps(manifest)))
    return folder


def load_embedding_set(folder: str | Path) -> EmbeddingSet:
    """Read an entry written by :func:`save_embedding_set`; ``EmbeddingCacheError`` if its embeddings
    file does not match the manifest (the images are not checked: see embed_items)."""
    folder = Path(folder)
    cached = _read_entry(folder)
    if cached is None:
        raise FileNotFoundError(f"{folder} holds no readable embedding cache (embeddings.safetensors + "
                                "manifest.json); create one with 'mars-lite embed'")
    emb, manifest, sha256 = cached
    if manifest.get("format") != FORMAT or len(manifest.get("items", [])) != len(emb):
        raise EmbeddingCacheError(f"{folder}: manifest does not describe the embeddings; re-run 'mars-lite embed'")
    problem = check_entry(folder, emb, manifest, sha256)
    if problem is not None:
        raise EmbeddingCacheError(f"{problem}; re-run 'mars-lite embed' to recompute it")
    return _from_records(emb, manifest["items"], manifest, from_cache=True, location=folder)


@torch.inference_mode()
def embed_texts(model, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """(T, D) float32 normalised caption embeddings (captions are few: no cache)."""
    out = [model.encode_text(list(texts[i:i + batch_size])).float().cpu()
           for i in range(0, len(texts), batch_size)]
    return torch.cat(out) if out else torch.empty(0, model.embed_dim)
