"""The one guarded way harvest opens a facility's files: type checked, confined, time-budgeted.

Facility trees are written by many people and programs; a crawl must neither hang on what it
finds nor leave the facility because a file told it to. Every file a parser opens (STAR files,
``default_pipeline.star``, coordinate files, ``run.job``, CryoSPARC ``.cs``/``job.json``/
``project.json``, MRC headers) goes through :func:`open_file` or, for libraries that take a path
(numpy's memory map, ``mrcfile``), :func:`check_file` just before. Names a project writes into its
metadata (job.json ``metafiles``, pipeline nodes, micrograph and coordinate names in STAR files)
go through :func:`resolve`.

1. **Regular files only.** The path is ``stat``-ed first: a FIFO, socket, device or folder is
   refused with :class:`NotARegularFile` (naming the path and what it is) and never opened, so
   a FIFO cannot block the crawl in ``open()``. :func:`open_file` then opens with ``O_NONBLOCK``
   and checks the open descriptor again (a file swapped for a FIFO between the two steps still
   cannot block), clears ``O_NONBLOCK`` and reads plainly.
2. **Inside the crawl roots.** During a crawl (:func:`confine`, set by :func:`harvest.crawl.crawl`)
   a name is joined to the project root, normalised (``..`` removed) and refused with
   :class:`OutsideRoots` when it leaves the crawl roots (``../../../../etc/passwd``,
   ``/etc/...``). A file that is opened must also *resolve* inside the roots (its symlinks
   followed), following ``--follow-symlinks``: ``within`` and ``never`` require the real path
   inside the roots' real paths; ``any`` checks the name only. Outside a crawl (a parser called
   directly, an export reading images) there are no roots and only the type check applies.
3. **A time budget per file.** Reads through :func:`open_file` check a deadline
   (:data:`BUDGET_ENV`, default :data:`DEFAULT_BUDGET_S` seconds from the open) before every
   chunk and raise :class:`FileBudgetExceeded`, which parsers turn into one problem row: a file
   that streams forever or trickles in (a FUSE or overloaded network mount) costs at most the
   budget. What it does not cover: a single ``read()`` or ``stat()`` blocked inside the kernel
   (a hard-mounted NFS server that is down) cannot be interrupted portably from Python, and
   memory-mapped ``.cs`` files and ``mrcfile`` header reads take a path, so their reads happen
   outside these checks (they are type checked and confined, and read a bounded amount).

Messages name the path and what is wrong; they never quote a file's content.

``CRYOGLEAN_TEST_STALL=SUFFIX=SECONDS`` (tests only, like ``CRYOGLEAN_TEST_KILL_AFTER``) makes
every read of a file whose path ends with ``SUFFIX`` sleep that long first: a stalling mount,
without one.
"""

from __future__ import annotations

import io
import os
import stat
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

BUDGET_ENV = "CRYOGLEAN_FILE_BUDGET"
STALL_ENV = "CRYOGLEAN_TEST_STALL"
DEFAULT_BUDGET_S = 300.0
_BUFFER = 1 << 20  # bytes per read: large files cost few deadline checks

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class _Named:
    """Errors that carry the path they are about in ``filename`` (as ``open()``'s do), so that
    problem rows name the file; ``str()`` stays the one-line message."""

    def __init__(self, message: str, path: str | None = None):
        super().__init__(message)
        self.filename = path

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class NotARegularFile(_Named, FileNotFoundError):
    """A path where a file is expected holds a FIFO, socket, device or folder (never opened)."""


class OutsideRoots(_Named, PermissionError):
    """A path (as named, or as resolved through links) leaves the crawl roots (never opened)."""


class FileBudgetExceeded(_Named, TimeoutError):
    """Reading one file took longer than its time budget (:data:`BUDGET_ENV`)."""


