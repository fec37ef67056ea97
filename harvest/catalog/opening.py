"""Opening a catalog file: read-only on shared storage, refusing what is not a sound catalog.

:func:`connect` is how :class:`harvest.catalog.store.Catalog` opens its file.

- **Readers** (``ls``, ``show``, ``export``, ``evaluate``, ``report``) open the file with SQLite's
  URI ``mode=ro``: they never write, so a catalog that a facility shares read-only (file and
  folder without write permission for the reader) serves them. The catalog is in WAL mode; a
  WAL reader needs the ``-shm`` file beside the catalog. When the reader cannot create it (the
  folder is not writable) and no crawl has the catalog open (no ``-wal`` file), the file is
  opened ``immutable=1``: read as it is, without locks. A crawl that starts while such a reader
  runs writes into its own ``-wal`` file, which the reader does not see; only a checkpoint
  (a crawl's end) rewrites the catalog file itself, and a reader caught by one may stop with a
  SQLite error: run it again. With a ``-wal`` and a readable ``-shm`` (a crawl is running, or
  ended without cleaning up) ``mode=ro`` reads through them.
- **Writers** (``crawl``, ``watch``, ``import``) need write permission on the file and its folder
  (SQLite creates ``-wal``/``-shm`` there); without it they stop with one line before writing.
- **Not a catalog:** an SQLite file of another application (tables, but no ``schema_version``)
  is refused, never extended with cryoglean's tables; an empty file is a new catalog.
- **Damaged:** :func:`check_schema` compares the tables, columns, indexes and views with what
  the migrations create (a dropped table or index is named); writers also run SQLite's
  ``quick_check`` on every table but ``particles`` (:func:`quick_check`).

Every refusal is a :class:`CatalogError` (a ``ValueError``): one line naming the file, what is
wrong and what to do; :func:`sqlite_errors` turns SQLite's complaints about the file met later
(a full disk during a crawl, damage met while reading) into one too.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
from collections.abc import Iterator
from urllib.parse import quote

# Byte 18 of an SQLite file header: 1 = rollback journal, 2 = WAL (sqlite.org/fileformat.html).
_WAL_HEADER_OFFSET = 18


class CatalogError(ValueError):
    """The catalog file cannot be used as asked (one line: file, what is wrong, what to do)."""


def _uri(path: str, **query: str) -> str:
    return "file:" + quote(os.path.abspath(path)) + "?" + "&".join(f"{k}={v}" for k, v in query.items())


def _is_wal(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            header = fh.read(100)
    except OSError:
        return False
    return len(header) == 100 and header[:16] == b"SQLite format 3\0" and \
        header[_WAL_HEADER_OFFSET] == 2


def connect(path: str, readonly: bool) -> sqlite3.Connection:
    """An autocommit connection to the catalog at ``path`` (see the module's docstring)."""
    folder = os.path.dirname(os.path.abspath(path)) or "."
    if os.path.isdir(path):
        raise CatalogError(f"catalog {path} is a folder; give --db the catalog file")
    if readonly:
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"catalog {path} does not exist; run `cryoglean crawl ROOT --db {path}` first")
        if not os.access(path, os.R_OK):
            raise CatalogError(f"catalog {path} is not readable by this user; ask its owner "
                               "for read permission")
        query = {"mode": "ro"}
        if _is_wal(path) and not os.access(folder, os.W_OK):
            if not os.path.exists(path + "-wal"):
                query["immutable"] = "1"  # no crawl has it open; SQLite cannot create -shm here
            elif not os.path.exists(path + "-shm"):
                raise CatalogError(
                    f"catalog {path} has a {path}-wal file but no -shm file, and this user "
                    f"cannot create one in {folder}; ask its owner to open it once (e.g. "
                    "`cryoglean ls`) so that the -wal file is folded into the catalog")
        return sqlite3.connect(_uri(path, **query), uri=True, isolation_level=None, timeout=30)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"catalog {path}: folder {folder} does not exist; create it first")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise CatalogError(f"catalog {path} is read-only for this user; crawl or import with an "
                           "account that may write it (ls, show, export and report read it as "
                           "it is)")
    if not os.access(folder, os.W_OK):
        raise CatalogError(f"catalog {path}: folder {folder} is not writable by this user, and "
                           "SQLite writes its -wal and -shm files there; crawl with an account "
                           "that may write it, or put the catalog elsewhere")
    return sqlite3.connect(path, isolation_level=None, timeout=30)


