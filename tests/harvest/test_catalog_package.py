"""The catalog package's shape: the public API of the former ``harvest/catalog.py`` is still
importable from ``harvest.catalog``, every module says what it does and stays small, and the
modules import each other one way only (each one imports alone in a fresh interpreter)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import harvest.catalog

PACKAGE = Path(harvest.catalog.__file__).parent
REPO = PACKAGE.parents[1]
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")

# Everything ``from harvest.catalog import ...`` gave before the package existed.
PUBLIC = {
    "COORD_SCALE", "DATA_TABLES", "DEFAULT_SCORE_SCALE", "MICROGRAPH_FIELDS", "MIGRATIONS",
    "SCHEMA_VERSION", "Catalog", "CatalogLocked", "ProjectState", "ProjectWriter",
    "SetWriteResult", "StoredJob", "db_text", "stamps_equal", "writer_lock",
}


def test_public_api_is_reexported():
    assert set(harvest.catalog.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(harvest.catalog, name) is not None, name


def test_modules_are_documented_and_small():
    assert {"codec", "external", "lock", "schema", "store", "writer"} <= set(MODULES)
    for path in PACKAGE.glob("*.py"):
        text = path.read_text()
        assert ast.get_docstring(ast.parse(text)), f"{path.name} has no docstring"
        assert text.count("\n") <= 500, f"{path.name}: {text.count(chr(10))} lines"


def _imports(module: str) -> set[str]:
    """Sibling modules that ``module`` imports at run time (not under TYPE_CHECKING)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
            and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("harvest.catalog."):
                found.add(node.module.split(".")[2])
            elif node.module == "harvest.catalog":
                found |= {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[2] for a in node.names
                      if a.name.startswith("harvest.catalog.")}
    return found & set(MODULES)


def test_no_import_cycle_within_the_package():
    graph = {m: _imports(m) for m in MODULES}
    assert "lock" in graph and not graph["lock"]
    done: set[str] = set()

    def visit(m: str, path: tuple[str, ...]) -> None:
        assert m not in path, "import cycle: " + " → ".join((*path, m))
        if m in done:
            return
        for dep in graph[m]:
            visit(dep, (*path, m))
        done.add(m)

    for m in MODULES:
        visit(m, ())


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_alone(module):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    res = subprocess.run([sys.executable, "-c", f"import harvest.catalog.{module}"],
                         cwd=REPO, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
