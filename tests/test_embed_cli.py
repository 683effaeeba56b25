"""`mars-lite embed`: parts of a split into the shared cache; stale entries recomputed, fresh ones reused."""
from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from mars_lite import cli, create_model
from mars_lite.method.checkpoint import save_checkpoint
from mars_lite.eval.parts import dataset_parts, embed_dataset
from mars_lite.embed import load_embedding_set


@pytest.fixture()
def tree(tmp_path, mini_sbir):
    """Copies of 3 real images per class and modality (camel seen; cat, snake unseen): files we may touch."""
    classes = {"seen": ["camel"], "unseen": ["cat", "snake"]}
    for modality in ("sketch", "photo"):
        for label in classes["seen"] + classes["unseen"]:
            dst = tmp_path / "data" / modality / label
            dst.mkdir(parents=True)
            for f in sorted((mini_sbir / modality / label).iterdir())[:3]:
                shutil.copy2(f, dst / f.name)
    (tmp_path / "data" / "split_zs.json").write_text(json.dumps(classes))
    return tmp_path / "data"


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return create_model("tiny")[0]


def test_parts_follow_the_split(tree):
    parts = dataset_parts(tree, parts=["query", "gallery", "train", "val", "all"])
    assert {it.label for it in parts["query"]} == {"cat", "snake"} and set(parts["query"].counts()) == {"sketch"}
    assert {it.label for it in parts["gallery"]} == {"cat", "snake"} and set(parts["gallery"].counts()) == {"photo"}
    assert len(parts["all"]) == 18
    assert len(parts["train"]) + len(parts.get("val", [])) == 6  # the 6 camel images, cut by the val rule
    with pytest.raises(ValueError, match="unknown part"):
        dataset_parts(tree, parts=["everything"])


def test_same_inputs_reused_stale_recomputed(tree, model, tmp_path):
    out = tmp_path / "cache"
    first = embed_dataset(model, tree, out)
    assert set(first) == {"query", "gallery"} and not any(es.from_cache for es in first.values())
    again = embed_dataset(model, tree, out)
    assert all(es.from_cache for es in again.values())
    assert torch.equal(first["query"].embeddings, again["query"].embeddings)
    entry = again["query"].location
    assert load_embedding_set(entry).paths == first["query"].paths

    # a sketch touched (new mtime): the query entry is stale and recomputed; the gallery is still fresh
    victim = tree / "sketch" / "cat" / sorted(os.listdir(tree / "sketch" / "cat"))[0]
    stat = victim.stat()
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    touched = embed_dataset(model, tree, out)
    assert not touched["query"].from_cache and touched["gallery"].from_cache

    # a photo replaced by another real photo (new size and content): recomputed, and the row changes
    photos = sorted((tree / "photo" / "snake").iterdir())
    other = sorted((tree / "photo" / "cat").iterdir())[0]
    assert other.stat().st_size != photos[0].stat().st_size
    shutil.copyfile(other, photos[0])
    replaced = embed_dataset(model, tree, out)
    assert replaced["query"].from_cache and not replaced["gallery"].from_cache
    row = replaced["gallery"].paths.index(str(photos[0]))
    assert not torch.allclose(replaced["gallery"].embeddings[row], first["gallery"].embeddings[row])

    # another model (different backbone weights): recomputed
    torch.manual_seed(1)
    other_model = create_model("tiny")[0]
    assert not any(es.from_cache for es in embed_dataset(other_model, tree, out).values())


def test_cli_embed_then_reuse(tree, tmp_path, capsys):
    out = tmp_path / "cli_cache"
    args = ["embed", "--model", "tiny", "--data", str(tree), "--out", str(out), "--parts", "query,gallery,all"]
    assert cli.main(args) == 0
    first = capsys.readouterr().out
    assert first.count("[computed]") == 3 and "query: 6 images, (6, 64)" in first
    assert cli.main(args) == 0  # same seed, same files -> every entry reused
    assert capsys.readouterr().out.count("[reused") == 3
    assert len(list(out.glob("*/*/manifest.json"))) == 3


def test_cli_checkpoint_and_no_split(tree, model, tmp_path, capsys):
    ckpt = save_checkpoint(model, tmp_path / "tiny.safetensors", classes_seen=["camel"], backbone="full")
    (tree / "split_zs.json").unlink()
    out = tmp_path / "cache"
    assert cli.main(["embed", "--checkpoint", str(ckpt), "--data", str(tree), "--out", str(out), "--parts", "all"]) == 0
    assert "all: 18 images" in capsys.readouterr().out
    # the checkpoint holds the full backbone: its entry is the one the in-memory model reuses
    assert embed_dataset(model, tree, out, parts=["all"])["all"].from_cache
    with pytest.raises(ValueError, match="only the part 'all'"):
        dataset_parts(tree, parts=["query"])


def test_cli_builtin_data_and_random_weights(tmp_path, capsys):
    """``--data mini_sbir`` is the built-in copy; ``--pretrained none`` is random init for every command."""
    out = tmp_path / "cache"
    args = ["embed", "--model", "tiny", "--pretrained", "none", "--data", "mini_sbir", "--out", str(out),
            "--parts", "query"]
    assert cli.main(args) == 0
    assert "query: 300 images, (300, 64)" in capsys.readouterr().out


def test_cli_on_error_reaches_the_image_reader(tree, tmp_path, capsys):
    """``--on-error skip`` leaves an unreadable image out (named in a warning); the default stops
    with one line naming it, before the model loads."""
    bad = tree / "sketch" / "cat" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    args = ["embed", "--model", "tiny", "--data", str(tree), "--out", str(tmp_path / "cache"), "--parts", "query"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "broken.png" in err and "Traceback" not in err
    with pytest.warns(UserWarning, match="broken.png"):
        assert cli.main(args + ["--on-error", "skip"]) == 0
    assert "query: 6 images" in capsys.readouterr().out
