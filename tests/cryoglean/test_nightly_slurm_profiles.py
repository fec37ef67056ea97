"""A Slurm pipeline with a profile per step: CPU steps (crawl, export, evaluate) do not land
on GPU nodes."""

from __future__ import annotations

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
