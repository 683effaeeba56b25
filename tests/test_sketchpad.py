"""Sketch pad, results panel and live querying, driven the way the browser drives them (without one).

Pen events are fed through ipycanvas' own front-end message handler, so the same code path runs
as for a real mouse; the browser test (test_browser.py) proves the JavaScript side.
"""
from __future__ import annotations

import math
import shutil
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mars_lite import open_model
from mars_lite.search.index import gallery_dataset, photo_index_from_items
from mars_lite.search.live import LatestQueryRunner, SketchSearcher
from mars_lite.ui.sketchpad import SketchPad, live_sketch_app
from mars_lite.search.strokes import normalize_sketch_image, rasterize, trace_strokes


def _event(pad: SketchPad, name: str, x: float = 0.0, y: float = 0.0) -> None:
    """Deliver a front-end event to the canvas exactly as ipycanvas' JavaScript sends it."""
    if name.startswith("touch"):
        content = {"event": name, "touches": [{"x": x, "y": y}]}
    else:
        content = {"event": name, "x": x, "y": y}
    pad.canvas._handle_frontend_event(pad.canvas, content, [])


@pytest.fixture(scope="module")
def tiny():
    return open_model("tiny", seed=0)[0]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("embeddings")


@pytest.fixture(scope="module")
def gallery(tiny, cache):
    """Index of the 660 real mini_sbir photos."""
    return photo_index_from_items(tiny, gallery_dataset("mini_sbir"), cache)


@pytest.fixture(scope="module")
def real_sketch(mini_sbir):
    return Image.open(sorted((mini_sbir / "sketch" / "mushroom").glob("*.png"))[0])


@pytest.fixture()
def app(tiny, gallery, cache):
    app = live_sketch_app(tiny, {"mini_sbir": gallery}, cache_dir=cache)
    yield app
    app.close()


def test_pen_events_record_strokes_and_update_the_count():
    pad = SketchPad(200)
    changes = []
    pad.on_change(lambda p: changes.append(len(p.drawing)))
    _event(pad, "mouse_move", 5, 5)  # hovering without pressing draws nothing
    _event(pad, "mouse_down", 10, 10)
    for x in range(12, 60, 4):
        _event(pad, "mouse_move", x, x / 2)
    _event(pad, "mouse_up", 60, 30)
    _event(pad, "touch_start", 100, 100)
    _event(pad, "touch_move", 120, 150)
    _event(pad, "touch_end", 120, 150)
    _event(pad, "mouse_down", 30, 150)
    _event(pad, "mouse_move", 40, 160)
    _event(pad, "mouse_out", 40, 160)  # leaving the canvas ends the stroke
    _event(pad, "mouse_up", 40, 160)  # ... once
    assert len(pad.drawing) == 3 and changes == [1, 2, 3]
    assert pad.count.value == "strokes: 3"
    np.testing.assert_allclose(pad.drawing.strokes[0][:2], [[10, 10], [12, 6]])
    np.testing.assert_allclose(pad.drawing.strokes[1], [[100, 100], [120, 150]])


def test_undo_clear_width_and_query_image():
    pad = SketchPad(200)
    assert pad.is_empty and pad.query_image() is None
    pad.add_stroke([(0, 0), (50, 80), (100, 0)])
    pad.add_stroke([(20, 40), (80, 40)])
    image = pad.query_image()
    assert image.size == (150, 150) and np.asarray(image).min() < 255
    assert np.array_equal(np.asarray(image), np.asarray(rasterize(pad.drawing.strokes)))
    pad.width.value = "thick"
    assert np.asarray(pad.query_image()).mean() < np.asarray(image).mean()  # more ink
    pad.undo()
    assert len(pad.drawing) == 1 and pad.count.value == "strokes: 1"
    pad.clear()
    assert pad.is_empty and pad.count.value == "strokes: 0"


def test_pads_keep_their_own_strokes():
    a, b = SketchPad(100), SketchPad(100)
    a.add_stroke([(1, 1), (5, 5)])
    assert len(a.drawing) == 1 and len(b.drawing) == 0


