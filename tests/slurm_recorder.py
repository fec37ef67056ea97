"""A Slurm pipeline generated for a stand-in ``cryoglean`` that records its calls (no tests
here): ``slurm value`` goes to the real command (the jobs read thresholds and diameters when
they run), every other call is appended to a file. Used by the pipeline tests that run the
generated job scripts with bash."""

from __future__ import annotations

import subprocess
import sys

RECORDER = """#!/usr/bin/env bash
# `slurm value` goes to the real command; every other call is recorded
if [ "$1" = slurm ]; then exec {python} -m cryoglean.cli "$@"; fi
printf '%s\\n' "$*" >> {record}
"""


def recorded_pipeline(tmp_path, name, *sets):
    """``slurm pipeline NAME`` into ``tmp_path/slurm`` with a recording stand-in, a workdir whose
    name would run a command if a script failed to quote it, and ``--set`` values ``sets``;
    returns (workdir, script folder, record file)."""
    from cryoglean.cli import main

    bindir = tmp_path / "bin"
    bindir.mkdir()
    record = tmp_path / "calls.txt"
    stub = bindir / "cryoglean"
    stub.write_text(RECORDER.format(python=sys.executable, record=record))
    stub.chmod(0o755)
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text(f"profiles:\n  cpu:\n    cryoglean: {stub}\n")
    work = tmp_path / "work dir $(touch PWNED) 'q'"
    out = tmp_path / "slurm"
    assert main(["slurm", "pipeline", name, "--profiles", str(profiles), "--profile", "cpu",
                 "-o", str(out), "--set", "db=/d/c.db", "--set", f"workdir={work}",
                 "--set", "shards=1", *sets]) == 0
    return work, out, record


def run_recorded(script, record):
    """Run one job script with bash; returns (CompletedProcess, the calls it recorded)."""
    before = len(record.read_text().splitlines()) if record.exists() else 0
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True,
                          cwd=script.parent)
    calls = record.read_text().splitlines()[before:] if record.exists() else []
    return done, calls
