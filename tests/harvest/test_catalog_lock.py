"""The crawl's writer lock (harvest.catalog.lock): one holder at a time, the holder's pid in the
lock file, waiting for a release, the CLI's exit code when the catalog is locked."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from harvest.catalog import CatalogLocked, writer_lock

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_writer_lock_is_exclusive_within_one_process(tmp_path):
    """flock belongs to the open file, so a second holder in the same process is refused too;
    the lock file names the holder while held and is empty once released."""
    db = tmp_path / "c.db"
    with writer_lock(db) as lock_path:
        assert lock_path == str(db) + ".lock"
        with open(lock_path) as f:
            assert f.read().strip() == str(os.getpid())
        with pytest.raises(CatalogLocked) as info:
            with writer_lock(db):
                pass
        assert info.value.pid == os.getpid() and info.value.waited == 0
        assert info.value.lock_path == lock_path
        assert isinstance(info.value, OSError)
        assert str(info.value).startswith("catalog is locked by another crawl")
        assert "\n" not in str(info.value) and "--wait" in str(info.value)
        # another catalog beside it has its own lock
        with writer_lock(tmp_path / "other.db"):
            pass
    with open(str(db) + ".lock") as f:
        assert f.read() == ""
    with writer_lock(db, wait=0.1):  # free again
        pass


def test_writer_lock_second_holder(tmp_path):
    db = tmp_path / "c.db"
    code = textwrap.dedent(f"""
        import time
        from harvest.catalog import writer_lock
        with writer_lock({str(db)!r}):
            print("locked", flush=True)
            time.sleep(30)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, cwd=REPO,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        t0 = time.monotonic()
        with pytest.raises(CatalogLocked) as info:
            with writer_lock(db, wait=0.5):
                pass
        assert time.monotonic() - t0 >= 0.45
        assert info.value.pid == proc.pid
        assert f"pid {proc.pid}" in str(info.value)
        # the CLI exits 75 naming the holder
        res = subprocess.run(
            [sys.executable, "-m", "cryoglean.cli", "crawl", str(tmp_path), "--db", str(db),
             "--quiet"], cwd=REPO, capture_output=True, text=True)
        assert res.returncode == 75, res.stderr
        assert f"pid {proc.pid}" in res.stderr
    finally:
        proc.kill()
        proc.wait()
    # released: now it can be taken
    with writer_lock(db):
        pass


def test_writer_lock_waits_for_release(tmp_path):
    db = tmp_path / "c.db"
    code = textwrap.dedent(f"""
        import time
        from harvest.catalog import writer_lock
        with writer_lock({str(db)!r}):
            print("locked", flush=True)
            time.sleep(1.0)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, cwd=REPO,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with writer_lock(db, wait=20):
            pass
    finally:
        proc.wait()


def test_crawl_into_a_missing_folder_says_so_in_one_line(tmp_path):
    from click.testing import CliRunner

    from cryoglean.cli import cli

    db = tmp_path / "not" / "there" / "catalog.db"
    r = CliRunner().invoke(cli, ["crawl", str(tmp_path), "--db", str(db)])
    assert r.exit_code == 1, r.output
    line = r.output.strip()
    assert "\n" not in line and "Traceback" not in line
    assert f"folder {db.parent} does not exist" in line and "mkdir -p" in line
    assert not db.parent.exists()  # nothing created on a typo