def test_recorded_strokes_query_the_gallery(app, real_sketch):
    strokes = trace_strokes(real_sketch)
    assert app.panel.signature.value == "results: none"
    for stroke in strokes:
        app.pad.add_stroke(stroke)
    result = app.wait()
    assert result is not None and len(result.indices) == 10
    assert set(result.labels) <= set(app.searcher.gallery("mini_sbir").labels)
    assert all(a >= b for a, b in zip(result.scores, result.scores[1:]))
    assert app.panel.signature.value.startswith(f"results: {result.signature}")
    assert app.runner.delivered >= 1 and app.runner.delivered + app.runner.dropped == len(strokes)
    assert "mini_sbir" in app.panel.status.value and "converted" in app.panel.status.value


def test_kind_switch_requeries_and_empty_canvas_shows_hint(app, real_sketch):
    app.pad.load_image(real_sketch)
    first = app.wait()
    np.testing.assert_array_equal(np.asarray(first.image), np.asarray(normalize_sketch_image(real_sketch)))
    signatures = {first.signature}
    for kind in ("original", "semantic"):
        app.panel.kind.value = kind
        result = app.wait()
        assert result.kind == kind
        signatures.add(result.signature)
    assert len(signatures) == 3  # the kinds rank the gallery differently (the signature includes the kind)
    app.pad.clear()
    assert app.wait() is None
    assert app.panel.signature.value == "results: none" and "Draw a sketch" in app.panel.status.value


def test_a_users_folder_becomes_a_gallery(app, mini_sbir, tmp_path, real_sketch):
    for label in ("mushroom", "pizza"):
        (tmp_path / "mine" / "photo" / label).mkdir(parents=True)
        for photo in sorted((mini_sbir / "photo" / label).iterdir())[:6]:
            shutil.copy(photo, tmp_path / "mine" / "photo" / label / photo.name)
    app.pad.load_image(real_sketch)
    app.wait()
    app.add_folder(str(tmp_path / "mine"))
    result = app.wait()
    assert result.gallery == "folder: mine" and app.panel.gallery.value == "folder: mine"
    assert len(result.indices) == 10 and set(result.labels) <= {"mushroom", "pizza"}
    app.add_folder(str(tmp_path / "missing"))
    assert "not a folder" in app.panel.status.value


MARKUP = "<img src=x onerror=alert(1)>"


def test_class_names_and_paths_are_escaped_in_the_panel(app, mini_sbir, tmp_path, real_sketch):
    """A class folder named like an HTML tag is shown as text, in captions, status and messages."""
    for label in (MARKUP, "pizza"):
        (tmp_path / "mine" / "photo" / label).mkdir(parents=True)
        for photo in sorted((mini_sbir / "photo" / ("pizza" if label == "pizza" else "mushroom")).iterdir())[:6]:
            shutil.copy(photo, tmp_path / "mine" / "photo" / label / photo.name)
    app.pad.load_image(real_sketch)
    app.wait()
    app.add_folder(str(tmp_path / "mine"))
    result = app.wait()
    assert MARKUP in result.labels
    captions = [c.value for c in app.panel._captions]
    escaped = "&lt;img src=x onerror=alert(1)&gt;"
    assert any(escaped in c for c in captions) and not any("<img" in c for c in captions)
    app.add_folder(str(tmp_path / MARKUP))  # a missing folder named like a tag: the message names it, as text
    assert escaped in app.panel.status.value and "<img" not in app.panel.status.value
    app.feedback.mark(result.labels.index(MARKUP), "yes")  # the feedback line names the marked class, as text
    assert escaped in app.feedback.status.value and "<img" not in app.feedback.status.value
    assert app.wait().relevant and "<img" not in app.feedback.status.value


def test_clearing_the_pad_clears_the_old_tiles(app, real_sketch):
    app.pad.load_image(real_sketch)
    assert app.wait() is not None
    assert all(image.value for image in app.panel._images)
    app.pad.clear()
    assert app.wait() is None
    assert all(image.value == b"" and image.layout.visibility == "hidden" for image in app.panel._images)
    assert all(caption.value == "" and caption.layout.visibility == "hidden" for caption in app.panel._captions)
    assert all(cell.children[-1].layout.visibility == "hidden" for cell in app.panel.cells)  # the yes / no buttons
    assert app.panel.signature.value == "results: none"


