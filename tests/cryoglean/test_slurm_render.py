"""Slurm templates: golden renderings, script structure, clear errors, and shell safety."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from slurm_values import values_for

from cryoglean import slurm
from cryoglean.cli import cli

GOLDEN = Path(__file__).parents[1] / "golden" / "slurm"
PROFILES = GOLDEN / "profiles.yaml"
TEMPLATES = sorted(slurm.list_templates())
SCRIPTS = [t for t in TEMPLATES if slurm.list_templates()[t].is_script]


def golden_values(template: str) -> dict:
    return values_for(template, lambda name: f"/data/project/{name}")


@pytest.mark.parametrize("template", TEMPLATES)
def test_golden_rendering(template):
    """Each template's rendering for the reference profile is pinned (review diffs by eye;
    regenerate with CRYOGLEAN_UPDATE_GOLDEN=1)."""
    text = slurm.render(template, slurm.get_profile("reference", PROFILES), golden_values(template))
    golden = GOLDEN / f"{template}.golden"
    if os.environ.get("CRYOGLEAN_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert golden.exists(), f"{golden} missing: run once with CRYOGLEAN_UPDATE_GOLDEN=1 and review it"
    assert text == golden.read_text()


def test_no_stale_golden_files():
    goldens = {p.name[: -len(".golden")] for p in GOLDEN.glob("*.golden")}
    assert goldens == set(TEMPLATES)


@pytest.mark.parametrize("template", SCRIPTS)
@pytest.mark.parametrize("profile", ["reference", "cpu"])
def test_script_structure(template, profile):
    text = slurm.render(template, slurm.get_profile(profile, PROFILES), golden_values(template))
    lines = text.splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    body = [ln for ln in lines[1:] if ln.strip() and not ln.startswith("#")]
    assert body[0] == "set -euo pipefail", "set -euo pipefail must come before any command"
    # every #SBATCH line sits before the first command (sbatch ignores later ones)
    first_cmd = lines.index(body[0])
    assert all(i < first_cmd for i, ln in enumerate(lines) if ln.startswith("#SBATCH"))
    subprocess.run(["bash", "-n"], input=text, text=True, check=True)
    info = slurm.list_templates()[template]
    prof = slurm.get_profile(profile, PROFILES)
    gpu_line = [ln for ln in lines if ln.startswith(("#SBATCH --gres=gpu", "#SBATCH --gpus="))]
    assert bool(gpu_line) == (info.gpu and prof["gpus"] > 0)
    if info.ddp and prof["gpus"] > 1:
        assert f"#SBATCH --ntasks-per-node={prof['gpus']}" in lines
        assert any(ln.startswith("srun ") for ln in lines)
    if info.array:
        assert any(ln.startswith("#SBATCH --array=0-") for ln in lines)


def test_multi_gpu_training_runs_ddp_through_srun():
    text = slurm.render("train_centernet", slurm.get_profile("reference", PROFILES),
                        golden_values("train_centernet"))
    cmd = [ln for ln in text.splitlines() if "train centernet" in ln][0]
    assert cmd.startswith("srun cryoglean train centernet")
    assert cmd.endswith("--gpus 0,1")


def test_errors_are_one_clear_line(tmp_path):
    prof = slurm.get_profile("cpu", PROFILES)
    with pytest.raises(slurm.SlurmConfigError, match=r"needs --set data=\.\.\."):
        slurm.render("train_centernet", prof, {"label": "l", "exp_id": "e", "output": "o"})
    with pytest.raises(slurm.SlurmConfigError, match="did you mean 'data'"):
        slurm.render("train_centernet", prof, {"dta": "x"})
    with pytest.raises(slurm.SlurmConfigError, match="did you mean 'train_centernet'"):
        slurm.render("train_centernt", prof, {})
    bad = tmp_path / "p.yaml"
    bad.write_text("profiles:\n  x:\n    partitoin: gpu\n")
    with pytest.raises(slurm.SlurmConfigError, match="unknown key 'partitoin'; did you mean 'partition'"):
        slurm.load_profiles(bad)
    for key, value in [("time", "'tomorrow'"), ("mem", "lots"), ("gpus", "-1"),
                       ("partition", "'gpu; rm -rf /'"), ("sbatch_extra", "['--x=$(id)']"),
                       ("gpu_request", "card")]:
        bad.write_text(f"profiles:\n  x:\n    {key}: {value}\n")
        with pytest.raises(slurm.SlurmConfigError, match=key):
            slurm.load_profiles(bad)
    with pytest.raises(slurm.SlurmConfigError, match="no profile 'refrence'.*did you mean 'reference'"):
        slurm.get_profile("refrence", PROFILES)
    with pytest.raises(slurm.SlurmConfigError, match="container_image"):
        slurm.render("partinet_denoise", slurm.validate_profile({}), golden_values("partinet_denoise"))


def test_cli_render_and_error_exit(tmp_path):
    runner = CliRunner()
    out = tmp_path / "train.sh"
    args = ["slurm", "render", "train_centernet", "--profiles", str(PROFILES), "--profile", "cpu",
            "-o", str(out)]
    for k, v in golden_values("train_centernet").items():
        args += ["--set", f"{k}={v}"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("#!/usr/bin/env bash")
    assert os.access(out, os.X_OK)
    again = runner.invoke(cli, args)
    assert again.exit_code != 0 and "--force" in again.output
    missing = runner.invoke(cli, ["slurm", "render", "evaluate", "--profile", "cpu",
                                  "--profiles", str(PROFILES)])
    assert missing.exit_code != 0
    assert "needs --set picks=..." in missing.output
    assert "Traceback" not in missing.output


def test_pipeline_writes_chain_with_dependencies(tmp_path):
    paths = slurm.write_pipeline(
        "centernet", slurm.get_profile("cpu", PROFILES),
        {"db": "/d/catalog.db", "workdir": "/d/work", "roots": ["/facility"]}, tmp_path / "chain")
    names = [p.name for p in paths]
    assert names == ["01-crawl.sh", "02-export.sh", "03-train.sh", "04-pick.sh",
                     "05-evaluate.sh", "submit.sh"]
    submit = (tmp_path / "chain" / "submit.sh").read_text()
    assert "--dependency=afterok:${JOB_03_train}" in submit
    assert "--dependency=afterok:${JOB_01_crawl}" in submit
    subprocess.run(["bash", "-n", str(tmp_path / "chain" / "submit.sh")], check=True)
    with pytest.raises(FileExistsError):
        slurm.write_pipeline("centernet", slurm.get_profile("cpu", PROFILES),
                             {"db": "x", "workdir": "y"}, tmp_path / "chain")


# --------------------------------------------------------------------------------------------
# Safety: paths with spaces, quotes, $(...), backticks and newlines reach commands literally.
# --------------------------------------------------------------------------------------------

NASTY = "a b 'sq' \"dq\" $(touch PWNED1) `touch PWNED2`; touch PWNED3 & x\ny | *"
STUB = """#!{python}
import json, os, sys
with open(os.environ["RECORD"], "a") as f:
    f.write(json.dumps([os.path.basename(sys.argv[0])] + sys.argv[1:] + ["ENV=" + os.environ.get("NASTY_ENV", "")]) + "\\n")
