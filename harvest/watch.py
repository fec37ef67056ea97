"""``cryoglean watch``: crawl once, then re-crawl the projects whose files change.

A watchdog observer reports file events under the roots: inotify by default, or with
``poll_interval`` (``--poll SECONDS``) watchdog's polling observer, which re-reads the tree's
stat data every interval. Network filesystems (NFS, GPFS, Lustre) raise no inotify event for
changes made by other hosts, so a facility's shared storage needs ``--poll``. Each event is mapped to the project
root it lies in (the longest known root that is a prefix of the path); events outside any known
project (a new project being created) schedule a full crawl, which discovers it. Events are
collected until ``debounce`` seconds pass without a new one, then only the touched projects are
crawled (:func:`harvest.crawl.crawl` with ``only=``). Bursts of events (a job writing hundreds of
files) thus become one crawl.

SIGTERM and SIGINT set a stop flag: the crawl in progress finishes the project it is writing
(its transaction commits) and stops before the next one; the observer is stopped and joined, and
:func:`watch` returns normally (exit status 0).
"""

from __future__ import annotations

import fnmatch
import logging
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Sequence

from harvest.catalog import CatalogLocked
from harvest.crawl import crawl

log = logging.getLogger("harvest.watch")

_FULL = "\0full"  # marker in the pending set: re-discover everything


class _Pending:
    """Thread-safe set of project roots touched since the last crawl, with the time of the last
    event (the observer thread adds, the main loop takes)."""

    def __init__(self, ignore_prefix: str, excludes: Sequence[str] = ()):
        self.excludes = tuple(excludes)
        self.lock = threading.Lock()
        self.roots: set[str] = set()
        self.last_event = 0.0
        self.known: list[str] = []
        self.ignore_prefix = ignore_prefix

    def set_known(self, roots: Sequence[str]) -> None:
        with self.lock:
            self.known = sorted({r.rstrip("/") for r in roots}, key=len, reverse=True)

    def add_path(self, path: str) -> None:
        if not path or path.startswith(self.ignore_prefix):
            return
        if self.excludes and any(
            fnmatch.fnmatch(path, pat) or fnmatch.fnmatch(path, pat.rstrip("/") + "/*")
            or any(fnmatch.fnmatch(part, pat) for part in path.split("/"))
            for pat in self.excludes
        ):
            return
        with self.lock:
            for root in self.known:
                if path == root or path.startswith(root + "/"):
                    self.roots.add(root)
                    break
            else:
                self.roots.add(_FULL)
            self.last_event = time.monotonic()

    def take_if_quiet(self, debounce: float) -> set[str] | None:
        with self.lock:
            if not self.roots or time.monotonic() - self.last_event < debounce:
                return None
            roots, self.roots = self.roots, set()
            return roots


def _handler(pending: _Pending):
    from watchdog.events import FileSystemEventHandler

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event) -> None:
            if event.event_type in ("opened", "closed_no_write"):
                return  # reads (ours included) change nothing
            for attr in ("src_path", "dest_path"):
                p = getattr(event, attr, None)
                if p:
                    pending.add_path(os.fsdecode(p))

    return Handler()


def watch(roots: Sequence[str | os.PathLike], db_path: str | os.PathLike,
          debounce: float = 5.0, excludes: Sequence[str] = (), poll: float = 0.2,
          lock_wait: float = 60.0, poll_interval: float | None = None) -> None:
    """Crawl ``roots`` into ``db_path`` and keep crawling changed projects until SIGTERM or
    SIGINT (then return normally). ``poll`` is how often the loop looks for a quiet batch;
    ``poll_interval`` (seconds) replaces inotify by a polling observer (network filesystems)."""
    if poll_interval is not None and not poll_interval > 0:
        raise ValueError(f"--poll {poll_interval}: the polling interval must be > 0 seconds")
    roots = [os.path.abspath(os.fspath(r)) for r in roots]
    db_abs = os.path.abspath(os.fspath(db_path))
    stop = threading.Event()

    def on_signal(signum, frame) -> None:
        log.info("signal %d: stopping after the current project", signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    # The catalog may live under a watched root: its own writes (db, -wal, -shm, .lock) are
    # not project changes.
    pending = _Pending(ignore_prefix=db_abs, excludes=excludes)
    observer = _observer(poll_interval)
    try:
        handler = _handler(pending)
        for r in roots:
            observer.schedule(handler, r, recursive=True)
        observer.start()
        _run(roots, db_path, excludes, pending, stop, lock_wait, only=None)
        while not stop.is_set():
            stop.wait(poll)
            batch = pending.take_if_quiet(debounce)
            if not batch or stop.is_set():
                if batch:
                    with pending.lock:
                        pending.roots |= batch
                continue
            only = None if _FULL in batch else sorted(batch)
            _run(roots, db_path, excludes, pending, stop, lock_wait, only=only)
    finally:
        observer.stop()
        observer.join(timeout=10)
        for s, h in previous.items():
            signal.signal(s, h)
    log.info("watch stopped")


def _observer(poll_interval: float | None):
    if poll_interval is None:
        from watchdog.observers import Observer

        return Observer()
    from watchdog.observers.polling import PollingObserver

    log.info("watching by polling the file tree every %g s", poll_interval)
    return PollingObserver(timeout=poll_interval)


def _run(roots, db_path, excludes, pending: _Pending, stop: threading.Event, lock_wait: float,
         only) -> None:
    try:
        summary = crawl(roots, db_path, excludes=excludes, progress=False, wait=lock_wait,
                        only=only, should_stop=stop.is_set)
    except CatalogLocked as exc:
        log.warning("%s; will retry", exc)
        with pending.lock:
            pending.roots |= set(only) if only else {_FULL}
            pending.last_event = time.monotonic()
        return
    except (OSError, ValueError, sqlite3.Error) as exc:  # a vanished root, a full disk: go on
        log.error("crawl failed: %s; watching on", exc)
        return
    log.info("%s", summary.line())
    # Known roots as real paths (the catalog keeps non-UTF-8 names escaped for display).
    if only is None:
        pending.set_known(summary.roots)
    else:
        with pending.lock:
            current = set(pending.known)
        pending.set_known((current - set(only)) | set(summary.roots))