def shown(name: str, limit: int = 120) -> str:
    """A name taken from a project's metadata, fit for a one-line message: control characters
    escaped, at most ``limit`` characters."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(name))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def kind_of(mode: int) -> str:
    """What a non-regular ``st_mode`` is, in words."""
    for test, words in _KINDS:
        if test(mode):
            return words
    return "not a regular file"


@dataclass(frozen=True)
class _Bounds:
    named: tuple[str, ...]  # absolute, normalised roots as given
    real: tuple[str, ...]  # their resolved paths
    follow_symlinks: str


_bounds: _Bounds | None = None


@contextmanager
def confine(roots: Sequence[str | os.PathLike], follow_symlinks: str = "within") -> Iterator[None]:
    """Within the block, files and names outside ``roots`` are refused (see the module
    docstring). Nested use restores the outer roots on exit."""
    global _bounds
    named = tuple(os.path.normpath(os.path.abspath(os.fspath(r))) for r in roots)
    previous = _bounds
    _bounds = _Bounds(named, tuple(os.path.realpath(r) for r in named), follow_symlinks)
    try:
        yield
    finally:
        _bounds = previous


def roots() -> tuple[str, ...]:
    """The crawl roots in force (empty outside :func:`confine`)."""
    return _bounds.named if _bounds is not None else ()


def _under(path: str, bounds: Sequence[str]) -> bool:
    return any(path == b or path.startswith(b.rstrip("/") + "/") for b in bounds)


def inside(path: str | os.PathLike) -> bool:
    """Whether an absolute path lies, as written (normalised), inside the crawl roots; True
    outside a crawl."""
    if _bounds is None:
        return True
    p = os.path.normpath(os.path.abspath(os.fspath(path)))
    return _under(p, _bounds.named) or _under(p, _bounds.real)


def resolve(base: str | os.PathLike, name: str, what: str = "file") -> str:
    """``name`` (as a project's metadata writes it) joined to ``base`` and normalised; raises
    :class:`OutsideRoots` when it leaves the crawl roots. Nothing is opened or stat-ed."""
    path = os.path.normpath(os.path.join(os.fspath(base), name))
    if not inside(path):
        raise OutsideRoots(
            f"{path}: the {what} {shown(name)!r} named in the project leaves the crawl roots "
            f"({', '.join(_bounds.named)}); not read", path)
    return path


def check_file(path: str | os.PathLike) -> os.stat_result:
    """``stat`` of a regular file that may be opened: :class:`NotARegularFile`,
    :class:`OutsideRoots` or the ``stat`` error (``FileNotFoundError``, ...) otherwise."""
    p = os.fspath(path)
    if _bounds is not None and not inside(p):
        raise OutsideRoots(f"{p}: outside the crawl roots ({', '.join(_bounds.named)}); not read",
                           p)
    st = os.stat(p)
    if not stat.S_ISREG(st.st_mode):
        raise NotARegularFile(f"{p}: is {kind_of(st.st_mode)}, not a regular file; not read", p)
    if _bounds is not None and _bounds.follow_symlinks != "any":
        real = os.path.realpath(p)
        if not _under(real, _bounds.real):
            raise OutsideRoots(
                f"{p}: links to {real}, outside the crawl roots; not read "
                "(--follow-symlinks any reads such files)", p)
    return st


def is_regular(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a regular file (links followed); never opens it, never raises."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def budget_seconds() -> float:
    """The per-file time budget in seconds (:data:`BUDGET_ENV`, else the default)."""
    value = os.environ.get(BUDGET_ENV)
    if not value:
        return DEFAULT_BUDGET_S
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{BUDGET_ENV}={value!r} is not a number of seconds") from None
    if not seconds >= 0:
        raise ValueError(f"{BUDGET_ENV}={value!r}: give a number of seconds >= 0")
    return seconds


def _stall_seconds(path: str) -> float:
    value = os.environ.get(STALL_ENV)
    if not value:
        return 0.0
    suffix, _, seconds = value.rpartition("=")
    try:
        return float(seconds) if suffix and path.endswith(suffix) else 0.0
    except ValueError:
        raise ValueError(f"{STALL_ENV}={value!r}: give SUFFIX=SECONDS") from None


class _BudgetedFile(io.FileIO):
    """A file descriptor whose reads stop with :class:`FileBudgetExceeded` after a deadline."""

    def __init__(self, fd: int, path: str, deadline: float):
        super().__init__(fd, "rb", closefd=True)
        self._path = path
        self._deadline = deadline
        self._stall = _stall_seconds(path)

    def _check(self) -> None:
        if self._stall:
            time.sleep(self._stall)
        if time.monotonic() > self._deadline:
            raise FileBudgetExceeded(
                f"{self._path}: reading took longer than the per-file budget "
                f"({budget_seconds():g} s, {BUDGET_ENV}); not read", self._path)

    def readinto(self, buffer) -> int:
        self._check()
        return super().readinto(buffer)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        self._check()
        return super().read(size)

    def readall(self) -> bytes:
        chunks = []
        while True:
            chunk = self.read(_BUFFER)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def open_file(path: str | os.PathLike, mode: str = "rb", encoding: str | None = None,
              errors: str | None = None):
    """Open a facility file for reading: ``"rb"`` (a buffered binary file) or ``"r"`` (text,
    ``encoding``/``errors`` as :func:`open`); checked, confined and budgeted as the module
    docstring says."""
    if mode not in ("r", "rb"):
        raise ValueError(f"open_file reads only ('r' or 'rb'), not {mode!r}")
    p = os.fspath(path)
    checked = check_file(p)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    flags |= getattr(os, "O_CLOEXEC", 0)
    fd = os.open(p, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (checked.st_dev,
                                                                        checked.st_ino):
            raise NotARegularFile(f"{p}: changed while being opened; not read", p)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        raw = _BudgetedFile(fd, p, time.monotonic() + budget_seconds())
    except BaseException:
        os.close(fd)
        raise
    buffered = io.BufferedReader(raw, buffer_size=_BUFFER)
    if mode == "rb":
        return buffered
    return io.TextIOWrapper(buffered, encoding=encoding or "utf-8", errors=errors)
