"""Progress off a terminal: plain lines (percentage, rate, ETA) under Slurm or make, and no
Lightning tips in normal output."""

from __future__ import annotations

import io
import re
import subprocess
import sys

import pytest

from harvest.progress import Progress, line, progress

LINE = re.compile(r"^(\w[\w ./-]*): (\d+)/(\d+) (\w+) \((\d+)%\), [\d.e+]+ \w+/s, ETA [\d:?]+$")


def test_lines_when_not_a_terminal():
    out = io.StringIO()
    with Progress(4, "crawl", "projects", stream=out, interval=0) as bar:
        for _ in range(4):
            bar.update(1)
    lines = out.getvalue().splitlines()
    assert lines, "no progress line"
    for text in lines:
        assert LINE.match(text), text
    assert lines[-1].startswith("crawl: 4/4 projects (100%)")
    # a line every interval only: a long interval gives just the final line
    out = io.StringIO()
    with Progress(50, "x", "it", stream=out, interval=3600) as bar:
        bar.update(50)
    assert len(out.getvalue().splitlines()) == 1


def test_disabled_shows_nothing_and_iterates():
    out = io.StringIO()
    bar = Progress(3, "x", stream=out, enabled=False, interval=0)
    bar.update(3)
    bar.close()
    assert out.getvalue() == ""
    assert list(progress([1, 2, 3], desc="d", enabled=False)) == [1, 2, 3]


def test_line_format():
    assert line("pick", 5, 10, "micrographs", 2.0) == \
        "pick: 5/10 micrographs (50%), 2.5 micrographs/s, ETA 0:00:02"
    assert line("scan", 5, None, "files", 0.0).startswith("scan: 5 files")


def test_training_logs_progress_lines_and_no_lightning_tips(tmp_path):
    """A training run whose stderr is a file (as under Slurm) writes progress lines while it
    runs; Lightning's tip and device banner are not in the output, and are with -v."""
    pytest.importorskip("pytorch_lightning")
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parents[1] / "trainers"))
    from test_trainers_helpers import write_dataset

    img, lab, _ = write_dataset(tmp_path / "d", n_mics=3, n=128, count=4, radius=6,
                                mode="particle")
    args = ["train", "centernet", "--data", str(img), "--label", str(lab), "--label_type", "thi",
            "--mode", "particle", "--exp_id", "r", "--output", str(tmp_path / "runs"),
            "--width", "4", "--head_conv", "8", "--input_width", "128", "--crop", "64",
            "--particle_size", "16", "--batch_size", "1", "--num_epoch", "2", "--edge", "2",
            "--lr", "1e-3"]
    env = {**__import__("os").environ, "CRYOGLEAN_PROGRESS_SECONDS": "0",
           "OMP_NUM_THREADS": "1"}
    err = tmp_path / "slurm.out"
    with open(err, "w") as fh:
        res = subprocess.run([sys.executable, "-m", "cryoglean.cli", *args], stdout=subprocess.PIPE,
                             stderr=fh, text=True, env=env, timeout=600)
    text = err.read_text()
    assert res.returncode == 0, text
    lines = [t for t in text.splitlines() if t.startswith("train epoch")]
    assert len(lines) >= 2, text
    assert re.search(r"\(\d+%\), [\d.e+]+ batches/s, ETA", lines[0]), lines[0]
    assert "100%" in lines[-1]
    for noise in ("Tip:", "GPU available", "TPU available", "LOCAL_RANK", "Warning"):
        assert noise not in text, f"{noise!r} in normal output:\n{text}"
    with open(err, "w") as fh:
        res = subprocess.run([sys.executable, "-m", "cryoglean.cli", "-v", *args,
                              "--exp_id", "r2", "--quiet"],
                             stdout=subprocess.PIPE, stderr=fh, text=True, env=env, timeout=600)
    assert res.returncode == 0
    assert "GPU available" in err.read_text()


def test_denoise_writes_plain_lines_off_a_terminal(tmp_path):
    """``cryoglean denoise`` with stderr in a file (a Slurm output file) prints the project's
    plain progress lines, not a tqdm bar (carriage returns)."""
    import mrcfile
    import numpy as np

    src = tmp_path / "raw"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        mrcfile.write(src / f"mic_{i}.mrc", rng.normal(size=(32, 32)).astype(np.float32),
                      voxel_size=1.5)
    env = {**__import__("os").environ, "CRYOGLEAN_PROGRESS_SECONDS": "0"}
    err = tmp_path / "slurm.out"
    with open(err, "w") as fh:
        res = subprocess.run([sys.executable, "-m", "cryoglean.cli", "denoise", "--source",
                              str(src), "--project", str(tmp_path / "p"), "--num_workers", "1"],
                             stdout=subprocess.PIPE, stderr=fh, text=True, env=env, timeout=300)
    text = err.read_text()
    assert res.returncode == 0, text
    assert "\r" not in text
    lines = [t for t in text.splitlines() if t.startswith("denoise:")]
    assert lines, text
    for t in lines:
        assert LINE.match(t), t
    assert lines[-1].startswith("denoise: 3/3 micrographs (100%)")
