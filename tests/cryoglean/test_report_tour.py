"""README's tour runs as written: every command of its code block, in order, in an empty
folder, with a `cryoglean` on PATH that is this checkout's CLI (as after
`source .venv/bin/activate`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def tour_commands() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## A short tour of the CLI"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    joined = block.replace("\\\n", " ")
    return [ln.strip() for ln in joined.splitlines() if ln.strip()]


def test_the_tour_is_there_and_uses_the_environment_default():
    cmds = tour_commands()
    assert cmds[0].startswith("cryoglean demo-data") and len(cmds) >= 12
    assert any(c.startswith("export CRYOGLEAN_DB=") for c in cmds)
    readme = README.read_text(encoding="utf-8")
    assert "source .venv/bin/activate" in readme


@pytest.mark.slow
def test_every_tour_command_runs_as_written(tmp_path):
    pytest.importorskip("pytorch_lightning")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    shim = bindir / "cryoglean"
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m cryoglean.cli "$@"\n')
    shim.chmod(0o755)
    work = tmp_path / "tour"
    work.mkdir()
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    env.pop("CRYOGLEAN_DB", None)
    script = "set -e\n" + "\n".join(
        f"echo '+ {i}'\n{c}" for i, c in enumerate(tour_commands())) + "\n"
    res = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True,
                         text=True, timeout=900)
    last = re.findall(r"^\+ (\d+)$", res.stdout, re.M)
    failed = tour_commands()[int(last[-1])] if last else "?"
    assert res.returncode == 0, f"`{failed}` failed:\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    for made in ("catalog.db", "ds/manifest.json", "runs/run1/weights/best.ckpt",
                 "site/index.html", "site/runs.html", "slurm/submit.sh"):
        assert (work / made).exists(), made
    assert list((work / "picks").glob("*.png"))
