"""The crawl's writer lock: one crawl writes a catalog at a time.

:func:`writer_lock` holds ``fcntl.flock`` on ``<db>.lock`` for a block and writes the holder's
pid into that file, so that a second crawl fails with :class:`CatalogLocked` naming the holder
(after waiting up to ``wait`` seconds). Readers never take the lock: SQLite's WAL lets any number
of them read while the crawl writes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator


class CatalogLocked(OSError):
    """Another process holds the catalog's writer lock (``<db>.lock``)."""

    def __init__(self, lock_path: str, pid: int | None, waited: float):
        self.lock_path = lock_path
        self.pid = pid
        self.waited = waited
        holder = f"pid {pid}" if pid else "another process"
        super().__init__(
            errno.EAGAIN,
            f"catalog is locked by another crawl ({holder}, lock file {lock_path})"
            f"{f' after waiting {waited:g} s' if waited else ''}; "
            "try again later or pass --wait SECONDS",
        )

    def __str__(self) -> str:
        return self.strerror


@contextlib.contextmanager
def writer_lock(db_path: str | os.PathLike, wait: float = 0.0) -> Iterator[str]:
    """Hold the exclusive crawl lock ``<db>.lock`` (``fcntl.flock``) for the block.

    Waits up to ``wait`` seconds for another holder, then raises :class:`CatalogLocked` naming
    the holder's pid (written into the lock file). Yields the lock file path.
    """
    lock_path = os.fspath(db_path) + ".lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{db_path}: the catalog's folder {os.path.dirname(os.path.abspath(lock_path))} does "
            "not exist; create it (mkdir -p) or give --db a file in an existing folder") from None
    except PermissionError as exc:
        raise PermissionError(
            f"cannot open the crawl lock {lock_path} for writing ({exc.strerror}): "
            "crawl with an account that may write the catalog and its folder (ls, show, "
            "export and report only read the catalog)") from None
    try:
        start = time.monotonic()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - start
                if waited >= wait:
                    raise CatalogLocked(lock_path, _read_pid(fd), round(waited, 1)) from None
                time.sleep(min(0.1, max(wait - waited, 0.01)))
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield lock_path
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# Schema and migrations
