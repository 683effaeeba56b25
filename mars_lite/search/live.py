"""Sketch in, top-k photos out: the query path of the sketch pad, without any widget.

``SketchSearcher`` does one query synchronously: rasterise the strokes (``strokes.rasterize``),
encode the image with the model, turn the embedding into the chosen retrieval kind and search a
gallery index (``index.GalleryIndex``). Galleries are given by name, either as built indexes or as
zero-argument callables that build one on first use (embedding a folder takes a while).

``LatestQueryRunner`` runs such queries on one worker thread so that drawing never waits for a
query: each request gets a sequence number, requests that became stale before they started are
skipped, and a result whose sequence number is no longer the newest is dropped, so the newest
request always wins.
"""
from __future__ import annotations

import hashlib
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
import torch
from PIL import Image

from .index import GalleryIndex
from ..method.modalities import RETRIEVAL_KINDS
from .strokes import DEFAULT_STYLE, RasterStyle, normalize_sketch_image, rasterize


@dataclass
class QueryResult:
    """One answered query.

    Attributes:
        seq: sequence number of the request (0 for direct calls).
        kind, gallery: retrieval kind and gallery name searched.
        indices, scores, labels, paths: the top-k gallery rows, best first.
        timings: milliseconds for ``rasterise``, ``encode``, ``search`` and ``total``.
        image: the (150, 150) ``L`` image that was encoded.
        query: (D,) the query embedding searched (in ``kind``), kept for relevance feedback.
        relevant, irrelevant: the gallery rows marked "yes" / "no" that refined the query
            (``feedback.refine_result``); empty for the sketch alone.
    """

    seq: int
    kind: str
    gallery: str
    indices: list[int]
    scores: list[float]
    labels: list[str]
    paths: list[str]
    timings: dict[str, float] = field(default_factory=dict)
    image: Image.Image | None = None
    query: torch.Tensor | None = None
    relevant: tuple[int, ...] = ()
    irrelevant: tuple[int, ...] = ()

    @property
    def signature(self) -> str:
        """Short hash of what was returned (kind, gallery, ranked indices): changes when results change."""
        text = f"{self.kind}|{self.gallery}|" + ",".join(map(str, self.indices))
        return hashlib.sha1(text.encode()).hexdigest()[:12]


GalleryLike = GalleryIndex | Callable[[], GalleryIndex]


class SketchSearcher:
    """Rasterise -> encode -> search, for one model and named galleries.

    Args:
        model: a MarsModel (eval mode; its modality vectors must match the galleries').
        galleries: name -> GalleryIndex, or name -> callable building one on first use.
        k: results per query.
        style: rasterisation style (defaults to the training-sketch look).
        approximate: search the faiss index when the gallery has one and has at least this many photos.
        threads: torch intra-op threads for a query (set on the thread that runs it; OpenMP keeps
            the setting per thread). One image through the tiny model is fastest on 1 thread;
            ``None`` keeps torch's setting.
        autocast: e.g. ``torch.bfloat16`` to encode under autocast (``bf16_supported()`` says whether
            the CPU does it natively: ~1.7x faster for ViT-B-32 here, cosine 0.9999 to float32).
            ``None`` (default) encodes in float32.
    """

    def __init__(self, model, galleries: Mapping[str, GalleryLike], k: int = 10,
                 style: RasterStyle = DEFAULT_STYLE, approximate: int = 200_000, threads: int | None = None,
                 autocast: torch.dtype | None = None):
        if not galleries:
            raise ValueError("give at least one gallery (name -> GalleryIndex or a callable building one)")
        self.model = model
        self.k = k
        self.style = style
        self.approximate_from = approximate
        self.threads = threads
        self.autocast = autocast
        self._sources: dict[str, GalleryLike] = dict(galleries)
        self._built: dict[str, GalleryIndex] = {}
        self._lock = threading.Lock()

    @property
    def gallery_names(self) -> list[str]:
        return list(self._sources)

    def add_gallery(self, name: str, gallery: GalleryLike) -> None:
        """Register another gallery (a built index or a callable that builds it)."""
        with self._lock:
            self._sources[name] = gallery
            self._built.pop(name, None)

    def is_built(self, name: str) -> bool:
        return name in self._built or isinstance(self._sources.get(name), GalleryIndex)

    def gallery(self, name: str) -> GalleryIndex:
        """The index of gallery ``name``, building it now if needed; refuses one built for another model."""
        with self._lock:
            if name in self._built:
                return self._built[name]
            if name not in self._sources:
                raise KeyError(f"unknown gallery {name!r}; available: {self.gallery_names}")
            source = self._sources[name]
            index = source if isinstance(source, GalleryIndex) else source()
            index.check_model(self.model)
            self._built[name] = index
            return index

    @torch.inference_mode()
    def embed(self, images: list[Image.Image], kind: str) -> torch.Tensor:
        """(B, D) query embeddings of sketch images in retrieval ``kind``."""
        if kind not in RETRIEVAL_KINDS:
            raise ValueError(f"unknown retrieval kind {kind!r}; use one of {RETRIEVAL_KINDS}")
        previous = torch.get_num_threads()
        if self.threads and previous != self.threads:
            torch.set_num_threads(self.threads)
        try:
            with torch.autocast(self.model.device.type, dtype=self.autocast or torch.bfloat16,
                                enabled=self.autocast is not None):
                z = self.model.encode_sketch(images).float()
            return self.model.retrieval_embedding(z, "sketch", kind).float().cpu()
        finally:
            if previous != torch.get_num_threads():
                torch.set_num_threads(previous)

    def query_images(self, images: list[Image.Image], kind: str = "converted", gallery: str | None = None,
                     seq: int = 0) -> list[QueryResult]:
        """Query with sketch images already in the training look (a batch: one forward pass)."""
        self.gallery(gallery or self.gallery_names[0])  # built (or refused) before the encode is timed
        t0 = time.perf_counter()
        queries = self.embed(images, kind)
        encode_ms = (time.perf_counter() - t0) * 1e3 / len(images)
        results = self.search(queries, kind, gallery, seq, images)
        for result in results:
            result.timings = {"encode": encode_ms, **result.timings}
        return results

    def search(self, queries: torch.Tensor, kind: str, gallery: str | None = None, seq: int = 0,
               images: list[Image.Image | None] | None = None) -> list[QueryResult]:
        """Top-k of (Q, D) query embeddings already in retrieval ``kind`` (one QueryResult each)."""
        name = gallery or self.gallery_names[0]
        index = self.gallery(name)
        t0 = time.perf_counter()
        approximate = len(index) >= self.approximate_from and bool(index.approximate)
        found = index.search(queries, kind, self.k, approximate=approximate)
        search_ms = (time.perf_counter() - t0) * 1e3
        results = []
        for row in range(len(queries)):
            ids = [int(i) for i in found.indices[row] if int(i) >= 0]
            results.append(QueryResult(seq, kind, name, ids, [float(s) for s in found.scores[row][:len(ids)]],
                                       [index.labels[i] for i in ids], [index.paths[i] for i in ids],
                                       {"search": search_ms}, images[row] if images else None, queries[row]))
        return results

    def query_strokes(self, strokes, kind: str = "converted", gallery: str | None = None,
                      width_scale: float = 1.0, seq: int = 0) -> QueryResult | None:
        """Query with recorded strokes; ``None`` when nothing drawable is in them (the empty canvas)."""
        t0 = time.perf_counter()
        image = rasterize(strokes, self.style, width_scale=width_scale)
        t1 = time.perf_counter()
        if np.asarray(image).min() == 255:
            return None
        return self._finish(self.query_images([image], kind, gallery, seq)[0], t0, t1)

    def query_image(self, image: Image.Image, kind: str = "converted", gallery: str | None = None,
                    seq: int = 0) -> QueryResult:
        """Query with a sketch image (any size or polarity: it is normalised to the training look first)."""
        t0 = time.perf_counter()
        sketch = normalize_sketch_image(image, self.style)
        t1 = time.perf_counter()
        return self._finish(self.query_images([sketch], kind, gallery, seq)[0], t0, t1)

    @staticmethod
    def _finish(result: QueryResult, t0: float, t1: float) -> QueryResult:
        result.timings["rasterise"] = (t1 - t0) * 1e3
        result.timings["total"] = (time.perf_counter() - t0) * 1e3
        return result


