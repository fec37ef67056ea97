"""Slurm side of DynamicDet: train_dynamicdet (step 1 -> step 2 in one job, or one step),
detect_dynamicdet (array, one GPU per task), star, and `slurm pipeline dynamicdet`; the chain's
wiring runs on the real local Slurm with the recording stub here in place of cryoglean
(tests/cryoglean/test_slurm_cluster.py, which owns the cluster)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from cryoglean import slurm

PROFILES = Path(__file__).parents[1] / "golden" / "slurm" / "profiles.yaml"


def _render(template, profile="reference", **values):
    return slurm.render(template, slurm.get_profile(profile, PROFILES), values)


def _commands(text, word):
    return [ln for ln in text.splitlines() if word in ln and not ln.startswith("#")]


def test_train_chains_step2_on_step1_weights_through_srun():
    text = _render("train_dynamicdet", data="/d/cryo_training.yaml", project="/d/train",
                   weight="/d/public.pt")
    step1, step2 = _commands(text, "train dynamicdet")
    assert step1.startswith("srun cryoglean train dynamicdet step1 --data /d/cryo_training.yaml "
                            "--project /d/train --weight /d/public.pt --epochs 300 --batch 16 "
                            "--img-size 1280")
    assert step1.endswith("--device 0,1")
    assert step2.startswith("srun cryoglean train dynamicdet step2 ")
    assert "--weight /d/train/exp/weights/last.pt --epochs 10" in step2
    lines = text.splitlines()
    assert lines.index(step1) < lines.index(step2)
    checks = [ln for ln in lines if ln.startswith("if [ -e ")]
    assert [c.split()[3] for c in checks] == ["/d/train/exp", "/d/train/exp2"]


def test_train_single_steps_and_cpu():
    text = _render("train_dynamicdet", "cpu", data="/d/y.yaml", project="/d/t", step="step1")
    (cmd,) = _commands(text, "train dynamicdet")
    assert cmd.startswith("cryoglean train dynamicdet step1") and cmd.endswith("--device cpu")
    assert "--weight" not in cmd
    text = _render("train_dynamicdet", "cpu", data="/d/y.yaml", project="/d/t", step="step2",
                   weight="/elsewhere/exp/weights/last.pt", epochs2=20, extra2=["--cfg", "x"])
    (cmd,) = _commands(text, "train dynamicdet")
    assert "step2" in cmd and "--weight /elsewhere/exp/weights/last.pt --epochs 20" in cmd
    assert cmd.endswith("--device cpu --cfg x")
    assert "if [ -e" not in text  # a given step-1 checkpoint: no numbering assumed
    with pytest.raises(slurm.SlurmConfigError, match="step must be both, step1 or step2"):
        _render("train_dynamicdet", data="/d", project="/p", step="step3")


def _stub(bindir: Path, record: Path) -> None:
    bindir.mkdir(parents=True, exist_ok=True)
    stub = bindir / "cryoglean"
    stub.write_text(STUB.replace("RECORD", str(record)))
    stub.chmod(0o755)


# Records its call; `train dynamicdet` makes PartiNet's next run folder (exp, exp2, ...) with
# weights/last.pt on task 0, and fails (exit 3) when its --weight is not there yet.
STUB = r"""#!/usr/bin/env bash
echo "task=${SLURM_PROCID:-0} array=${SLURM_ARRAY_TASK_ID:-none} cvd=${CUDA_VISIBLE_DEVICES:-none} args=$*" >> "RECORD"
project=; weight=
args=("$@")
for ((i = 0; i < $#; i++)); do
  case "${args[i]}" in --project) project=${args[i+1]} ;; --weight) weight=${args[i+1]} ;; esac
done
if [ -n "$weight" ] && [ ! -e "$weight" ] && [ "$1" != "train" -o "$3" = "step2" ]; then
  echo "weight $weight missing" >&2; exit 3
fi
if [ "$1" = "train" ] && [ "${SLURM_PROCID:-0}" = 0 ]; then
  run="$project/exp"; n=2
  while [ -e "$run" ]; do run="$project/exp$n"; n=$((n + 1)); done
  mkdir -p "$run/weights" && : > "$run/weights/last.pt"