def test_a_failed_query_leaves_no_stale_result(tiny, gallery, cache, real_sketch):
    def broken():
        raise OSError("cannot read the gallery\nsecond line of the error")

    app = live_sketch_app(tiny, {"mini_sbir": gallery, "broken": broken}, cache_dir=cache)
    try:
        app.pad.load_image(real_sketch)
        assert app.wait() is not None
        app.panel.gallery.value = "broken"
        assert app.wait() is None  # not the previous query's result
        status = app.panel.status.value
        assert "failed" in status and "OSError: cannot read the gallery second line" in status and "\n" not in status
        assert all(image.value == b"" for image in app.panel._images)
        assert app.panel.signature.value == "results: none"
        app.panel.gallery.value = "mini_sbir"
        assert app.wait().gallery == "mini_sbir"  # the worker survived
    finally:
        app.close()


def _tile_classes(app) -> list[str]:
    """Per tile: "yes", "no" or "" from the cell's CSS classes (what a browser test reads)."""
    return ["".join(c.split("-")[-1] for c in cell._dom_classes if c.startswith("mars-tile-"))
            for cell in app.panel.cells]


def test_marking_tiles_refines_the_results_and_reset_returns_the_sketch(app, gallery, real_sketch):
    import torch

    from mars_lite.search.feedback import refine

    app.pad.load_image(real_sketch)
    sketch = app.wait()
    assert sketch.query is not None and not sketch.relevant and _tile_classes(app) == [""] * 10
    assert app.feedback.reset_button.disabled and "yes" in app.feedback.status.value
    photo = sketch.indices[9]
    app.feedback.buttons[9][0].click()  # "yes" on the last tile, as the browser's click does
    refined = app.wait()
    assert refined.relevant == (photo,) and refined.signature != sketch.signature
    assert refined.indices.index(photo) < 9  # the photo marked relevant moves up ...
    tile = refined.indices.index(photo)  # ... and its mark moves with it
    assert _tile_classes(app) == ["yes" if i == tile else "" for i in range(10)]
    assert app.panel.cells[tile].layout.border.startswith("3px solid #2e7d32")
    assert app.feedback.buttons[tile][0].description.endswith("yes") and not app.feedback.reset_button.disabled
    assert app.feedback.status.value == "refined from 1 yes / 0 no"
    # the refined ranking is Rocchio's query searched over the same gallery kind
    matrix = gallery.matrix(sketch.kind)
    expected = (matrix @ refine(sketch.query, matrix[[photo]], None)).topk(10)
    assert refined.indices == expected.indices.tolist()
    assert torch.allclose(torch.tensor(refined.scores), expected.values, atol=1e-5)
    app.feedback.buttons[tile][0].click()  # clicking a pressed button again unmarks: the sketch's own results
    alone = app.wait()
    assert not app.feedback.marks and not alone.relevant and alone.signature == sketch.signature
    assert _tile_classes(app) == [""] * 10 and app.feedback.buttons[tile][0].description == "yes"
    no_photo, yes_photo = alone.indices[0], alone.indices[3]
    app.runner.debounce_s = 0.5  # the second click reads the same tiles as the first (a person is slower)
    app.feedback.buttons[0][1].click()
    app.feedback.buttons[3][0].click()
    both = app.wait()
    app.runner.debounce_s = 0.0
    assert both.relevant == (yes_photo,) and both.irrelevant == (no_photo,) and both.signature != sketch.signature
    assert app.feedback.status.value == "refined from 1 yes / 1 no"
    assert _tile_classes(app) == [{yes_photo: "yes", no_photo: "no"}.get(row, "") for row in both.indices]
    app.feedback.mark_photo(no_photo, "no")  # by gallery row (the photo may have left the top 10): unmarked
    assert app.wait().irrelevant == () and app.feedback.marks == {yes_photo: "yes"}
    app.feedback.reset_button.click()
    back = app.wait()
    assert back.signature == sketch.signature and back.scores == sketch.scores
    assert not app.feedback.marks and _tile_classes(app) == [""] * 10 and app.feedback.reset_button.disabled