def check_foreign(conn: sqlite3.Connection, path: str) -> None:
    """CatalogError if the file is an SQLite database of another application: it has tables
    or views but no ``schema_version`` table. An empty database is a new catalog."""
    names = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
        "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    if names and "schema_version" not in names:
        shown = ", ".join(names[:5]) + (", …" if len(names) > 5 else "")
        raise CatalogError(
            f"{path} is an SQLite database of another application (tables {shown}), not a "
            "cryoglean catalog; cryoglean adds nothing to it: give --db a new file or a "
            "cryoglean catalog")


def _shape(conn: sqlite3.Connection) -> dict[str, dict[str, frozenset[str]]]:
    """{'table': {name: columns}, 'index': {name: ∅}, 'view': {name: ∅}} of a connection."""
    out: dict[str, dict[str, frozenset[str]]] = {"table": {}, "index": {}, "view": {}}
    for kind, name in conn.execute(
            "SELECT type, name FROM sqlite_master WHERE type IN ('table', 'index', 'view') "
            "AND name NOT LIKE 'sqlite_%'"):
        cols = frozenset()
        if kind == "table":
            cols = frozenset(r[1] for r in conn.execute(f'PRAGMA table_info("{name}")'))
        out[kind][name] = cols
    return out


@functools.cache
def expected_shape(version: int) -> dict[str, dict[str, frozenset[str]]]:
    """What migrations 1 … ``version`` create (run on an in-memory database, once)."""
    import sqlite_utils

    from harvest.catalog.schema import MIGRATIONS

    mem = sqlite3.connect(":memory:", isolation_level=None)
    try:
        db = sqlite_utils.Database(mem, execute_plugins=False, recursive_triggers=False)
        for migration in MIGRATIONS[:version]:
            migration(db)
        return _shape(mem)
    finally:
        mem.close()


def check_schema(conn: sqlite3.Connection, path: str, version: int) -> None:
    """CatalogError naming what is missing when a table, column, index or view that migrations
    1 … ``version`` create is not in the catalog (a damaged or hand-edited catalog)."""
    if version <= 0:
        return
    want, have = expected_shape(version), _shape(conn)
    missing = []
    for kind in ("table", "index", "view"):
        for name, cols in sorted(want[kind].items()):
            if name not in have[kind]:
                missing.append(f"{kind} {name}")
            elif cols - have[kind][name]:
                missing.append(f"column{'s' if len(cols - have[kind][name]) > 1 else ''} "
                               f"{', '.join(sorted(cols - have[kind][name]))} of table {name}")
    if missing:
        shown = "; ".join(missing[:4]) + ("; …" if len(missing) > 4 else "")
        raise CatalogError(
            f"catalog {path} is damaged: {shown} missing (schema version {version}); restore "
            "it from a backup, or crawl into a new catalog file")


def quick_check(conn: sqlite3.Connection, path: str, skip: tuple[str, ...] = ("particles",)) -> None:
    """SQLite's ``PRAGMA quick_check`` on every table but ``skip`` (the particle rows: the bulk
    of a catalog, read and rewritten set by set, where damage surfaces as a SQLite error);
    CatalogError with SQLite's first complaint."""
    tables = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    for table in tables:
        if table in skip:
            continue
        try:
            rows = conn.execute(f'PRAGMA quick_check("{table}")').fetchall()
        except sqlite3.DatabaseError as exc:
            rows = [(str(exc),)]
        if rows and rows[0][0] != "ok":
            first = " ".join(str(rows[0][0]).replace("*** in database main ***", "").split())
            raise CatalogError(
                f"catalog {path} is damaged (table {table}: {first}); restore it from a "
                "backup, or crawl into a new catalog file")


#: (words in SQLite's message, what to do), first match wins.
_ADVICE = (
    ("database or disk is full", "free space on its filesystem and crawl again: every project "
                                 "written before is kept, the next crawl writes the rest"),
    ("readonly database", "this user may not write it; crawl with an account that may"),
    ("malformed", "the file is damaged: restore it from a backup, or crawl into a new file"),
    ("not a database", "the file is not an SQLite catalog: give --db a cryoglean catalog"),
    ("disk i/o error", "the filesystem failed a read or write: check it and run again"),
    ("database is locked", "another program holds it; try again later"),
)


@contextlib.contextmanager
def sqlite_errors(path: str) -> Iterator[None]:
    """Turn an SQLite error about the catalog file at ``path`` (full disk, read-only file,
    damage) into a one-line :class:`CatalogError` that names the file and what to do; other
    SQLite errors (bugs) pass unchanged."""
    try:
        yield
    except sqlite3.Error as exc:
        text = str(exc).lower()
        for words, advice in _ADVICE:
            if words in text:
                raise CatalogError(f"catalog {path}: {exc}; {advice}") from exc
        raise
