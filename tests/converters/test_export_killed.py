"""SIGKILL during an export: the next export into the same place leaves no orphan temporaries,
and a swap killed halfway gets the previous export back instead of losing it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from converters import atomic

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Writes into an atomic directory, then sleeps (to be killed there); stage "swap" kills itself
# between moving the old export aside and renaming the new one in.
CHILD = r"""
import os, sys, time
from pathlib import Path
from converters import atomic
out, stage = Path(sys.argv[1]), sys.argv[2]
if stage == "swap":
    real_rename = os.rename
    def rename(a, b):
        real_rename(a, b)
        if ".old-" in str(b):
            os.kill(os.getpid(), 9)
    atomic.os.rename = rename
with atomic.atomic_directory(out, force=True) as tmp:
    (tmp / "labels.txt").write_text("new\n")
    print("ready", flush=True)
    if stage == "write":
        time.sleep(60)
"""


def _killed_child(out, stage):
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(out), stage], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    if stage == "write":
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return proc.pid


def _temporaries(out):
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def test_next_export_removes_what_a_killed_one_left(tmp_path):
    out = tmp_path / "ds"
    for _ in range(3):
        _killed_child(out, "write")
    # each run cleaned what the run before it left: one orphan at a time, never a pile
    assert len(_temporaries(out)) == 1 and not out.exists()
    with atomic.atomic_directory(out) as tmp:
        (tmp / "labels.txt").write_text("done\n")
    assert _temporaries(out) == []
    assert (out / "labels.txt").read_text() == "done\n"


def test_a_swap_killed_halfway_restores_the_previous_export(tmp_path):
    out = tmp_path / "ds"
    with atomic.atomic_directory(out) as tmp:
        (tmp / "labels.txt").write_text("old\n")
    _killed_child(out, "swap")
    assert not out.exists()  # killed between the two renames
    assert any(".old-" in n for n in _temporaries(out))
    with pytest.raises(atomic.OutputExistsError):  # the old export is back, so OUT exists
        atomic.check_output(out)
    assert (out / "labels.txt").read_text() == "old\n"
    assert _temporaries(out) == []


def test_temporaries_of_a_live_export_are_left_alone(tmp_path):
    out = tmp_path / "ds"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(out), "write"], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        assert atomic.stale_temporaries(out) == []
        atomic.check_output(out)
        assert len(_temporaries(out)) == 1  # still there: its process runs
    finally:
        proc.kill()
        proc.wait()
    time.sleep(0.05)
    assert len(atomic.stale_temporaries(out)) == 1