"""
STUB_NAMES = ["cryoglean", "srun", "cryolo_train.py", "cryolo_predict.py", "topaz",
              "epicker_train.sh", "epicker.sh", "apptainer"]


@pytest.mark.parametrize("gpus", [0, 2])
def test_every_template_quotes_hostile_paths(tmp_path, gpus):
    base = tmp_path / NASTY
    bindir = base / "bin"
    bindir.mkdir(parents=True)
    for name in STUB_NAMES:
        stub = bindir / name
        stub.write_text(STUB.format(python=sys.executable))
        stub.chmod(0o755)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    profile = slurm.validate_profile({
        "gpus": gpus, "cryoglean": str(bindir / "cryoglean"), "env": {"NASTY_ENV": NASTY},
        "container_image": str(base / "image.sif"), "binds": [str(base)],
    })

    def path(name):
        return str(base / name)

    # Topaz expands *.mrc inside the given folder: give it a file to find.
    for folder in ("mics", "processed"):
        (base / folder).mkdir(exist_ok=True)
        (base / folder / "m1.mrc").write_text("")
    for template in TEMPLATES:
        values = values_for(template, path)
        if not slurm.list_templates()[template].is_script:
            # a crontab line cannot carry a newline: refused, then checked without one
            with pytest.raises(slurm.SlurmConfigError, match="newline"):
                slurm.render(template, profile, values)
            values = values_for(template, lambda name: path(name).replace("\n", " "))
            profile_cron = {**profile, "cryoglean": str(bindir / "cryoglean")}
            if "\n" in profile_cron["cryoglean"]:
                cron_bin = tmp_path / "cron bin $(touch PWNED4)"
                cron_bin.mkdir()
                (cron_bin / "cryoglean").write_text(STUB.format(python=sys.executable))
                (cron_bin / "cryoglean").chmod(0o755)
                profile_cron["cryoglean"] = str(cron_bin / "cryoglean")
            text = slurm.render(template, profile_cron, values)
        else:
            text = slurm.render(template, profile, values)
        record = tmp_path / f"{template}.jsonl"
        env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "RECORD": str(record)}
        env.pop("NASTY_ENV", None)
        if slurm.list_templates()[template].is_script:
            subprocess.run(["bash", "-c", text], cwd=cwd, env=env, check=True,
                           capture_output=True, text=True)
        else:  # scrontab: run the command part of the cron line as cron would (sh -c)
            line = [ln for ln in text.splitlines() if ln and not ln.startswith("#")][0]
            command = line.split(None, 5)[5]
            subprocess.run(["bash", "-c", command], cwd=cwd, env=env, check=True)
        calls = [json.loads(ln) for ln in record.read_text().splitlines()]
        assert calls, f"{template}: no command ran"
        args = {a for call in calls for a in call}
        for key, given in values.items():
            for value in (given if isinstance(given, list) else [given]):
                if not str(value).startswith(str(base)):
                    continue
                # Topaz's templates expand INPUT/*.mrc: the file found must arrive literally
                globbed = template.startswith("topaz_") and key == "input"
                expected = f"{value}/m1.mrc" if globbed else str(value)
                assert expected in args, f"{template}: {key} {expected!r} not passed literally"
        if template.startswith(("partinet", "train", "pick", "export", "denoise", "crawl", "evaluate")) \
                and slurm.list_templates()[template].is_script:
            assert all(call[-1] == "ENV=" + NASTY for call in calls), template
    pwned = [p for p in tmp_path.rglob("PWNED*")] + list(Path.cwd().glob("PWNED*"))
    assert not pwned, f"a value was executed: {pwned}"


def test_gpu_ids_reach_commands():
    prof = slurm.validate_profile({"gpus": 2})
    text = slurm.render("cryolo_train", prof, {"config": "/c.json"})
    assert re.search(r"-g 0 1 -e", text)
    text = slurm.render("pick_centernet", slurm.validate_profile({"gpus": 0}),
                        {"data": "d", "model": "m", "output": "o"})
    assert "--gpus -1" in text
