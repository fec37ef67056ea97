"""Write a directory atomically: build it in a temporary sibling, rename it into place.

An export never leaves a half-written dataset where a trainer could read it, and never replaces an
existing one unless asked (``force``); with ``force`` the old directory is removed only after the
new one is complete and renamed into place.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class OutputExistsError(FileExistsError):
    """The output directory exists and ``--force`` was not given."""


def check_output(out: str | os.PathLike, force: bool = False) -> Path:
    """Absolute output path; OutputExistsError when it exists without ``force``."""
    out = Path(os.path.abspath(out))
    if out.exists() or out.is_symlink():
        if not force:
            raise OutputExistsError(
                f"{out}: output exists; choose another -o or pass --force to replace it"
            )
        if not out.is_dir() or out.is_symlink():
            raise OutputExistsError(f"{out}: exists and is not a directory; remove it first")
    return out


@contextmanager
def atomic_directory(out: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``out``; on success rename it to ``out``.

    On an exception the temporary directory is removed and ``out`` is untouched. With ``force``
    an existing ``out`` is moved aside, the new one renamed in, then the old one deleted (if the
    final rename fails the old one is put back).
    """
    out = check_output(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
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
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
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
