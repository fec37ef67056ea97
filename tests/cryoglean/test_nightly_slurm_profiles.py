"""A Slurm pipeline with a profile per step: CPU steps (crawl, export, evaluate) do not land
on GPU nodes."""

from __future__ import annotations

import shlex

from slurm_recorder import recorded_pipeline, run_recorded

from cryoglean.cli import main


def _sbatch(path):
    return [ln for ln in path.read_text().splitlines() if ln.startswith("#SBATCH")]


def test_profile_for_steps(tmp_path, capsys):
    out = tmp_path / "slurm"
    code = main(["slurm", "pipeline", "centernet", "--profile", "example",
                 "--profile-for", "crawl=cpu", "--profile-for", "export=cpu",
                 "--profile-for", "evaluate=cpu", "-o", str(out), "--set", "db=/d/c.db",
                 "--set", f"workdir={tmp_path}", "--set", "roots=/facility"])
    assert code == 0, capsys.readouterr().err
    scripts = {p.stem.split("-", 1)[1]: p for p in out.glob("0*.sh")}
    assert set(scripts) == {"crawl", "export", "train", "pick", "evaluate"}
    for step in ("crawl", "export", "evaluate"):
        lines = _sbatch(scripts[step])
        assert not any("gpu" in ln for ln in lines), (step, lines)
        assert not any("--partition=gpu" in ln for ln in lines), (step, lines)
    for step in ("train", "pick"):
        assert any("gpu" in ln for ln in _sbatch(scripts[step])), step


def test_profile_for_an_unknown_step_is_one_clear_error(tmp_path, capsys):
    code = main(["slurm", "pipeline", "centernet", "--profile", "example", "--profile-for",
                 "trian=cpu", "-o", str(tmp_path / "s"), "--set", "db=/d/c.db", "--set",
                 f"workdir={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 1 and "no step 'trian'" in err and "train" in err



def test_pick_tasks_ask_for_one_gpu(tmp_path):
    from cryoglean import slurm

    profile = slurm.validate_profile({"gpus": 4, "gpu_request": "gres"})
    text = slurm.render("pick_centernet", profile,
                        {"data": "/d", "model": "/m.ckpt", "output": "/o", "shards": 3})
    assert "#SBATCH --gres=gpu:1" in text and "gpu:4" not in text
    assert "--gpus 0" in text
    train = slurm.render("train_centernet", profile, {"data": "/d", "label": "/l",
                                                      "exp_id": "r", "output": "/o"})
    assert "#SBATCH --gres=gpu:4" in train


# --------------------------------------------------------------------------------------------
# The pick threshold and the evaluation diameter come from the trained run and the export.
# --------------------------------------------------------------------------------------------


def _write_run_and_export(work, threshold=0.4375, diameters=(30.0, 34.0, 50.0)):
    import json

    run = work / "runs" / "centernet"
    run.mkdir(parents=True)
    (run / "val_metrics.json").write_text(json.dumps(
        {"summary": {"best_threshold": threshold, "best_f1": 0.81}}))
    export = work / "export-thi"
    export.mkdir(parents=True)
    (export / "manifest.json").write_text(json.dumps({"format": "thi", "micrographs": [
        {"stem": f"m{i}", "split": "val" if i else "train", "diameter_px": d}
        for i, d in enumerate(diameters)]}))
    return run, export


def test_pipeline_jobs_read_threshold_and_diameter_when_they_run(tmp_path):
    work, out, record = recorded_pipeline(tmp_path, "centernet")
    pick, evaluate = (out / "04-pick.sh").read_text(), (out / "05-evaluate.sh").read_text()
    # the scripts ask the run and the export; no fixed number decides
    assert f"slurm value threshold {shlex.quote(str(work / 'runs' / 'centernet'))}" in pick
    assert '--vis_thresh "$THRESHOLD"' in pick
    assert f"slurm value diameter {shlex.quote(str(work / 'export-thi'))}" in evaluate
    assert '--diameter "$DIAMETER"' in evaluate
    _write_run_and_export(work)
    done, calls = run_recorded(out / "04-pick.sh", record)
    assert done.returncode == 0, done.stderr
    (call,) = calls
    assert " --vis_thresh 0.4375 " in call
    assert f"threshold 0.4375 from {work}/runs/centernet/val_metrics.json" in done.stderr
    done, calls = run_recorded(out / "05-evaluate.sh", record)
    assert done.returncode == 0, done.stderr
    (call,) = calls
    assert " --diameter 34.0 " in call  # the manifest's median, as `evaluate --truth EXPORT`
    assert "diameter 34.0 from" in done.stderr
    assert not list(tmp_path.rglob("PWNED"))  # a path is never run as a command


def test_a_run_without_validation_picks_at_the_default_and_says_so(tmp_path):
    work, out, record = recorded_pipeline(tmp_path, "centernet")
    done, calls = run_recorded(out / "04-pick.sh", record)
    assert done.returncode == 0, done.stderr
    assert " --vis_thresh 0.3 " in calls[0]
    assert "val_metrics.json not found" in done.stderr
    # the evaluation diameter has no default: without a manifest the job fails, in one line
    done, calls = run_recorded(out / "05-evaluate.sh", record)
    assert done.returncode != 0 and not calls
    assert "no manifest" in done.stderr and "Traceback" not in done.stderr


def test_given_threshold_and_diameter_are_used_as_given(tmp_path):
    work, out, record = recorded_pipeline(tmp_path, "centernet", "--set", "threshold=0.25", "--set",
                                            "diameter=44")
    pick, evaluate = (out / "04-pick.sh").read_text(), (out / "05-evaluate.sh").read_text()
    assert "slurm value" not in pick + evaluate
    assert "--vis_thresh 0.25 " in pick and "--diameter 44 " in evaluate


def test_dynamicdet_evaluates_with_the_manifest_diameter(tmp_path):
    out = tmp_path / "s"
    assert main(["slurm", "pipeline", "dynamicdet", "--profile", "cpu", "-o", str(out), "--set",
                 "db=/d/c.db", "--set", f"workdir={tmp_path}"]) == 0
    text = (out / "07-evaluate.sh").read_text()
    assert f"slurm value diameter {tmp_path}/export-yolo" in text
    assert '--diameter "$DIAMETER"' in text


def test_value_command_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "val_metrics.json").write_text('{"summary": {"best_threshold": null}}')
    assert main(["slurm", "value", "threshold", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no best threshold" in err
    assert main(["slurm", "value", "threshold", str(tmp_path / "run"), "--default", "0.2"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "0.2" and "the default" in captured.err
