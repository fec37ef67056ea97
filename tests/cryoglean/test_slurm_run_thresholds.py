"""The DynamicDet and tomogram pipelines pick at the threshold their trained run chose (its
val_metrics.json, read when the job runs), at the template value only where the run has none,
and at ``--set threshold=X`` when given: as the centernet pipeline
(test_nightly_slurm_profiles.py). The job scripts run here with a stand-in for ``cryoglean``
that records its calls and hands ``slurm value`` to the real command."""

from __future__ import annotations

import json
import shlex

import pytest
from slurm_recorder import recorded_pipeline, run_recorded

# pipeline: (step script, the run folder under workdir, the option the threshold sets, the
# pipeline value that is the default, the template's default)
CASES = {
    "dynamicdet": ("05-detect.sh", "train/exp2", "--conf-thres", "conf_thres", "0.1"),
    "tomo": ("05-pick.sh", "runs/tomo", "--out_thresh", "out_thresh", "0.2"),
}


def _option(call: str, name: str) -> str:
    words = call.split()
    return words[words.index(name) + 1]


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_job_reads_the_runs_threshold_when_it_runs(tmp_path, name):
    step, run_rel, option, _, default = CASES[name]
    work, out, record = recorded_pipeline(tmp_path, name)
    run = work / run_rel
    text = (out / step).read_text()
    assert (f"slurm value threshold {shlex.quote(str(run))} --default {default})"
            in text), text
    assert f'{option} "$THRESHOLD"' in text
    # no validation result yet: the template's value, and the log says why
    done, calls = run_recorded(out / step, record)
    assert done.returncode == 0, done.stderr
    (call,) = calls
    assert _option(call, option) == default
    assert "val_metrics.json not found" in done.stderr
    # the run's best-F1 threshold once training has written it
    run.mkdir(parents=True)
    (run / "val_metrics.json").write_text(json.dumps(
        {"summary": {"best_threshold": 0.4375, "best_f1": 0.81}}))
    done, calls = run_recorded(out / step, record)
    assert done.returncode == 0, done.stderr
    (call,) = calls
    assert _option(call, option) == "0.4375"
    assert f"threshold 0.4375 from {run}/val_metrics.json" in done.stderr
    assert not list(tmp_path.rglob("PWNED"))  # a path is never run as a command


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_pipeline_value_is_the_default_and_threshold_fixes_it(tmp_path, name):
    step, run_rel, option, key, _ = CASES[name]
    work, out, record = recorded_pipeline(tmp_path, name, "--set", f"{key}=0.05")
    assert "--default 0.05)" in (out / step).read_text()
    done, calls = run_recorded(out / step, record)
    assert done.returncode == 0 and _option(calls[0], option) == "0.05", done.stderr
    fixed = tmp_path / "fixed"
    fixed.mkdir()
    work, out, record = recorded_pipeline(fixed, name, "--set", "threshold=0.25")
    (work / run_rel).mkdir(parents=True)
    (work / run_rel / "val_metrics.json").write_text(json.dumps(
        {"summary": {"best_threshold": 0.4375}}))
    text = (out / step).read_text()
    assert "slurm value" not in text and "THRESHOLD" not in text
    done, calls = run_recorded(out / step, record)
    assert done.returncode == 0 and _option(calls[0], option) == "0.25", done.stderr


def test_dynamicdet_star_keeps_what_detect_kept_unless_told(tmp_path):
    """detect applies the threshold; the star step's own filter (PartiNet's conf > X) would
    undo a run threshold below it, so it filters only when --set conf=X asks."""
    work, out, record = recorded_pipeline(tmp_path, "dynamicdet")
    (star,) = [ln for ln in (out / "06-star.sh").read_text().splitlines() if " star " in ln]
    assert star.endswith(" --conf 0")
    again = tmp_path / "again"
    again.mkdir()
    work, out, record = recorded_pipeline(again, "dynamicdet", "--set", "conf=0.3")
    assert (out / "06-star.sh").read_text().rstrip().endswith(" --conf 0.3")
