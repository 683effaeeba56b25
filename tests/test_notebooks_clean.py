"""Every study notebook is committed clean and follows the notebook rules (style.md).

Checked for each ``notebooks/*.ipynb``: no outputs and no execution counts (so stripping would
not change the file), exactly one cell tagged ``parameters``, a Markdown first cell that starts
with a ``# `` title, every code cell directly under a Markdown cell, no class definitions, no
``!pip`` / ``%pip``, no ``sys.path`` edits, and no function longer than ~10 lines.
"""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
MAX_FUNCTION_LINES = 12  # "no function longer than ~10 lines"


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _python(cell: dict) -> str:
    """The cell's code with IPython magics and shell escapes commented out, so ast can parse it."""
    return "\n".join("#" + line if line.lstrip().startswith(("%", "!")) else line
                     for line in _source(cell).splitlines())


def test_the_study_notebooks_exist():
    names = {p.stem[:2] for p in NOTEBOOKS}
    assert {"00", "01", "02", "03", "04", "05"} <= names, sorted(p.name for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    for i, cell in enumerate(_cells(path)):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{path.name} cell {i} has outputs: clear them before committing"
            assert cell.get("execution_count") is None, f"{path.name} cell {i} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_opens_with_a_title_and_one_parameters_cell(path):
    cells = _cells(path)
    assert cells and cells[0]["cell_type"] == "markdown", f"{path.name}: first cell must be Markdown"
    assert _source(cells[0]).startswith("# "), f"{path.name}: first cell must start with '# ' (the title)"
    tagged = [i for i, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: expected exactly one cell tagged 'parameters', found {tagged}"
    assert cells[tagged[0]]["cell_type"] == "code"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_code_cell_sits_under_markdown(path):
    cells = _cells(path)
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "code":
            assert i > 0 and cells[i - 1]["cell_type"] == "markdown", (
                f"{path.name} cell {i}: a code cell must come right after a Markdown cell that explains it")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_thin_cells_no_classes_no_installs_no_path_hacks(path):
    for i, cell in enumerate(_cells(path)):
        if cell["cell_type"] != "code":
            continue
        text = _source(cell)
        assert not re.search(r"^\s*[!%]\s*pip\b", text, re.M), f"{path.name} cell {i}: no pip installs in notebooks"
        assert "sys.path" not in text, f"{path.name} cell {i}: no sys.path edits (install the package instead)"
        tree = ast.parse(_python(cell))
        for node in ast.walk(tree):
            assert not isinstance(node, ast.ClassDef), f"{path.name} cell {i}: class {node.name} belongs in mars_lite"
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                assert length <= MAX_FUNCTION_LINES, (
                    f"{path.name} cell {i}: function {node.name} has {length} lines; move it into mars_lite")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_minimal_metadata(path):
    meta = json.loads(path.read_text(encoding="utf-8"))["metadata"]
    assert meta.get("kernelspec", {}).get("name") == "python3", f"{path.name}: kernelspec must be python3"
    assert set(meta) <= {"kernelspec", "language_info"}, f"{path.name}: strip extra metadata {sorted(meta)}"
