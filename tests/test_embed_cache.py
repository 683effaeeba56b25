"""The shared embedding cache: reuse when nothing changed, recompute when anything did."""
from __future__ import annotations

import os
import shutil

import pytest
import torch

from mars_lite.data import folder_dataset
from mars_lite.embed import (embed_items, embed_texts, load_embedding_set)


@pytest.fixture()
def small_tree(tmp_path, mini_sbir):
    """A copy of 4 real images per class/modality for two classes (files we may touch)."""
    for modality in ("sketch", "photo"):
        for label in ("cat", "camel"):
            src = sorted((mini_sbir / modality / label).iterdir())[:4]
            dst = tmp_path / "data" / modality / label
            dst.mkdir(parents=True)
            for f in src:
                shutil.copy2(f, dst / f.name)
    return tmp_path / "data"


def test_embeddings_are_normalised_and_ordered(tiny_model, small_tree):
    items = folder_dataset(small_tree)
    es = embed_items(tiny_model, items)
    assert es.embeddings.shape == (16, 64) and es.embeddings.dtype == torch.float32
    assert torch.allclose(es.embeddings.norm(dim=-1), torch.ones(16), atol=1e-5)
    assert es.paths == [str(it.path) for it in items]
    with torch.no_grad():
        direct = tiny_model.encode_photo([items[0].path])
    assert torch.allclose(es.embeddings[0], direct[0], atol=1e-5)
    sketches = es.select(modality="sketch", labels=["cat"])
    assert len(sketches) == 4 and set(sketches.labels) == {"cat"} and set(sketches.modalities) == {"sketch"}


def test_cache_reused_then_invalidated(tiny_model, small_tree, tmp_path):
    cache = tmp_path / "cache"
    first = embed_items(tiny_model, folder_dataset(small_tree), cache)
    again = embed_items(tiny_model, folder_dataset(small_tree), cache)
    assert not first.from_cache and again.from_cache
    assert torch.equal(first.embeddings, again.embeddings)

    # touching a file (new mtime) makes the entry stale
    victim = sorted((small_tree / "sketch" / "cat").iterdir())[0]
    os.utime(victim, ns=(victim.stat().st_atime_ns, victim.stat().st_mtime_ns + 10**9))
    assert not embed_items(tiny_model, folder_dataset(small_tree), cache).from_cache
    assert embed_items(tiny_model, folder_dataset(small_tree), cache).from_cache

    # other weights: a different entry, recomputed
    with torch.no_grad():
        tiny_model.clip.visual.conv1.weight.mul_(1.5)
    changed = embed_items(tiny_model, folder_dataset(small_tree), cache)
    assert not changed.from_cache
    assert not torch.allclose(changed.embeddings, first.embeddings)


def test_modality_vectors_do_not_invalidate_the_cache(tiny_model, small_tree, tmp_path):
    cache = tmp_path / "cache"
    embed_items(tiny_model, folder_dataset(small_tree), cache)
    with torch.no_grad():
        tiny_model.modality_embeddings.weight.add_(1.0)   # training M in frozen mode
    assert embed_items(tiny_model, folder_dataset(small_tree), cache).from_cache


def test_damaged_entry_is_recomputed_and_load_errors(tiny_model, small_tree, tmp_path):
    cache = tmp_path / "cache"
    embed_items(tiny_model, folder_dataset(small_tree), cache)
    (entry,) = [p.parent for p in cache.rglob("manifest.json")]
    (entry / "embeddings.safetensors").write_bytes(b"garbage")
    assert not embed_items(tiny_model, folder_dataset(small_tree), cache).from_cache
    loaded = load_embedding_set(entry)
    assert loaded.embeddings.shape == (16, 64)
    with pytest.raises(FileNotFoundError, match="mars-lite embed"):
        load_embedding_set(tmp_path / "nowhere")


def test_embed_texts_matches_encode_text(tiny_model):
    texts = ["a sketch of a cat", "a photo of a cat", "a photo of a camel"]
    out = embed_texts(tiny_model, texts, batch_size=2)
    with torch.no_grad():
        assert torch.allclose(out, tiny_model.encode_text(texts), atol=1e-6)