def bf16_supported() -> bool:
    """Whether this CPU runs bfloat16 matmuls natively (oneDNN with AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class LatestQueryRunner:
    """Run ``compute(*args)`` on one worker thread; deliver only the newest request's result.

    ``submit(*args)`` returns at once with the request's sequence number. The worker skips a
    request that is already stale when its turn comes, waits ``debounce_s`` (a burst of requests
    costs one query), and drops a result if a newer request arrived meanwhile. ``on_result`` (and
    ``on_error``) run on the worker thread.
    """

    def __init__(self, compute: Callable, on_result: Callable[[object], None],
                 on_error: Callable[[BaseException, int], None] | None = None, debounce_s: float = 0.03):
        self._compute = compute
        self._on_result = on_result
        self._on_error = on_error
        self.debounce_s = debounce_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mars-lite-query")
        self._lock = threading.Lock()
        self._seq = 0
        self._last_future: Future | None = None
        self.delivered = 0
        self.dropped = 0
        self.last_result = None

    @property
    def latest_seq(self) -> int:
        return self._seq

    def submit(self, *args) -> int:
        with self._lock:
            self._seq += 1
            seq = self._seq
            self._last_future = self._executor.submit(self._work, seq, args)
        return seq

    def cancel(self) -> int:
        """Make every request in flight stale (e.g. the canvas was cleared); returns the new number."""
        with self._lock:
            self._seq += 1
            return self._seq

    def _stale(self, seq: int) -> bool:
        with self._lock:
            return seq != self._seq

    def _work(self, seq: int, args: tuple) -> None:
        if self._stale(seq):
            self.dropped += 1
            return
        if self.debounce_s:
            time.sleep(self.debounce_s)
            if self._stale(seq):
                self.dropped += 1
                return
        try:
            result = self._compute(*args, seq=seq)
        except Exception as err:  # noqa: BLE001 - a failed query must reach the UI, not kill the worker
            if self._on_error is not None and not self._stale(seq):
                self._on_error(err, seq)
            return
        with self._lock:
            fresh = seq == self._seq
        if not fresh:
            self.dropped += 1
            return
        self.last_result = result
        self.delivered += 1
        self._on_result(result)

    def wait(self, timeout: float = 60.0):
        """Block until the newest request is done (for scripts, tests and notebooks); returns last_result."""
        future = self._last_future
        if future is not None:
            future.result(timeout=timeout)
        return self.last_result

    def close(self) -> None:
        self.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)


def default_autocast(model) -> torch.dtype | None:
    """The precision the live query uses by default: bfloat16 autocast for the ViT backbones on CPUs
    with native bf16 (``benchmarks/query_latency.py`` checks that the top-10 stay those of float32),
    else ``None`` (float32): ``tiny`` and the ``mobilenet-minilm`` stand-in are fast enough in float32
    (stand-in: p95 under 50 ms for 100,000 photos), and their bf16 results were never checked."""
    on_cpu = model.device.type == "cpu"
    small = model.config.name == "tiny" or model.config.standin is not None
    return torch.bfloat16 if on_cpu and not small and bf16_supported() else None
