"""Presenter mode: config through the environment, the Voilà command, the app it builds.

Serving the app in a browser is tested in test_browser.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from mars_lite.ui import demo
from mars_lite.cli import main


def test_config_travels_through_environment_variables():
    config = demo.DemoConfig(model="ViT-B-32", checkpoint="/ckpt/best.safetensors", seed=3, gallery="/data/sketchy",
                             benchmark="sketchy", split="sketchy_split2", k=5)
    env = config.to_env()
    assert env["MARS_LITE_DEMO_MODEL"] == "ViT-B-32" and env["MARS_LITE_DEMO_K"] == "5"
    assert "MARS_LITE_DEMO_INDEX" not in env  # unset fields stay unset
    assert demo.DemoConfig.from_env(env) == config
    assert demo.DemoConfig.from_env({}) == demo.DemoConfig()
    assert config.gallery_name() == "sketchy: sketchy (sketchy_split2 unseen)"


def test_voila_command_serves_the_packaged_app_on_localhost():
    cmd = demo.voila_command(8899, open_browser=False)
    assert demo.APP_NOTEBOOK.is_file() and str(demo.APP_NOTEBOOK) in cmd
    assert "--port=8899" in cmd and "--Voila.ip=127.0.0.1" in cmd and "--no-browser" in cmd
    assert "--no-browser" not in demo.voila_command(8899, open_browser=True)
    cells = json.loads(demo.APP_NOTEBOOK.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert len(code) == 1 and "build_demo_app()" in "".join(code[0]["source"])
    assert all(not c.get("outputs") for c in code)
    page = "".join(cells[0]["source"])  # the page says what the marks under the photos do
    assert "**yes** / **no**" in page and "reset feedback" in page


def test_cli_refuses_missing_checkpoint_and_index(tmp_path, capsys):
    assert main(["demo", "--checkpoint", str(tmp_path / "none.safetensors")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["demo", "--index", str(tmp_path)]) == 2
    assert "not a gallery index" in capsys.readouterr().err


def test_default_demo_answers_the_drawing(tmp_path, mini_sbir):
    """The default demo (stand-in + MARS checkpoint of mini_sbir's seen classes) says what it is, and
    different drawings bring back different photos; drawings of seen classes find their class."""
    config = demo.DemoConfig(cache_dir=str(tmp_path / "cache"))
    app = demo.build_demo_app(config)
    try:
        assert "mobilenet-minilm" in app.about.value and "trained on the seen classes" in app.about.value
        assert app.searcher.gallery_names == ["mini_sbir"]
        assert app.searcher.is_built("mini_sbir")  # warmed up: the first stroke does not wait for embedding
        assert len(app.searcher.gallery("mini_sbir")) == 660
        app.pad.load_image(sorted((mini_sbir / "sketch" / "pizza").glob("*.png"))[0])
        result = app.wait(60)
        assert result is not None and len(result.indices) == 10 and result.gallery == "mini_sbir"
        app.feedback.mark(9, "yes")  # the demo's tiles take relevance feedback
        refined = app.wait(60)
        assert refined.relevant == (result.indices[9],) and refined.signature != result.signature
        app.feedback.reset()
        assert app.wait(60).signature == result.signature
        tops, hits = set(), []
        for name in ("camel", "cat", "dog", "elephant", "fish", "lion"):       # the seen classes
            for path in sorted((mini_sbir / "sketch" / name).glob("*.png"))[:3]:
                answer = app.searcher.query_image(Image.open(path), kind=app.panel.kind.value)
                tops.add(tuple(answer.indices))
                hits.append(sum(label == name for label in answer.labels) / len(answer.labels))
        assert len(tops) == 18, "every drawing brings back its own photos"
        assert sum(hits) / len(hits) >= 0.5, hits
    finally:
        app.close()


def test_a_saved_index_is_used_and_checked_against_the_model(tmp_path, mini_sbir):
    assert main(["index", "build", "--model", "tiny", "--data", str(mini_sbir), "--split", "mini_sbir",
                 "--out", str(tmp_path / "ix"), "--cache", str(tmp_path / "cache"), "--approximate", "none"]) == 0
    app = demo.build_demo_app(demo.DemoConfig(model="tiny", checkpoint="none", index=str(tmp_path / "ix"),
                                              cache_dir=str(tmp_path / "cache")))
    try:
        name = app.searcher.gallery_names[0]
        assert name == "index: ix" and len(app.searcher.gallery(name)) == 300
    finally:
        app.close()
    from mars_lite.search.index import ModelMismatchError
    with pytest.raises(ModelMismatchError):
        demo.build_demo_app(demo.DemoConfig(model="tiny", checkpoint="none", index=str(tmp_path / "ix"), seed=7))


def test_query_command_answers_sketch_files_as_json_lines(mini_sbir, tmp_path, capsys):
    sketches = [sorted((mini_sbir / "sketch" / name).glob("*.png"))[0] for name in ("cat", "fish")]
    status = main(["query", *map(str, sketches), "--json", "--k", "3", "--model", "tiny", "--pretrained", "none"])
    assert status == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [line["query"] for line in lines] == [str(s) for s in sketches]
    for line in lines:
        assert len(line["results"]) == 3 and set(line["results"][0]) == {"label", "path", "score"}
        scores = [r["score"] for r in line["results"]]
        assert scores == sorted(scores, reverse=True)
        assert all(Path(r["path"]).is_file() for r in line["results"])


def test_index_build_without_a_model_uses_the_demos_and_the_demo_loads_it(tmp_path, mini_sbir, capsys):
    """No --model/--checkpoint: the index is the demo's model's (never the random 'tiny'), said aloud,
    and ``mars-lite demo --index`` accepts it."""
    photos = tmp_path / "photos"
    for name in ("pizza", "snake"):
        (photos / name).mkdir(parents=True)
        for path in sorted((mini_sbir / "photo" / name).iterdir())[:4]:
            (photos / name / path.name).write_bytes(path.read_bytes())
    assert main(["index", "build", "--data", str(photos), "--out", str(tmp_path / "ix"),
                 "--cache", str(tmp_path / "cache"), "--approximate", "none"]) == 0
    out = capsys.readouterr().out
    assert "mobilenet-minilm" in out and "trained on the seen classes" in out
    index = json.loads((tmp_path / "ix" / "index.json").read_text())
    assert index["meta"]["model_name"] == "mobilenet-minilm" and index["meta"]["checkpoint"]
    app = demo.build_demo_app(demo.DemoConfig(index=str(tmp_path / "ix"), cache_dir=str(tmp_path / "cache")))
    try:
        assert len(app.searcher.gallery(app.searcher.gallery_names[0])) == 8
    finally:
        app.close()
