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
