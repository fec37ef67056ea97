"""Write a directory atomically: build it in a temporary sibling, rename it into place.

An export never leaves a half-written dataset where a trainer could read it, and never replaces an
existing one unless asked (``force``); with ``force`` the old directory is removed only after the
new one is complete and renamed into place.

Temporaries are named ``.OUT.tmp-HOST-PID-XXXX`` (the new directory) and ``.OUT.old-HOST-PID-XXXX``
(the previous one, during a ``force`` swap), so that a killed export can be cleaned up by the
next one: before it starts, an export into ``OUT`` removes the temporaries of ``OUT`` whose
process is gone (same host, PID no longer running) and, if it was killed in the middle of a swap
(``OUT`` missing, its old copy still there), first puts the old copy back. Temporaries of a live
process, or of another host, are left alone.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


class OutputExistsError(FileExistsError):
    """The output directory exists and ``--force`` was not given."""


def check_output(out: str | os.PathLike, force: bool = False) -> Path:
    """Absolute output path; OutputExistsError when it exists without ``force``. The
    temporaries of killed exports into ``out`` are cleaned up first (:func:`clean_stale`)."""
    out = Path(os.path.abspath(out))
    if out.parent.is_dir():
        clean_stale(out)
    if out.exists() or out.is_symlink():
        if not force:
            raise OutputExistsError(
                f"{out}: output exists; choose another -o or pass --force to replace it"
            )
        if not out.is_dir() or out.is_symlink():
            raise OutputExistsError(f"{out}: exists and is not a directory; remove it first")
    return out


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def _prefix(out: Path, kind: str) -> str:
    return f".{out.name}.{kind}-{_host()}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def stale_temporaries(out: str | os.PathLike) -> list[Path]:
    """Temporaries of exports into ``out`` whose process is gone (this host, PID not running)."""
    out = Path(os.path.abspath(out))
    pat = re.compile(rf"^\.{re.escape(out.name)}\.(tmp|old)-(.+)-(\d+)-[^-]+$")
    stale = []
    try:
        siblings = list(out.parent.iterdir())
    except OSError:
        return []
    for p in siblings:
        m = pat.match(p.name)
        if m and m.group(2) == _host() and not _alive(int(m.group(3))):
            stale.append(p)
    return sorted(stale)


def clean_stale(out: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of killed exports into ``out`` (see the module docstring);
    returns what was removed. A swap killed halfway (``out`` gone) gets its old copy back."""
    out = Path(os.path.abspath(out))
    stale = stale_temporaries(out)
    olds = [p for p in stale if ".old-" in p.name]
    if olds and not (out.exists() or out.is_symlink()):
        os.rename(olds[-1], out)
        log.warning("%s: restored from %s, left by an export that was killed", out, olds[-1])
        stale.remove(olds[-1])
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
        log.warning("removed %s, left by an export that was killed", p)
    return stale


@contextmanager
def atomic_directory(out: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``out``; on success rename it to ``out``.

    On an exception the temporary directory is removed and ``out`` is untouched. With ``force``
    an existing ``out`` is moved aside, the new one renamed in, then the old one deleted (if the
    final rename fails the old one is put back).
    """
    out = check_output(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(out, "tmp"), dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # Checked again: someone may have created OUT while we were writing.
    try:
        check_output(out, force)
    except OutputExistsError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.chmod(tmp, 0o755)  # mkdtemp makes it 0o700; a dataset is meant to be shared
    old: Path | None = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=_prefix(out, "old"), dir=out.parent))
        os.rmdir(old)
        os.rename(out, old)
    try:
        os.rename(tmp, out)
    except OSError:
        if old is not None:
            os.rename(old, out)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