def test_marks_are_dropped_when_the_sketch_or_its_kind_changes(app, real_sketch):
    app.pad.load_image(real_sketch)
    sketch = app.wait()
    app.feedback.mark(5, "yes")
    assert app.wait().relevant == (sketch.indices[5],)
    app.runner.debounce_s = 0.5  # the next sketch's query cannot be answered before the click below
    app.pad.add_stroke([(10, 10), (200, 220)])  # a new stroke: the marks judged the old results
    assert not app.feedback.marks and _tile_classes(app) == [""] * 10
    assert app.feedback.mark(0, "yes") is None  # the old tiles cannot be judged any more
    assert "wait for the results" in app.feedback.status.value
    stroke = app.wait()
    assert not stroke.relevant and not app.feedback.marks
    app.runner.debounce_s = 0.0
    app.feedback.mark(1, "no")
    assert app.wait().irrelevant == (stroke.indices[1],)
    app.panel.kind.value = "semantic" if app.panel.kind.value != "semantic" else "original"
    switched = app.wait()
    assert not switched.irrelevant and not app.feedback.marks and _tile_classes(app) == [""] * 10
    app.feedback.mark(2, "yes")
    assert app.wait().relevant
    app.pad.undo()  # the pad is empty again: the hint, no marks
    assert app.wait() is None and not app.feedback.marks and app.feedback.base is None


def test_refine_result_checks_its_marks(tiny, gallery, real_sketch):
    from mars_lite.errors import MarsLiteError
    from mars_lite.search.feedback import refine_result

    searcher = SketchSearcher(tiny, {"mini_sbir": gallery})
    sketch = searcher.query_image(real_sketch, "semantic")
    same = refine_result(searcher, sketch, seq=4)
    assert same.indices == sketch.indices and same.seq == 4 and not same.relevant
    mixed = refine_result(searcher, sketch, [sketch.indices[3], sketch.indices[3]], [sketch.indices[3], 7])
    assert mixed.relevant == (sketch.indices[3],) and mixed.irrelevant == (7,)  # once each; "yes" wins
    assert mixed.kind == "semantic" and mixed.gallery == "mini_sbir" and mixed.timings["total"] > 0
    with pytest.raises(MarsLiteError, match="not in gallery 'mini_sbir'"):
        refine_result(searcher, sketch, [len(gallery)])


def test_pen_and_edit_buttons_carry_visible_labels():
    from mars_lite.ui.pad_controls import BUTTON_TEXT, PAD_CSS

    pad = SketchPad(200)
    assert pad.width._options_labels == ("thin", "medium", "thick")
    assert [t for t in pad.width.tooltips] == ["thin pen", "medium pen", "thick pen"]
    assert "mars-pen-width" in pad.width._dom_classes
    # the toggle buttons get their text colour from a stylesheet scoped to the pad, shipped with it
    assert pad.widget.children[0].value == PAD_CSS and f"color: {BUTTON_TEXT}" in PAD_CSS
    for button, text in ((pad.undo_button, "undo"), (pad.clear_button, "clear")):
        assert button.description == text and button.style.text_color == BUTTON_TEXT and button.tooltip


def test_latest_query_wins_and_submitting_never_blocks():
    delivered, started = [], []

    def slow_query(value, seq):
        started.append(seq)
        time.sleep(0.2)
        return value

    runner = LatestQueryRunner(slow_query, delivered.append, debounce_s=0.0)
    submit_times = []
    for value in range(6):
        t0 = time.perf_counter()
        runner.submit(value)
        submit_times.append(time.perf_counter() - t0)
        time.sleep(0.01)
    assert runner.wait(5) == 5
    assert max(submit_times) < 0.05  # drawing never waits for a running query
    assert delivered == [5]  # the first request was running when newer ones came: dropped
    assert started == [1, 6]  # requests 2..5 were stale before their turn: never computed
    assert runner.dropped == 5
    runner.close()


