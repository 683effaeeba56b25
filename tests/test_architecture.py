"""The layout rules of the README's "Architecture": layers point down, no circles, one loader,
argparse only in the command line, widgets only in ui/, small modules, and nothing outside the
repository (the team's workshop beside a checkout is not part of the product)."""
from __future__ import annotations

import ast
import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "mars_lite"
# Layer of each top-level part; a module may import its own layer or lower ones only.
LAYERS = {"settings": 0, "files": 0, "config": 0, "errors": 0, "data": 1, "method": 2, "losses": 2, "embed": 3,
          "train": 4, "eval": 4, "metrics": 4, "search": 4, "ui": 5, "study": 5, "cli": 6}
WIDGETS = ("ipywidgets", "ipycanvas", "IPython", "voila", "plotly")


def _modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path) -> list[tuple[str, int]]:
    """(absolute module imported, line) for every import of mars_lite code in ``path``."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("mars_lite"):
                found.append((target, node.lineno))
                found += [(f"{target}.{a.name}", node.lineno) for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.startswith("mars_lite")]
    return found


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_imports_point_down_the_layers():
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        here = _top(name)
        for target, line in _imports(name, path):
            there = _top(target)
            if here in LAYERS and there in LAYERS and LAYERS[there] > LAYERS[here]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} ({here}) imports {target} ({there})")
    assert not wrong, "\n".join(wrong)


def test_no_import_circles():
    modules = _modules()
    graph = {name: {t for t, _ in _imports(name, path) if t in modules and t != name}
             for name, path in modules.items()}
    # package __init__ files re-export their modules: an edge into a package is an edge into what it imports
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if nxt.startswith(node + "."):
                continue  # a package importing its own modules is not a circle
            if state.get(nxt) == 1 and not node.startswith(nxt + "."):
                cycles.append(stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, cycles


def test_argparse_lives_in_the_command_line_only():
    users = [str(p.relative_to(ROOT)) for p in PKG.rglob("*.py")
             if "argparse" in p.read_text() and "cli" not in p.relative_to(PKG).parts]
    assert not users, users


def test_only_ui_imports_widget_libraries():
    offenders = []
    for name, path in _modules().items():
        if _top(name) in ("ui", "study", "cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            offenders += [f"{name}: {n}" for n in names if n.split(".")[0] in WIDGETS]
    assert not offenders, offenders


def test_a_small_top_level_and_small_modules():
    top = sorted(p.name for p in PKG.glob("*.py"))
    assert len(top) <= 12, top
    long = {str(p.relative_to(ROOT)): n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long


def test_one_model_loader():
    source = "\n".join(p.read_text() for p in PKG.rglob("*.py"))
    for gone in ("def resolve_model", "def study_model", "def _initial_model", "def _load_model"):
        assert gone not in source, gone
    assert source.count("def load_model(") == 1 and source.count("def open_model(") == 1


def test_every_package_says_what_it_holds():
    for init in PKG.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 40, f"{init.relative_to(ROOT)} needs a docstring saying what it holds"


def test_notebook_cells_show_the_method():
    cells = {}
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        cells[path.name] = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "compute_losses(" in cells["03_train_mars.ipynb"]
    assert "m[SKETCH_ID] + m[PHOTO_ID]" in cells["04_modality_gap_before_after.ipynb"]
    assert "retrieval_embedding(" in cells["04_modality_gap_before_after.ipynb"]


def test_the_repository_stands_alone():
    try:
        tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    needle = "../" + "shared"  # spelled in two parts so that this file does not match itself
    hits = []
    for rel in tracked.splitlines():
        path = ROOT / rel
        if path.suffix in (".py", ".md", ".ipynb", ".json", ".toml", ".yml", ".cfg", ".txt", "") and path.is_file():
            try:
                text = path.read_text()
            except UnicodeDecodeError:
                continue
            if needle in text:
                hits.append(rel)
    assert not hits, hits
