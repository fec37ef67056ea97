"""``watch --poll``: the polling observer sees changes where inotify cannot (network
filesystems). The watcher runs in a process where every inotify instance fails to start (as
watchdog's inotify layer would on a system without inotify), so only polling can notice the new
job."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from harvest.catalog import Catalog

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NO_INOTIFY = (
    "import sys\n"
    "import watchdog.observers.inotify_c as c\n"
    "def _refuse(*a, **k):\n"
    "    raise OSError('inotify disabled for this test')\n"
    "c.InotifyFD.__init__ = _refuse\n"
    "from cryoglean.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def _job_keys(db) -> set[str]:
    with Catalog(db, readonly=True) as cat:
        return set(cat.jobs()["key"])


def _wait_for(predicate, timeout: float, what: str, proc) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"watch exited early ({proc.returncode}): "
                                 f"{proc.stderr.read()[-2000:]}")
        try:
            if predicate():
                return
        except (sqlite3.Error, ValueError, FileNotFoundError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_inotify_is_really_disabled_in_the_watcher_process():
    code = NO_INOTIFY.replace(
        "from cryoglean.cli import main\nsys.exit(main(sys.argv[1:]))\n",
        "from watchdog.events import FileSystemEventHandler\n"
        "from watchdog.observers import Observer\n"
        "o = Observer()\n"
        "o.schedule(FileSystemEventHandler(), '.', recursive=True)\n"
        "o.start()\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode != 0 and "inotify disabled" in res.stderr


@pytest.mark.slow
def test_watch_poll_sees_a_new_job_without_inotify(facility, tmp_path):
    if "cryosparc" not in facility.projects:
        pytest.skip("no CryoSPARC project in the generated facility")
    copy = tmp_path / "fac"
    shutil.copytree(facility.root, copy, symlinks=True)
    cs = copy / os.path.relpath(facility.projects["cryosparc"], facility.root)
    db = tmp_path / "poll.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", NO_INOTIFY, "watch", str(copy), "--db", str(db), "--poll", "0.5",
         "--debounce", "0.5"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        _wait_for(lambda: "J10" in _job_keys(db), 90, "the first crawl", proc)
        shutil.copytree(cs / "J9", cs / "J13", symlinks=True)
        for name in os.listdir(cs / "J13"):
            if name.startswith("J9_"):
                os.rename(cs / "J13" / name, cs / "J13" / ("J13_" + name[3:]))
        doc = (cs / "J13" / "job.json").read_text()
        (cs / "J13" / "job.json").write_text(
            doc.replace("J9/J9_", "J13/J13_").replace('"J9"', '"J13"'))
        _wait_for(lambda: "J13" in _job_keys(db), 60, "the new job J13 in the catalog", proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    assert "polling the file tree every 0.5 s" in err


def test_watch_poll_refuses_a_non_positive_interval(tmp_path):
    from harvest.watch import watch

    with pytest.raises(ValueError, match="--poll"):
        watch([str(tmp_path)], tmp_path / "c.db", poll_interval=0)