def test_query_errors_are_reported_and_the_worker_survives():
    errors, results = [], []

    def flaky(value, seq):
        if value == "bad":
            raise RuntimeError("broken image")
        return value

    runner = LatestQueryRunner(flaky, results.append, lambda err, seq: errors.append((str(err), seq)), debounce_s=0)
    runner.submit("bad")
    runner.wait(5)
    runner.submit("good")
    assert runner.wait(5) == "good"
    assert errors == [("broken image", 1)] and results == ["good"]
    runner.close()


def test_results_arrive_on_a_worker_thread_while_the_pad_stays_free(tiny, gallery):
    threads = []
    searcher = SketchSearcher(tiny, {"mini_sbir": gallery})
    runner = LatestQueryRunner(lambda strokes, seq: searcher.query_strokes(strokes, seq=seq),
                               lambda r: threads.append(threading.current_thread().name))
    runner.submit([[(0, 0), (40, 30), (80, 0)]])
    result = runner.wait(30)
    assert result.seq == 1 and threads and threads[0].startswith("mars-lite-query")
    assert threads[0] != threading.current_thread().name
    runner.close()


def test_bfloat16_autocast_encodes_nearly_like_float32(tiny, gallery, real_sketch):
    import torch

    image = normalize_sketch_image(real_sketch)
    exact = SketchSearcher(tiny, {"mini_sbir": gallery}).embed([image], "semantic")
    fast = SketchSearcher(tiny, {"mini_sbir": gallery}, autocast=torch.bfloat16).embed([image], "semantic")
    assert fast.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(exact, fast).item() > 0.999


# ------------------------------------------------------------------ robustness
_coordinate = st.one_of(
    st.floats(-200, 800, allow_nan=False),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e300, -1e300, 0.0]),
    st.floats(allow_nan=True, allow_infinity=True),
)
_point = st.tuples(_coordinate, _coordinate)
_plain_stroke = st.lists(_point, max_size=16)  # includes empty strokes and single points
# huge recordings, built without generating them point by point: a short stroke repeated
_huge_stroke = st.builds(lambda pts, n: [p for _ in range(n) for p in pts],
                         st.lists(_point, min_size=1, max_size=4), st.integers(1000, 10_000))
_stroke = st.integers(0, 19).flatmap(lambda i: _huge_stroke if i == 0 else _plain_stroke)
_many_dots = st.builds(lambda n, seed: [[tuple(p)] for p in np.random.default_rng(seed).uniform(-50, 450, (n, 2))],
                       st.integers(1000, 5000), st.integers(0, 2**16))  # thousands of one-point strokes
_drawing = st.integers(0, 19).flatmap(lambda i: _many_dots if i == 0 else st.lists(_stroke, max_size=6))


@settings(max_examples=1000, deadline=1500, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(drawings=st.lists(_drawing, min_size=1, max_size=2))
def test_random_stroke_sequences_rasterise_and_query_without_error(searcher_for_property, drawings):
    """Any pen input (empty, single points, off-canvas, NaN/inf, huge) rasterises and queries in bounded time."""
    start = time.perf_counter()
    images = [rasterize(strokes) for strokes in drawings]
    drawn = [im for im in images if np.asarray(im).min() < 255]
    for image in images:
        assert image.size == (150, 150) and image.mode == "L"
    if drawn:
        results = searcher_for_property.query_images(drawn, "converted")
        for result in results:
            assert len(result.indices) == 10 and all(math.isfinite(s) for s in result.scores)
    if not drawn:  # an empty canvas is answered without a query
        assert searcher_for_property.query_strokes(drawings[0], "semantic") is None
    assert time.perf_counter() - start < 1.5


@pytest.fixture(scope="module")
def searcher_for_property(tiny, gallery):
    # one intra-op thread: a single 64 px image gains nothing from more, and loses a lot on a busy CPU
    return SketchSearcher(tiny, {"mini_sbir": gallery}, threads=1)