# ------------------------------------------------------------------ the cache is bound to its files
def _forge(entry, embeddings, rebind: bool):
    """Replace an entry's embeddings file; with ``rebind`` also record its sha256 in the manifest
    (as a careless copy of both files would), so that the shape/dtype/finite checks must catch it."""
    import hashlib
    import json
    from safetensors.torch import save_file
    path = entry / "embeddings.safetensors"
    save_file({"embeddings": embeddings}, str(path))
    if rebind:
        manifest = json.loads((entry / "manifest.json").read_text())
        manifest["embeddings_file"]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        (entry / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("rebind", [False, True])
@pytest.mark.parametrize("forgery", ["other rows", "other width", "nan", "float64"])
def test_a_replaced_embeddings_file_is_recomputed_with_a_warning(tiny_model, small_tree, tmp_path, forgery, rebind):
    from mars_lite.embed import EmbeddingCacheError
    cache = tmp_path / "cache"
    first = embed_items(tiny_model, folder_dataset(small_tree), cache)
    (entry,) = [p.parent for p in cache.rglob("manifest.json")]
    fake = {"other rows": first.embeddings.flip(0), "other width": first.embeddings[:, :32].contiguous(),
            "nan": first.embeddings.clone().fill_(float("nan")), "float64": first.embeddings.double()}[forgery]
    _forge(entry, fake, rebind)
    if forgery == "other rows" and rebind:
        # same shape, finite, recorded sha256: indistinguishable from a real entry by design
        assert embed_items(tiny_model, folder_dataset(small_tree), cache).from_cache
        return
    with pytest.raises(EmbeddingCacheError, match="embeddings.safetensors"):
        load_embedding_set(entry)
    with pytest.warns(UserWarning, match=f"embedding cache {entry}.*recomputing"):
        again = embed_items(tiny_model, folder_dataset(small_tree), cache)
    assert not again.from_cache and torch.equal(again.embeddings, first.embeddings)
    assert embed_items(tiny_model, folder_dataset(small_tree), cache).from_cache   # rewritten, whole again
    assert torch.equal(load_embedding_set(entry).embeddings, first.embeddings)


def test_an_image_rewritten_with_same_size_and_mtime_is_seen(tiny_model, small_tree, tmp_path):
    cache = tmp_path / "cache"
    first = embed_items(tiny_model, folder_dataset(small_tree), cache)
    files = sorted((small_tree / "photo" / "camel").iterdir())
    victim = max(files, key=lambda p: p.stat().st_size)
    donor = min(files, key=lambda p: p.stat().st_size)
    stat = victim.stat()
    # another picture, padded after its end marker to the same size, with the old mtime put back
    victim.write_bytes(donor.read_bytes().ljust(stat.st_size, b"\0"))
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert victim.stat().st_size == stat.st_size and victim.stat().st_mtime_ns == stat.st_mtime_ns
    again = embed_items(tiny_model, folder_dataset(small_tree), cache)
    assert not again.from_cache
    row = again.paths.index(str(victim.resolve()))
    assert not torch.allclose(again.embeddings[row], first.embeddings[row])


def test_content_fingerprint_reads_small_files_whole_and_head_and_tail_of_big_ones(tmp_path):
    from mars_lite.embed import FINGERPRINT_BLOCK, content_fingerprint

    def fingerprint(data: bytes, changed_at: int) -> tuple[str, str]:
        path = tmp_path / "f.bin"
        path.write_bytes(data)
        before = content_fingerprint(path, len(data))
        path.write_bytes(data[:changed_at] + b"y" + data[changed_at + 1:])
        return before, content_fingerprint(path, len(data))

    small = b"x" * (2 * FINGERPRINT_BLOCK)          # every image of mini_sbir is smaller
    big = b"x" * (3 * FINGERPRINT_BLOCK)
    assert len(set(fingerprint(small, len(small) // 2))) == 2      # whole file: a middle byte counts
    assert len(set(fingerprint(big, 10))) == 2 and len(set(fingerprint(big, len(big) - 1))) == 2
    assert len(set(fingerprint(big, len(big) // 2))) == 1          # the documented blind spot
