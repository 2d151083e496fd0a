"""The code's floors: imports run one way (app -> training -> model; bench on top; nothing imports
tests), no module imports itself round a cycle, and no function in the packages is over 60 lines."""
from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import REPO

PACKAGES = ("model", "training", "app", "bench")
# What each package may import from the project (besides itself).
ALLOWED = {"model": set(), "training": {"model"}, "app": {"model", "training"}, "bench": {"model", "training", "app"}}
MAX_LINES = 60


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the packages."""
    out = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules ``path`` imports, anywhere in the file (function-level imports count)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            # ``from package import module`` names the module; ``from module import name`` the module
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules) | {"tests"}
    return {name: _imports(path, name, known) for name, path in modules.items()}


def test_imports_run_downward_only():
    wrong = [f"{name} imports {target}" for name, targets in _graph().items() for target in targets
             if target.split(".")[0] != name.split(".")[0] and target.split(".")[0] not in ALLOWED[name.split(".")[0]]]
    assert not wrong, wrong


def test_no_import_cycle():
    graph = _graph()
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.lineno, node.end_lineno - node.lineno + 1


def test_no_function_is_over_60_lines():
    modules = _modules()
    assert {m.split(".")[0] for m in modules} == set(PACKAGES) and len(modules) > 60
    long = [f"{path.relative_to(REPO)}:{line} {name} ({n} lines)"
            for path in modules.values() for name, line, n in _functions(path) if n > MAX_LINES]
    assert not long, long


def test_the_checks_see_what_they_look_for(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))  # 60 body lines + the def line
    (tmp_path / "m.py").write_text(f"def f():\n{body}\n", encoding="utf-8")
    assert [n for _, _, n in _functions(tmp_path / "m.py")] == [MAX_LINES + 1]
    (tmp_path / "a.py").write_text("from model.pipeline import Predictor\nimport training.train as t\n"
                                   "def f():\n    from app import ui\n", encoding="utf-8")
    known = {"model", "model.pipeline", "training", "training.train", "app", "app.ui"}
    assert _imports(tmp_path / "a.py", "x.a", known) == {"model.pipeline", "training.train", "app.ui"}


def test_the_gpu_benchmark_does_not_reach_the_app():
    """``python -m bench.gpu`` runs on a GPU machine without gradio: nothing it imports, at any depth
    (function-level imports included), is an app module."""
    graph, seen, todo = _graph(), set(), ["bench.gpu", "bench.gpu_eval"]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph.get(node, ()))
    assert not sorted(m for m in seen if m.split(".")[0] in ("app", "tests")), sorted(seen)
