"""Project fingerprints: a re-crawl knows that a project is unchanged from ``stat`` calls alone.

A crawl that finds a project unchanged (or has just written it) records a fingerprint: the stat
data of exactly the paths its ``scan_project`` depended on (the parser's ``scan_depends``). The
next crawl stats those paths first; when every stat is the same, the project is counted
unchanged without opening a file, parsing its bookkeeping or reading its catalog rows.
Otherwise the project takes the full path (scan, compare the file stamps, parse what changed),
which records a new fingerprint.

**What a fingerprint records.** For each path, ``(size, mtime_ns, inode, ctime_ns)`` of its
``os.stat`` (symlinks followed), or "absent". The paths are the files the scan read or stamped
(pipeline, ``job.json``, every file a job's stamps name, a job's exit marker and creation file) and
the directories it *listed* (globs for iterations or pick index files, the walk of pick jobs'
coordinate folders, the CryoSPARC project folder): a directory's mtime and ctime change when an
entry is created, removed or renamed in it, so a new iteration, a new coordinate file or a new
job folder is seen. A symbolic link inside a listed directory is recorded by its own path too
(its target may appear or change without touching the directory). Absent paths inside a listed
directory are covered by the directory; others are recorded as absent.

**The guarantee.** If a fingerprint matches, ``scan_project`` would return what it returned
when the fingerprint was recorded, and the catalog holds exactly that: the full path would also
have found the project unchanged. It rests on three rules:

- *Coverage*: ``scan_depends`` names every path whose stat, content or listing the scan uses
  (tests mutate each file and folder of generated projects and check that the fingerprint or
  the scan notices, ``tests/harvest/test_crawl_incremental_fingerprint.py``).
- *No racy stamps* (as git's "racy clean" entries): a fingerprint is recorded only when every
  present path's ctime is at least :data:`RACY_NS` older than the start of the scan. A file
  rewritten in place with the same size within one mtime tick of the previous write (or touched
  back to its old mtime) keeps size and mtime but not ctime, which the kernel sets to now on
  every change and no user can set; and a change between the scan and the stat calls cannot go
  unnoticed. Every file the scan stamped must also stat as the scan stamped it.
- *Only clean projects*: projects with problems in this crawl, with scan problems or with jobs
  that failed to parse get no fingerprint (they are retried every crawl, as before), and
  fingerprints are dropped when the harvest code changes (:func:`scanner_id`) or the project is
  not ``ok`` in the catalog.

What can still change unseen: anything the scan does not read (as before this shortcut: a job is
re-parsed when the files its stamps name change); a change made less than :data:`RACY_NS` after
the scan started when the storage's clock is behind the crawler's by more than that; on NFS, a
change made by another client within the attribute-cache time before the crawl (``acregmax``,
60 s by default; the full path's stamps have the same limit) is seen by the next crawl.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harvest.catalog.sqlvalues import db_text, utcnow
from harvest.records import ProjectScan

# A present path must have been changed at least this long before the scan started (covers
# coarse file-system clocks, small clock skew with the storage and NFS attribute caches).
RACY_NS = 60 * 10**9
_ABSENT = (-1, -1, -1, -1)
_PACK = struct.Struct("<4q")
TABLE = "project_fingerprints"


@dataclass(frozen=True)
class Fingerprint:
    """The paths a project's scan depended on (relative to its root where inside) and the
    digest of their stat data."""

    paths: tuple[str, ...]
    digest: bytes

    def encode_paths(self) -> bytes:
        return zlib.compress("\0".join(self.paths).encode("utf-8", "surrogateescape"), 1)

    @staticmethod
    def decode_paths(blob: bytes) -> tuple[str, ...]:
        raw = zlib.decompress(blob).decode("utf-8", "surrogateescape")
        return tuple(raw.split("\0")) if raw else ()


def _stat(path: str) -> tuple[int, int, int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return _ABSENT
    return st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns


def _digest(stats: Iterable[tuple[int, int, int, int]]) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for s in stats:
        h.update(_PACK.pack(*s))
    return h.digest()


def _relative(root: str, path: str) -> str:
    prefix = root.rstrip("/") + "/"
    return path[len(prefix):] if path.startswith(prefix) else path


def take(scan: ProjectScan, paths: Iterable[str], listed: Iterable[str],
         started_ns: int) -> Fingerprint | None:
    """The fingerprint of a project just scanned (``started_ns``: ``time.time_ns()`` before the
    scan began), or None when it cannot be trusted (a racy path, a stamped file that changed
    since the scan). ``paths``: files (or folders) whose stat the scan used, present or not;
    ``listed``: folders whose entries it listed."""
    root = scan.root
    listed = list(dict.fromkeys(os.path.abspath(d) for d in listed))
    entries: dict[str, tuple[int, int, int, int]] = {}
    for d in listed:
        entries[d] = _stat(d)
        try:
            with os.scandir(d) as it:
                for e in it:
                    if e.is_symlink():
                        entries[e.path] = _stat(e.path)
        except OSError:
            pass
    covered = set(listed)
    for p in paths:
        p = os.path.abspath(p)
        if p in entries:
            continue
        st = _stat(p)
        if st == _ABSENT and os.path.dirname(p) in covered:
            continue  # its creation changes the listed folder
        entries[p] = st
    limit = started_ns - RACY_NS
    if any(st[3] >= limit for st in entries.values() if st != _ABSENT):
        return None
    stamps = list(scan.files) + [f for j in scan.jobs for f in j.files]
    for f in stamps:
        st = entries.get(os.path.abspath(f.path))
        if st is None or st == _ABSENT or (st[0], st[1]) != (f.size, f.mtime_ns):
            return None
    ordered = sorted(entries)
    return Fingerprint(tuple(_relative(root, p) for p in ordered),
                       _digest(entries[p] for p in ordered))


def matches(root: str, fp: Fingerprint | tuple[bytes, bytes]) -> bool:
    """Whether every path of ``fp`` (or of its stored form ``(paths blob, digest)``) still stats
    as recorded (no file is opened)."""
    if isinstance(fp, tuple):
        fp = Fingerprint(Fingerprint.decode_paths(fp[0]), fp[1])
    join = os.path.join
    return _digest(_stat(join(root, p)) for p in fp.paths) == fp.digest


def scanner_id(software: str) -> str:
    """Identifies the code that scans a project: a hash of the harvest package's sources (any
    change, e.g. a new job type, makes every fingerprint stale: the next crawl scans again)."""
    h = hashlib.blake2b(software.encode(), digest_size=12)
    base = Path(__file__).resolve().parent
    for f in sorted(base.rglob("*.py")):
        if "synth" in f.relative_to(base).parts:
            continue
        try:
            h.update(f.relative_to(base).as_posix().encode() + b"\0" + f.read_bytes())
        except OSError:
            h.update(str(f).encode())
    return h.hexdigest()


# -- the catalog's table (schema migration 4, harvest.catalog.schema) --------------------------

def load(conn: sqlite3.Connection, scanners: dict[str, str]
         ) -> dict[str, tuple[int, tuple[bytes, bytes]]]:
    """root → (project id, (paths blob, digest)) of every ``ok`` project whose fingerprint was
    taken by this code (``scanners``: software → :func:`scanner_id`); :func:`matches` decodes
    the blob. One read per crawl."""
    out: dict[str, tuple[int, tuple[bytes, bytes]]] = {}
    for root, software, status, pid, scanner, paths, digest in conn.execute(
        f"SELECT p.root, p.software, p.status, f.project_id, f.scanner, f.paths, f.digest "
        f"FROM {TABLE} f JOIN projects p ON p.id = f.project_id"
    ):
        if status == "ok" and scanners.get(software) == scanner:
            out[root] = (int(pid), (paths, digest))
    return out


def save(conn: sqlite3.Connection, stored: Sequence[tuple[int, str, Fingerprint]],
         dropped: Sequence[int]) -> None:
    """Record fingerprints ``(project id, scanner, fingerprint)`` and forget those of
    ``dropped`` projects, in one short transaction."""
    if not stored and not dropped:
        return
    now = utcnow()
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(f"DELETE FROM {TABLE} WHERE project_id = ?",
                         [(int(i),) for i in dropped])
        conn.executemany(
            f"INSERT OR REPLACE INTO {TABLE} (project_id, scanner, taken_at, paths, digest) "
            "VALUES (?, ?, ?, ?, ?)",
            [(int(pid), db_text(scanner), now, fp.encode_paths(), fp.digest)
             for pid, scanner, fp in stored],
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
