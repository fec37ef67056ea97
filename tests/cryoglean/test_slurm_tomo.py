"""``cryoglean slurm pipeline tomo`` and its templates (train_tomo, pick_tomo, tomo_files):
the chain's dependencies, the paths one step hands the next, one GPU per job, run with
recorder stubs for sbatch and cryoglean (the real chain is tested on a local Slurm in
test_slurm_cluster.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cryoglean import slurm

STEPS = ["01-crawl", "02-export", "03-files", "04-train", "05-pick", "06-evaluate"]
RECORDER = """#!{python}
import json, os, sys
with open(os.environ["RECORD"], "a") as f:
    f.write(json.dumps([os.path.basename(sys.argv[0])] + sys.argv[1:]) + "\\n")
if os.path.basename(sys.argv[0]) == "sbatch":  # a job id per submission, as --parsable prints
    n = sum(1 for _ in open(os.environ["RECORD"]))
    print(f"{{1000 + n}};cluster")
if sys.argv[1:3] == ["slurm", "value"]:  # what the trained run holds, as the real command prints
    print("0.375")
"""


def _write(tmp_path, work, **values):
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    for name in ("sbatch", "cryoglean"):
        (bindir / name).write_text(RECORDER.format(python=sys.executable))
        (bindir / name).chmod(0o755)
    profile = slurm.validate_profile({"gpus": 4, "nodes": 2, "cryoglean": str(bindir / "cryoglean")})
    out = tmp_path / "chain"
    slurm.write_pipeline("tomo", profile, {"db": str(work / "catalog.db"), "workdir": str(work),
                                           **values}, out)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}",
           "RECORD": str(tmp_path / "record.jsonl")}
    return out, env


def _calls(tmp_path):
    return [json.loads(ln) for ln in (tmp_path / "record.jsonl").read_text().splitlines()]


def test_submit_wires_each_step_to_the_ones_it_needs(tmp_path):
    out, env = _write(tmp_path, tmp_path / "work dir", roots=["/facility"])
    assert sorted(p.stem for p in out.glob("*.sh")) == sorted([*STEPS, "submit"])
    subprocess.run(["bash", str(out / "submit.sh")], env=env, check=True, capture_output=True)
    calls = _calls(tmp_path)
    ids = {}
    deps = {}
    for i, call in enumerate(calls):
        assert call[0] == "sbatch"
        name = next(a.split("=", 1)[1] for a in call if a.startswith("--job-name="))
        ids[name] = str(1001 + i)
        dep = [a.split(":", 1)[1] for a in call if a.startswith("--dependency=afterok:")]
        deps[name] = sorted(dep[0].split(":")) if dep else []
        assert call[-1] == f"{name}.sh"
    assert list(ids) == STEPS
    assert deps == {
        "01-crawl": [], "02-export": [ids["01-crawl"]], "03-files": [ids["02-export"]],
        "04-train": [ids["02-export"]],
        "05-pick": sorted([ids["03-files"], ids["04-train"]]),
        "06-evaluate": [ids["05-pick"]],
    }
    assert (out / "jobids.txt").read_text().split() == [x for s in STEPS for x in (s, ids[s])]


def _run_steps(tmp_path, out, env, task_ids=(0,)):
    """Run each step script with the cryoglean recorder; returns {step: [argv, ...]}."""
    ran = {}
    for step in STEPS[1:]:
        before = len(_calls(tmp_path)) if (tmp_path / "record.jsonl").exists() else 0
        for task in task_ids if step == "05-pick" else (0,):
            subprocess.run(["bash", str(out / f"{step}.sh")], check=True, capture_output=True,
                           env={**env, "SLURM_ARRAY_TASK_ID": str(task)}, cwd=tmp_path)
        ran[step] = _calls(tmp_path)[before:]
    return ran


def _opt(argv, name):
    return argv[argv.index(name) + 1]


def test_each_step_reads_what_the_previous_one_writes(tmp_path):
    work = tmp_path / "work $(x) dir"
    out, env = _write(tmp_path, work, label_fraction=0.3, shards=3, bbox=24,
                      train_extra=["--compress", "--contrastive"])
    ran = _run_steps(tmp_path, out, env, task_ids=(0, 1, 2))
    (export,) = ran["02-export"]
    assert export[1] == "export" and export[-2:] == ["--", "cetpick"]
    export_dir = Path(_opt(export, "-o"))
    assert export_dir.parent == work and "--label-fraction" in export
    assert _opt(export, "--label-fraction") == "0.3"
    (files,) = ran["03-files"]
    assert files[1] == "tomo-files" and "--inference" in files
    listed = Path(_opt(files, "-d")) / f"{_opt(files, '-o')}_test_imgs.txt"  # cet_pick's name
    assert Path(_opt(files, "-d")) == export_dir / "val" / "images"
    (train,) = ran["04-train"]
    assert train[1:3] == ["train", "tomo"]
    assert Path(_opt(train, "--train_img_txt")) == export_dir / "train" / "images.txt"
    assert Path(_opt(train, "--train_coord_txt")) == export_dir / "train" / "labels" / "particles.txt"
    assert Path(_opt(train, "--val_coord_txt")) == export_dir / "val" / "labels" / "particles.txt"
    assert _opt(train, "--order") == "zxy" and _opt(train, "--bbox") == "24"
    assert _opt(train, "--gpus") == "0" and train[-2:] == ["--compress", "--contrastive"]
    run_dir = Path(_opt(train, "--output")) / _opt(train, "--exp_id")
    # each pick task first asks the trained run for its threshold (read when the job runs)
    lookups, picks = ran["05-pick"][0::2], ran["05-pick"][1::2]
    assert lookups == [["cryoglean", "slurm", "value", "threshold", str(run_dir), "--default",
                        "0.2"]] * 3
    assert [_opt(p, "--out_thresh") for p in picks] == ["0.375"] * 3
    assert [_opt(p, "--shard") for p in picks] == ["0/3", "1/3", "2/3"]
    for p in picks:
        assert p[1:3] == ["pick", "tomo"] and Path(_opt(p, "--test_img_txt")) == listed
        assert Path(_opt(p, "--load_model")).parent.parent == run_dir
        assert _opt(p, "--gpus") == "0"
    (evaluate,) = ran["06-evaluate"]
    fmt = _opt(picks[0], "--output_type")
    assert Path(_opt(evaluate, "--picks")) == Path(_opt(picks[0], "--output")) / fmt
    assert _opt(evaluate, "--picks-format") == fmt
    assert _opt(evaluate, "--truth-format") == "cetpick"
    assert Path(_opt(evaluate, "--truth")) == export_dir / "val" / "labels"
    assert _opt(evaluate, "--diameter") == "24" and _opt(evaluate, "--radius-frac") == "0.5"


def test_one_gpu_on_one_node_per_job(tmp_path):
    out, _ = _write(tmp_path, tmp_path / "w")
    for step in ("04-train", "05-pick"):
        text = (out / f"{step}.sh").read_text()
        assert "#SBATCH --gres=gpu:1" in text and "#SBATCH --nodes=1" in text
        assert "--ntasks-per-node" not in text and "srun" not in text
    assert "#SBATCH --array=0-3" in (out / "05-pick.sh").read_text()  # shards default 4
    assert "--gres" not in (out / "03-files.sh").read_text()
    cpu = slurm.render("train_tomo", slurm.validate_profile({"gpus": 0}),
                       {"train_img_txt": "a", "train_coord_txt": "b", "exp_id": "e",
                        "output": "o"})
    assert "--gpus -1" in cpu and "--gres" not in cpu and "--val_img_txt" not in cpu


def test_values_are_checked(tmp_path):
    with pytest.raises(slurm.SlurmConfigError, match="needs --set db=.*workdir="):
        slurm.write_pipeline("tomo", slurm.get_profile("cpu"), {}, tmp_path / "x")
    with pytest.raises(slurm.SlurmConfigError, match="starts with '-'"):
        slurm.write_pipeline("tomo", slurm.get_profile("cpu"),
                             {"db": "c.db", "workdir": "w", "exp_id": "--help"}, tmp_path / "y")
    with pytest.raises(slurm.SlurmConfigError, match="shards"):
        slurm.write_pipeline("tomo", slurm.get_profile("cpu"),
                             {"db": "c.db", "workdir": "w", "shards": 0}, tmp_path / "z")
    with pytest.raises(slurm.SlurmConfigError, match="did you mean 'tomo'"):
        slurm.pipeline_steps("tomoo", {})
    assert re.search(r"tomo\s+\[crawl", subprocess.run(
        [sys.executable, "-m", "cryoglean.cli", "slurm", "pipeline", "--help"],
        capture_output=True, text=True, check=True).stdout)
