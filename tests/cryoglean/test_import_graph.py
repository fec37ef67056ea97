"""The import graph of the packages follows DESIGN.md's flow.

* No upward import: harvest <- converters <- trainers <- cryoglean (an import anywhere in a
  module counts, inside functions too: a lazy import is still a dependency).
* No import cycle among modules, counting imports that run when a module is imported (module
  level, class bodies, ``if``/``try`` blocks; not function bodies, which break cycles by design,
  nor ``if TYPE_CHECKING:`` blocks, which never run).
* No module over MAX_LINES lines unless its docstring has a line starting with ``Long module:``
  that says why.

The modules are read with :mod:`ast`, never imported. The graph's summary (modules, edges,
longest modules, every violation) is written to ``import_graph.txt`` under the test's tmp_path
and repeated in each failure message.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: package -> layer; a module may import its own layer and lower ones (templates is data).
LAYERS = {"templates": 0, "harvest": 0, "converters": 1, "trainers": 2, "cryoglean": 3}
MAX_LINES = 500
LONG_MODULE_MARK = "Long module:"


@dataclass
class Module:
    name: str
    path: Path
    lines: int
    docstring: str
    is_package: bool
    #: (imported module, line, runs at import time?)
    imports: list[tuple[str, int, bool]] = field(default_factory=list)


def _module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_statements(tree: ast.Module):
    """(node, runs at import time) for every import statement in the module."""
    out = []

    def visit(node: ast.AST, eager: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                out.append((child, eager))
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, False)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    visit(ast.Module(body=[stmt], type_ignores=[]), False)
                for stmt in child.orelse:
                    visit(ast.Module(body=[stmt], type_ignores=[]), eager)
            else:
                visit(child, eager)

    visit(tree, True)
    return out


def _resolve(mod: Module, node: ast.AST, known: set[str]) -> list[str]:
    """The project modules an import statement loads (its deepest existing target each)."""

    def deepest(name: str) -> str | None:
        parts = name.split(".")
        for i in range(len(parts), 0, -1):
            if ".".join(parts[:i]) in known:
                return ".".join(parts[:i])
        return None

    targets: list[str] = []
    if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
    else:
        if node.level:
            base = mod.name.split(".") if mod.is_package else mod.name.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        for alias in node.names:
            sub = f"{prefix}.{alias.name}"
            targets.append(sub if sub in known else prefix)
    found = [deepest(t) for t in targets]
    return sorted({t for t in found if t and t != mod.name})


def load_modules() -> dict[str, Module]:
    modules: dict[str, Module] = {}
    trees = {}
    for pkg in LAYERS:
        for path in sorted((REPO / pkg).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            text = path.read_text(encoding="utf-8")
            tree = ast.parse(text, filename=str(path))
            name, is_pkg = _module_name(path)
            modules[name] = Module(name, path, len(text.splitlines()),
                                   ast.get_docstring(tree) or "", is_pkg)
            trees[name] = tree
    known = set(modules)
    for name, mod in modules.items():
        for node, eager in _import_statements(trees[name]):
            for target in _resolve(mod, node, known):
                mod.imports.append((target, node.lineno, eager))
    return modules


MODULES = load_modules()


def _layer(module: str) -> int:
    return LAYERS[module.split(".")[0]]


def upward_imports(modules: dict[str, Module]) -> list[str]:
    bad = []
    for mod in modules.values():
        for target, line, _ in mod.imports:
            if _layer(target) > _layer(mod.name):
                bad.append(f"{_rel(mod.path)}:{line}: {mod.name} imports {target} "
                           f"({target.split('.')[0]} is above {mod.name.split('.')[0]})")
    return bad


def eager_graph(modules: dict[str, Module]) -> dict[str, set[str]]:
    return {m.name: {t for t, _, eager in m.imports if eager} for m in modules.values()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    comps: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return comps


def _cycle_path(comp: list[str], graph: dict[str, set[str]]) -> str:
    """One concrete loop through a component, for the message (a -> b -> a)."""
    members = set(comp)
    start = comp[0]
    prev: dict[str, str] = {}
    todo = [start]
    while todo:  # breadth-first from start until an edge returns to it
        v = todo.pop(0)
        for w in sorted(graph[v] & members):
            if w == start:
                chain = [v]
                while chain[-1] != start:
                    chain.append(prev[chain[-1]])
                return " -> ".join([*reversed(chain), start])
            if w not in prev:
                prev[w] = v
                todo.append(w)
    return " -> ".join(comp)


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def long_modules(modules: dict[str, Module]) -> list[str]:
    return [f"{_rel(m.path)}: {m.lines} lines, no '{LONG_MODULE_MARK}' line in its "
            "docstring (split it, or say why it is one module)"
            for m in sorted(modules.values(), key=lambda m: -m.lines)
            if m.lines > MAX_LINES and not any(
                line.strip().startswith(LONG_MODULE_MARK) for line in m.docstring.splitlines())]


def summary(modules: dict[str, Module]) -> str:
    graph = eager_graph(modules)
    n_edges = sum(len({t for t, _, _ in m.imports}) for m in modules.values())
    n_eager = sum(len(v) for v in graph.values())
    lines = [f"{len(modules)} modules, {n_edges} import edges ({n_eager} at import time)"]
    for pkg in LAYERS:
        mods = [m for m in modules.values() if m.name.split(".")[0] == pkg]
        deps = sorted({t.split(".")[0] for m in mods for t, _, _ in m.imports} - {pkg})
        lines.append(f"  {pkg:<11} {len(mods):>3} modules, {sum(m.lines for m in mods):>6} lines;"
                     f" imports {', '.join(deps) or 'nothing else'}")
    lines.append("longest modules:")
    for m in sorted(modules.values(), key=lambda m: -m.lines)[:12]:
        mark = " (Long module: stated)" if LONG_MODULE_MARK in m.docstring else ""
        lines.append(f"  {m.lines:>5}  {_rel(m.path)}{mark}")
    problems = upward_imports(modules) + [
        "cycle: " + _cycle_path(c, graph) for c in cycles(graph)] + long_modules(modules)
    lines.append(f"violations ({len(problems)}):")
    lines += [f"  {p}" for p in problems] or ["  none"]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> str:
    text = summary(MODULES)
    (tmp_path_factory.mktemp("graph") / "import_graph.txt").write_text(text + "\n")
    return text


def test_every_package_is_read():
    for pkg in ("harvest", "converters", "trainers", "cryoglean"):
        assert pkg in MODULES and MODULES[pkg].is_package
    assert "cryoglean.cli" in MODULES
    # a known edge of each kind, so that a resolver that finds nothing cannot pass
    assert any(t == "harvest.conventions" and eager for t, _, eager in
               MODULES["converters.select"].imports)
    assert any(t.startswith("converters") and not eager for t, _, eager in
               MODULES["converters.cli"].imports)


def test_no_upward_import(report):
    bad = upward_imports(MODULES)
    assert not bad, "upward imports:\n" + "\n".join(bad) + "\n\n" + report


def test_no_import_cycle(report):
    graph = eager_graph(MODULES)
    found = cycles(graph)
    assert not found, ("import cycles at import time (import inside the function that needs "
                       "it, or move the shared code down):\n"
                       + "\n".join(_cycle_path(c, graph) for c in found) + "\n\n" + report)


def test_no_long_module_without_a_reason(report):
    bad = long_modules(MODULES)
    assert not bad, "\n".join(bad) + "\n\n" + report


# The checks themselves, on small made-up graphs.

def test_cycle_finder():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(g) == [["a", "b", "c"]]
    assert _cycle_path(["a", "b", "c"], g) == "a -> b -> c -> a"
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_resolver_and_laziness(tmp_path):
    code = (
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "import harvest.catalog\n"
        "from . import export\n"
        "from .formats import star\n"
        "if TYPE_CHECKING:\n"
        "    from trainers import data\n"
        "def f():\n"
        "    from cryoglean import cli\n"
        "class C:\n"
        "    import numpy\n"
    )
    mod = Module("converters.fake", tmp_path / "fake.py", 10, "", False)
    known = {"harvest", "harvest.catalog", "converters", "converters.export",
             "converters.formats", "converters.formats.star", "trainers", "trainers.data",
             "cryoglean", "cryoglean.cli"}
    got = [(t, eager) for node, eager in _import_statements(ast.parse(code))
           for t in _resolve(mod, node, known)]
    assert got == [("harvest.catalog", True), ("converters.export", True),
                   ("converters.formats.star", True), ("trainers.data", False),
                   ("cryoglean.cli", False)]
    mod.imports = [(t, 1, e) for t, e in got]
    assert [b.split(": ")[1] for b in upward_imports({"converters.fake": mod})] == [
        "converters.fake imports trainers.data (trainers is above converters)",
        "converters.fake imports cryoglean.cli (cryoglean is above converters)",
    ]
