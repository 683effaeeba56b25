"""The gallery index behind the sketch pad: photo embeddings per retrieval kind, searchable and saved to disk.

Retrieval (docs/method.md) compares a query embedding with gallery embeddings of the matching kind.
For *photos* the three kinds need only two matrices:

    original   z_v                        (photos' own CLIP embeddings)
    converted  z_v                        (converting a photo into the photo modality is a no-op)
    semantic   normalize(z_v - m_photo)   (photo modality vector removed)

so ``GalleryIndex`` stores ``original`` and ``semantic`` (N, D) unit matrices plus the modality
vectors M they were made with (a later model with other M is refused, because the semantic
gallery would no longer match its queries). The query side applies
``MarsModel.retrieval_embedding(z_sketch, "sketch", kind)`` and searches ``GALLERY_KIND[kind]``.

Search is exact by default (chunked matmul + topk, see ``search.py``); ``build_approximate``
adds faiss indexes for huge galleries. On disk: ``index.json`` (paths, labels, metadata, and the
sha256 of every other file), ``vectors.safetensors`` and ``faiss_<kind>.index``. A save builds the
whole folder beside the target (``.<name>.building-<pid>``) and swaps it in by renames, so a killed
build leaves the previous index whole; loading checks each file against its recorded sha256, so a
folder mixing files of two indexes is refused rather than searched (see ``index_files.py``).

``mars-lite index build --model ... [--checkpoint ...] --data DIR --out DIR`` builds one from a
folder (or a benchmark's unseen photos) and prints the approximate index's recall@10.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ..data.folder import UNLABELLED
from ..errors import MarsLiteError
from ..files import atomic_write, sha256_file
from .index_files import IndexFileError, check_sha256, install_folder, missing_index_message
from .topk import SearchResult, build_faiss_index, exact_topk, faiss_search, recall_at_k

# /2: index.json records the sha256 of the vector and faiss files (/1 did not: refused, rebuild)
FORMAT = "mars_lite.index/2"
GALLERY_KIND = {"original": "original", "converted": "original", "semantic": "semantic"}
STORED_KINDS = ("original", "semantic")


class ModelMismatchError(MarsLiteError, ValueError):
    """An index was built with other modality vectors or another backbone than the query model."""


class GalleryIndex:
    """Photo embeddings for retrieval, with exact and optional approximate search.

    Attributes:
        vectors: {"original": (N, D), "semantic": (N, D)} float32 unit rows.
        modality_embeddings: (4, D) float32, the M used for the semantic matrix.
        paths, labels: N entries.
        meta: JSON-ready facts (model, backbone fingerprint, data source, approximate settings, recall).
        approximate: {stored kind: faiss index} built by :meth:`build_approximate` or loaded.
    """

    def __init__(self, vectors: dict[str, torch.Tensor], modality_embeddings: torch.Tensor,
                 paths: Sequence[str], labels: Sequence[str], meta: dict | None = None, approximate=None):
        missing = [k for k in STORED_KINDS if k not in vectors]
        if missing:
            raise ValueError(f"gallery vectors for {missing} are missing; need {STORED_KINDS}")
        n = len(paths)
        for kind, matrix in vectors.items():
            if matrix.dim() != 2 or matrix.shape[0] != n:
                raise ValueError(f"{kind} vectors have shape {tuple(matrix.shape)}; expected ({n}, D)")
        if len(labels) != n:
            raise ValueError(f"{len(labels)} labels for {n} gallery paths")
        self.vectors = {k: v.float().contiguous() for k, v in vectors.items()}
        self.modality_embeddings = modality_embeddings.detach().float().cpu()
        self.paths, self.labels = list(paths), list(labels)
        self.meta = dict(meta or {})
        self.approximate = dict(approximate or {})

    @classmethod
    def from_photo_embeddings(cls, embeddings: torch.Tensor, model, paths: Sequence[str],
                              labels: Sequence[str], meta: dict | None = None) -> "GalleryIndex":
        """Index (N, D) original photo embeddings z_v, deriving the semantic matrix with ``model``'s M."""
        original = F.normalize(embeddings.detach().float().cpu(), dim=-1)
        with torch.inference_mode():
            semantic = model.retrieval_embedding(original.to(model.device), "photo", "semantic").float().cpu()
        from ..embed import backbone_fingerprint
        info = {"format": FORMAT, "count": len(paths), "dim": int(original.shape[1]),
                "model_name": model.config.name, "pretrained": model.pretrained,
                "backbone_sha256": backbone_fingerprint(model), **(meta or {})}
        return cls({"original": original, "semantic": semantic}, model.modality_embeddings.weight,
                   paths, labels, info)

    @classmethod
    def from_embedding_set(cls, es, model, meta: dict | None = None) -> "GalleryIndex":
        """Index the photos of an ``embed_cache.EmbeddingSet`` (sketch rows are left out)."""
        photos = es.select(modality="photo")
        if len(photos) == 0:
            raise ValueError("the embedding set holds no photos to index")
        return cls.from_photo_embeddings(photos.embeddings, model, photos.paths, photos.labels, meta)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def dim(self) -> int:
        return int(self.vectors["original"].shape[1])

    def __repr__(self) -> str:
        approx = ", ".join(f"{k}: {type(v).__name__}" for k, v in self.approximate.items()) or "none"
        classes = set(self.labels)
        what = "unlabelled" if classes == {UNLABELLED} else f"{len(classes)} classes"
        return (f"GalleryIndex({len(self)} photos, D={self.dim}, {what}, "
                f"model={self.meta.get('model_name')}, approximate={approx})")

    def matrix(self, kind: str) -> torch.Tensor:
        """(N, D) gallery matrix searched by a query of retrieval ``kind``."""
        if kind not in GALLERY_KIND:
            raise ValueError(f"unknown retrieval kind {kind!r}; use one of {tuple(GALLERY_KIND)}")
        return self.vectors[GALLERY_KIND[kind]]

    def check_model(self, model) -> None:
        """Raise ModelMismatchError unless ``model`` has the M and backbone the index was built with."""
        m = model.modality_embeddings.weight.detach().float().cpu()
        if m.shape != self.modality_embeddings.shape or not torch.allclose(m, self.modality_embeddings, atol=1e-6):
            raise ModelMismatchError(
                f"this index ({self.meta.get('source', 'in memory')}) was built with other modality vectors "
                "than the query model's; rebuild it with the same model/checkpoint "
                "('mars-lite index build --model ... --checkpoint ...')")
        stored = self.meta.get("backbone_sha256")
        if stored:
            from ..embed import backbone_fingerprint
            if backbone_fingerprint(model) != stored:
                raise ModelMismatchError(
                    f"this index ({self.meta.get('source', 'in memory')}) was built with another backbone "
                    f"({self.meta.get('model_name')}, {self.meta.get('pretrained')}); rebuild it for this model")

    def search(self, queries: torch.Tensor, kind: str = "original", k: int = 10, approximate: bool = False,
               chunk_size: int | None = None) -> SearchResult:
        """Top-k gallery photos for (Q, D) unit queries already in retrieval ``kind``.

        ``approximate=True`` uses the faiss index of that kind (build or load it first).
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if queries.dim() == 1:
            queries = queries.unsqueeze(0)
        stored = GALLERY_KIND.get(kind)
        if approximate:
            if stored not in self.approximate:
                raise ValueError(f"no approximate index for kind {kind!r}; call build_approximate() first")
            return faiss_search(self.approximate[stored], queries.detach().cpu(), k)
        kwargs = {} if chunk_size is None else {"chunk_size": chunk_size}
        return exact_topk(queries.detach().cpu().float(), self.matrix(kind), k, **kwargs)

    def build_approximate(self, method: str = "ivf", kinds: Sequence[str] = STORED_KINDS, **options) -> None:
        """Build faiss indexes (see ``search.build_faiss_index`` for ``method`` and options)."""
        for kind in kinds:
            self.approximate[GALLERY_KIND[kind]] = build_faiss_index(self.vectors[GALLERY_KIND[kind]], method,
                                                                     **options)
        self.meta["approximate"] = {"method": method, **{k: v for k, v in options.items()
                                                         if isinstance(v, (int, float, str))}}

    def approximate_recall(self, queries: torch.Tensor, kind: str = "original", k: int = 10) -> float:
        """recall@k of the approximate index against exact search for (Q, D) queries of ``kind``."""
        exact = self.search(queries, kind, k)
        approx = self.search(queries, kind, k, approximate=True)
        return recall_at_k(approx.indices, exact.indices, k=min(k, len(self)))

    # ------------------------------------------------------------------ files
    def save(self, folder: str | Path) -> Path:
        """Write the index as ``folder``, replacing an index there only once the new one is complete.

        The files go into a sibling build folder (each atomically, ``index.json`` last, holding the
        sha256 of the others), which then replaces ``folder`` by renames (``install_folder``). A
        ``folder`` that exists but holds no index is refused (``IndexFileError``), never overwritten.
        """
        import faiss

        folder = Path(folder)

        def write(staging: Path) -> None:
            tensors = {f"gallery.{k}": v for k, v in self.vectors.items()}
            tensors["modality_embeddings"] = self.modality_embeddings.contiguous()
            files = {"vectors.safetensors": atomic_write(staging / "vectors.safetensors",
                                                         lambda tmp: save_file(tensors, tmp))}
            for kind, index in self.approximate.items():
                files[f"faiss_{kind}.index"] = atomic_write(staging / f"faiss_{kind}.index",
                                                            lambda tmp, ix=index: faiss.write_index(ix, str(tmp)))
            record = {"format": FORMAT, "meta": self.meta, "approximate_kinds": sorted(self.approximate),
                      "sha256": {name: sha256_file(path) for name, path in files.items()},
                      "paths": self.paths, "labels": self.labels}
            atomic_write(staging / "index.json", lambda tmp: Path(tmp).write_text(json.dumps(record)))

        return install_folder(folder, write)

    @classmethod
    def load(cls, folder: str | Path, approximate: bool = True) -> "GalleryIndex":
        """Read an index written by :meth:`save` (faiss parts too unless ``approximate=False``).

        Raises:
            FileNotFoundError: no index in ``folder``.
            IndexFileError: another format, or a file whose sha256 differs from the one recorded in
                ``index.json`` (a mixed or damaged folder); the message names the file.
        """
        folder = Path(folder)
        try:
            record = json.loads((folder / "index.json").read_text())
        except FileNotFoundError as err:
            raise FileNotFoundError(missing_index_message(folder)) from err
        except ValueError as err:
            raise IndexFileError(f"{folder / 'index.json'} is not valid JSON ({err}); rebuild the index "
                                 "with 'mars-lite index build'") from err
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            found = record.get("format") if isinstance(record, dict) else None
            raise IndexFileError(f"{folder / 'index.json'} has format {found!r}, expected {FORMAT!r}; "
                                 "rebuild the index with 'mars-lite index build'")
        check_sha256(folder, "vectors.safetensors", record)
        tensors = load_file(str(folder / "vectors.safetensors"))
        faiss_indexes = {}
        if approximate and record.get("approximate_kinds"):
            import faiss
            for kind in record["approximate_kinds"]:
                check_sha256(folder, f"faiss_{kind}.index", record)
                faiss_indexes[kind] = faiss.read_index(str(folder / f"faiss_{kind}.index"))
        vectors = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("gallery.")}
        meta = {**record["meta"], "source": str(folder)}
        return cls(vectors, tensors["modality_embeddings"], record["paths"], record["labels"], meta, faiss_indexes)


def photo_index_from_items(model, items, cache_dir: str | Path | None = None, meta: dict | None = None,
                           progress=None) -> GalleryIndex:
    """Embed the photos among ``items`` (through the embedding cache) and index them."""
    from ..embed import embed_items

    photos = [item for item in items if item.modality == "photo"]
    if not photos:
        raise ValueError("no photos among the gallery items: a gallery folder needs <root>/photo/<class>/<file>")
    es = embed_items(model, photos, cache_dir, progress=progress)
    return GalleryIndex.from_embedding_set(es, model, meta)


# ------------------------------------------------------------------------- galleries
def gallery_dataset(data: str | Path = "mini_sbir", benchmark: str | None = None, split: str | None = None,
                    on_error: str = "raise"):
    """The photos (and sketches, used as test queries) of a gallery source.

    Args:
        data: ``"mini_sbir"`` (the built-in set), or a folder: the generic layout
            ``<root>/<modality>/<class>/<file>`` or, with ``benchmark``, that benchmark's layout.
        benchmark: ``sketchy``, ``tuberlin`` or ``quickdraw`` to read ``data`` as that benchmark.
        split: a zero-shot split name (``mars_lite.data.list_splits()``) to keep only its unseen
            classes, as in the zero-shot protocol; ``None`` keeps every class.
        on_error: ``"raise"`` (an unreadable image is an error naming it) or ``"skip"``.
    Returns:
        an ``ImageDataset``.
    """
    from ..data import load_split, open_dataset, resolve_data

    root = resolve_data(data)
    dataset = open_dataset(root, benchmark=benchmark, on_error=on_error)
    if split:
        dataset = dataset.select(classes=load_split(split, root=root).unseen)
    return dataset


@torch.inference_mode()
def sketch_queries(model, sketches, limit: int = 200, cache_dir=None) -> dict[str, torch.Tensor]:
    """Query embeddings of up to ``limit`` sketch items (evenly spread): {kind: (Q, D)} for every kind."""
    from ..embed import embed_items

    step = max(1, len(sketches) // limit)
    chosen = list(sketches)[::step][:limit]
    z = embed_items(model, chosen, cache_dir).embeddings.to(model.device)
    return {kind: model.retrieval_embedding(z, "sketch", kind).float().cpu() for kind in GALLERY_KIND}
