"""The house's rules, read from the code: layers, rooms, no circles, no string imports.

The import graph is computed with ``ast`` from every module of the package (imports
inside functions count: they are dependencies too; imports under ``if TYPE_CHECKING:``
are for type checkers only and do not run). docs/architecture.md states the layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Folder of each layer's package, bottom first.
LAYERS = {"data": "aggregame.data", "game": "aggregame", "models": "aggregame.models",
          "solvers": "aggregame.solvers", "studies": "aggregame.studies",
          "cli": "aggregame.cli"}
LAYER_ORDER = ["aggregame.data", "aggregame", "aggregame.models", "aggregame.solvers",
               "aggregame.studies", "aggregame.cli"]
#: Rooms of solvers/, bottom first: a room imports only rooms below it (and itself).
SOLVER_ROOMS = ["aggregame.solvers.solver_choice", "aggregame.solvers.market",
                "aggregame.solvers.inner", "aggregame.solvers.certify",
                "aggregame.solvers.equilibrium", "aggregame.solvers.kkt",
                "aggregame.solvers.compare"]


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    out = {}
    for folder, package in LAYERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([package, *parts])] = path
    return out


MODULES = _modules()


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every import that runs."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []

    def visit(node: ast.AST) -> None:
        if _type_checking_only(node):
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, [alias.name for alias in node.names]))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _target(module: str, names: list[str]) -> list[str]:
    """The package modules an import loads: ``from a.b import c`` is a.b.c where c is
    a module, else a.b."""
    out = [f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES]
    if len(out) < len(names) and module in MODULES:
        out.append(module)
    return out


def _graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        edges = set()
        for module, names in _imports(path):
            if module.split(".")[0] == "aggregame":
                edges.update(t for t in _target(module, names) if t != name)
        graph[name] = edges
    return graph


GRAPH = _graph()


def _owner(module: str, order: list[str]) -> int:
    """Index in ``order`` of the longest prefix that owns ``module``."""
    best = -1
    for k, prefix in enumerate(order):
        if (module == prefix or module.startswith(prefix + ".")) and (
                best < 0 or len(prefix) > len(order[best])):
            best = k
    return best


@pytest.mark.unit
def test_the_graph_was_read():
    assert len(MODULES) > 60 and sum(len(e) for e in GRAPH.values()) > 150


@pytest.mark.unit
def test_layers_point_one_way():
    upward = sorted(f"{a} -> {b}" for a, edges in GRAPH.items() for b in edges
                    if _owner(b, LAYER_ORDER) > _owner(a, LAYER_ORDER))
    assert upward == []


@pytest.mark.unit
def test_solver_rooms_point_one_way():
    inside = {a: e for a, e in GRAPH.items() if a.startswith("aggregame.solvers.")}
    upward = sorted(f"{a} -> {b}" for a, edges in inside.items() for b in edges
                    if b.startswith("aggregame.solvers.")
                    and _owner(b, SOLVER_ROOMS) > _owner(a, SOLVER_ROOMS))
    assert upward == []


@pytest.mark.unit
def test_no_import_circle():
    """Tarjan's strongly connected components: every one a single module."""
    index, low, stack, on, circles = {}, {}, [], set(), []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in GRAPH[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                circles.append(sorted(part))

    for v in GRAPH:
        if v not in index:
            connect(v)
    assert circles == []


@pytest.mark.unit
def test_no_private_name_crosses_a_module():
    crossing = sorted(
        f"{name}: from {module} import {n}" for name, path in MODULES.items()
        for module, names in _imports(path) if module.startswith("aggregame")
        for n in names if n.startswith("_") and not n.startswith("__"))
    assert crossing == []


@pytest.mark.unit
def test_no_string_imports():
    """Modules are imported by name in the code, never from a string at run time
    (importlib.import_module, __import__): the graph above must be the whole truth."""
    found = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = ast.unparse(node.func)
                if func.endswith("import_module") or func == "__import__":
                    found.append(f"{name}: {ast.unparse(node)}")
    assert found == []


#: The house's size limits (lines), for every module of the package and every class.
MAX_MODULE_LINES = 600
MAX_CLASS_LINES = 300
#: Modules above a limit while someone else changes them, and who brings each under:
#: an exception that is no longer needed fails the test too, so it is removed then.
SIZE_EXCEPTIONS: dict[str, str] = {}


def _too_big(path: Path) -> list[str]:
    """What in ``path`` is over a limit: the module itself, or any class in it (its
    lines from the first decorator to the last line of its body)."""
    text = path.read_text(encoding="utf-8")
    found = []
    lines = len(text.splitlines())
    if lines > MAX_MODULE_LINES:
        found.append(f"{lines} lines")
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ClassDef):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            size = node.end_lineno - first + 1
            if size > MAX_CLASS_LINES:
                found.append(f"class {node.name}: {size} lines")
    return found


@pytest.mark.unit
def test_modules_and_classes_are_small():
    too_big = {name: _too_big(path) for name, path in MODULES.items()}
    over = sorted(f"{name}: {', '.join(found)}" for name, found in too_big.items()
                  if found and name not in SIZE_EXCEPTIONS)
    stale = sorted(name for name in SIZE_EXCEPTIONS if not too_big.get(name))
    assert (over, stale) == ([], [])