fi
"""


def test_train_script_refuses_a_used_run_folder(tmp_path):
    record = tmp_path / "calls.txt"
    _stub(tmp_path / "bin", record)
    project = tmp_path / "run's $(x) dir"
    text = _render("train_dynamicdet", "cpu", data=str(tmp_path / "y.yaml"),
                   project=str(project))
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-c", text], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    calls = record.read_text().splitlines()
    assert [c.split("args=")[1].split()[2] for c in calls] == ["step1", "step2"]
    assert f"--weight {project}/exp/weights/last.pt" in calls[1]
    assert (project / "exp2" / "weights" / "last.pt").exists()
    again = subprocess.run(["bash", "-c", text], env=env, capture_output=True, text=True)
    assert again.returncode == 1 and f"{project}/exp exists" in again.stderr
    assert len(record.read_text().splitlines()) == 2  # nothing ran


def test_detect_asks_one_gpu_per_array_task():
    text = _render("detect_dynamicdet", weight="/w/last.pt", source="/d/images",
                   project="/d/detect", shards=8, easy_fraction=0.9)
    assert "#SBATCH --gres=gpu:a100:1" in text.splitlines()  # the profile has 2
    assert "#SBATCH --array=0-7%4" in text.splitlines()
    assert not any(ln.startswith(("srun", "#SBATCH --ntasks")) for ln in text.splitlines())
    (cmd,) = _commands(text, " detect ")
    assert cmd == ("cryoglean detect --weight /w/last.pt --source /d/images --project /d/detect "
                   "--conf-thres 0.1 --iou-thres 0.2 --easy-fraction 0.9 "
                   '--device 0 --shard "${SLURM_ARRAY_TASK_ID:-0}/8"')
    cpu = _render("detect_dynamicdet", "cpu", weight="/w", source="/s", project="/p",
                  dy_thres=0.4, batch=16)
    assert "--dy-thres 0.4 --batch 16 --device cpu" in cpu
    assert not any(ln.startswith(("#SBATCH --gres", "#SBATCH --gpus")) for ln in cpu.splitlines())
    with pytest.raises(slurm.SlurmConfigError, match="not both"):
        _render("detect_dynamicdet", weight="/w", source="/s", project="/p", dy_thres=0.5,
                easy_fraction=0.9)


def test_star_template_passes_relion_options_only_when_asked():
    (cmd,) = _commands(_render("star", labels="/p/exp/labels", images="/i", output="/o.star"),
                       " star ")
    assert cmd == "cryoglean star --labels /p/exp/labels --images /i --output /o.star --conf 0.1"
    text = _render("star", labels="/l", images="/i", output="/o.star", relion_project_dir="/r",
                   mrc_prefix="MotionCorr/job003/movies")
    assert text.rstrip().endswith(
        "--relion --relion-project-dir /r --mrc-prefix MotionCorr/job003/movies")
    with pytest.raises(slurm.SlurmConfigError, match="starts with '-'"):
        _render("star", labels="--help", images="/i", output="/o.star")


def _pipeline(tmp_path, profile, **extra):
    values = {"db": str(tmp_path / "catalog.db"), "workdir": str(tmp_path / "work"),
              "shards": 2, **extra}
    out = tmp_path / "chain"
    paths = slurm.write_pipeline("dynamicdet", profile, values, out)
    return out, paths


def test_pipeline_wires_every_step_to_the_previous_ones_files(tmp_path):
    out, paths = _pipeline(tmp_path, slurm.get_profile("cpu", PROFILES), roots=["/facility"],
                           weight="/w/public.pt", easy_fraction=0.9)
    assert [p.name for p in paths] == ["01-crawl.sh", "02-export.sh", "03-train-step1.sh",
                                       "04-train-step2.sh", "05-detect.sh", "06-star.sh",
                                       "07-evaluate.sh", "submit.sh"]
    submit = (out / "submit.sh").read_text()
    for step, after in [("02-export", "01_crawl"), ("03-train-step1", "02_export"),
                        ("04-train-step2", "03_train_step1"), ("05-detect", "04_train_step2"),
                        ("06-star", "05_detect"), ("07-evaluate", "06_star")]:
        assert f"--dependency=afterok:${{JOB_{after}}} --output=logs/%x-%j.out " \
               f"--job-name={step} {step}.sh" in submit
    w = tmp_path / "work"
    text = {p.stem: p.read_text() for p in paths}
    assert text["02-export"].rstrip().endswith("-- yolo")
    (s1,) = _commands(text["03-train-step1"], "train dynamicdet")
    assert f"step1 --data {w}/export-yolo/cryo_training.yaml --project {w}/train " \
           "--weight /w/public.pt" in s1
    (s2,) = _commands(text["04-train-step2"], "train dynamicdet")
    assert f"--weight {w}/train/exp/weights/last.pt" in s2
    (det,) = _commands(text["05-detect"], " detect ")
    assert f"--weight {w}/train/exp2/weights/last.pt --source {w}/export-yolo/images/val " \
           f"--project {w}/detect" in det and "--easy-fraction 0.9" in det
    assert "--img-size 1280" in det  # the size training used
    (star,) = _commands(text["06-star"], " star ")
    assert f"--labels {w}/detect/exp/labels --images {w}/export-yolo/images/val " \
           f"--output {w}/picks.star" in star
    (ev,) = _commands(text["07-evaluate"], " evaluate ")
    assert f"--picks {w}/picks.star --truth {w}/export-yolo/labels/val --picks-format star " \
           "--truth-format yolo" in ev
    for p in paths:
        subprocess.run(["bash", "-n", str(p)], check=True)
    with pytest.raises(slurm.SlurmConfigError, match="needs --set workdir"):
        slurm.pipeline_steps("dynamicdet", {"db": "x"})
