"""Rendered Slurm scripts on a real single-node Slurm (scripts/local-slurm.sh).

The cluster is started once for the session (on free ports, with 2 fake GPUs backed by
/dev/null) and stopped at the end by the PIDs the script recorded. All tests here run in one
xdist worker (group "slurm"). They skip only when Slurm cannot be installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from slurm_values import values_for

from cryoglean import slurm

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "local-slurm.sh"
pytestmark = [pytest.mark.xdist_group("slurm"), pytest.mark.slurm]


@dataclass
class Cluster:
    root: Path
    env: dict

    def run(self, *args, check=True, **kw):
        return subprocess.run(list(args), env=self.env, capture_output=True, text=True,
                              check=check, **kw)

    def submit(self, script: Path, *opts: str) -> str:
        out = self.run("sbatch", "--parsable", *opts, str(script), cwd=script.parent)
        return out.stdout.strip().split(";")[0]

    def wait(self, job_ids, timeout=300.0) -> dict[str, str]:
        """Wait until the jobs have left the queue; return their final states."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            q = self.run("squeue", "-h", "-o", "%i", "-j", ",".join(job_ids), check=False)
            if not q.stdout.strip():
                break
            time.sleep(0.5)
        else:
            raise TimeoutError(f"jobs {job_ids} still queued after {timeout} s")
        return {j: self.state(j) for j in job_ids}

    def state(self, job_id: str) -> str:
        out = self.run("scontrol", "show", "job", "-o", job_id, check=False).stdout
        states = [tok.split("=", 1)[1] for line in out.splitlines()
                  for tok in line.split() if tok.startswith("JobState=")]
        if not states:
            return "UNKNOWN"
        return "COMPLETED" if all(s == "COMPLETED" for s in states) else ",".join(sorted(set(states)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    if os.geteuid() != 0 and shutil.which("slurmctld") is None:
        pytest.skip("Slurm is not installed and installing it (apt) needs root")
    # Not under pytest's tmp: pytest deletes old basetemps while daemons may still use them.
    root = REPO / ".slurm" / f"test-{os.getpid()}"
    shutil.rmtree(root, ignore_errors=True)
    env = {**os.environ, "SLURMCTLD_PORT": str(_free_port()), "SLURMD_PORT": str(_free_port())}
    started = subprocess.run([str(SCRIPT), "start", str(root), "--gpus", "2"], env=env,
                             capture_output=True, text=True, timeout=900)
    if started.returncode != 0 and shutil.which("sbatch") is None:
        pytest.skip(f"Slurm could not be installed: {started.stderr.strip()[-300:]}")
    assert started.returncode == 0, f"local Slurm did not start:\n{started.stdout}\n{started.stderr}"
    env["SLURM_CONF"] = str(root / "etc" / "slurm.conf")
    yield Cluster(root, env)
    subprocess.run([str(SCRIPT), "stop", str(root)], env=env, capture_output=True, timeout=120)
    shutil.rmtree(root, ignore_errors=True)


def test_stop_only_touches_recorded_daemons(cluster):
    """The PID files name live daemons of this cluster; status agrees."""
    for name in ("munged", "slurmctld", "slurmd"):
        pid = (cluster.root / "run" / f"{name}.pid").read_text().strip()
        assert Path(f"/proc/{pid}/comm").read_text().strip() == name
    assert cluster.run(str(SCRIPT), "status", str(cluster.root), check=False).returncode == 0


def _profile(**kw):
    return slurm.validate_profile({"partition": "debug", "cpus": 1, "mem": "500M",
                                   "time": "00:10:00", "container_image": "/images/p.sif", **kw})


@pytest.mark.parametrize("gpus", [0, 1, 2])
def test_sbatch_test_only_accepts_every_template(cluster, tmp_path, gpus):
    profile = _profile(gpus=gpus)
    for name, info in slurm.list_templates().items():
        if not info.is_script:
            continue
        text = slurm.render(name, profile, values_for(name, lambda n: str(tmp_path / n)))
        script = tmp_path / f"{name}.sh"
        script.write_text(text)
        out = cluster.run("sbatch", "--test-only", str(script), check=False, cwd=tmp_path)
        assert out.returncode == 0, f"{name} (gpus={gpus}) refused: {out.stderr}"
        assert "to start at" in out.stderr


def test_sbatch_refuses_what_the_cluster_cannot_give(cluster, tmp_path):
    """The same check fails for a request beyond the node, so the test above can fail."""
    text = slurm.render("train_centernet", _profile(gpus=8),
                        values_for("train_centernet", lambda n: str(tmp_path / n)))
    script = tmp_path / "too_many.sh"
    script.write_text(text)
    assert cluster.run("sbatch", "--test-only", str(script), check=False).returncode != 0


def test_scrontab_entry_is_accepted(cluster, tmp_path):
    """The #SCRON options are sbatch options: the cluster accepts them (--test-only), and the
    entry's command runs as a real job. Debian's slurm-client has no `scrontab` binary; where
    one exists, the entry is also installed and listed."""
    stub = tmp_path / "cryoglean"
    stub.write_text(STUB)
    stub.chmod(0o755)
    text = slurm.render("crawl.scrontab", _profile(cryoglean=str(stub)),
                        {"roots": [str(tmp_path / "a b")], "db": str(tmp_path / "c.db")})
    options = [ln.replace("#SCRON", "#SBATCH", 1) for ln in text.splitlines() if ln.startswith("#SCRON")]
    entry = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert len(entry) == 1 and entry[0].startswith("0 2 * * * ")
    script = tmp_path / "scron-as-batch.sh"
    script.write_text("#!/usr/bin/env bash\n" + "\n".join(options) + "\n" + entry[0].split(None, 5)[5] + "\n")
    out = cluster.run("sbatch", "--test-only", str(script), check=False, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    job = cluster.submit(script, f"--output={tmp_path}/scron-%j.out")
    assert cluster.wait([job]) == {job: "COMPLETED"}
    log = next(tmp_path.glob("scron-*.out")).read_text()
    assert f"args=crawl --db {tmp_path / 'c.db'} --wait 600 -- {tmp_path / 'a b'}" in log
    if shutil.which("scrontab") is None:
        return
    path = tmp_path / "crawl.scrontab"
    path.write_text(text)
    installed = cluster.run("scrontab", str(path), check=False)
    assert installed.returncode == 0, installed.stderr
    try:
        assert "0 2 * * *" in cluster.run("scrontab", "-l").stdout
    finally:
        cluster.run("scrontab", "-r", check=False)


STUB = """#!/usr/bin/env bash
echo "stub $(basename "$0") task=${SLURM_PROCID:-0} cvd=${CUDA_VISIBLE_DEVICES:-none} args=$*"
"""


def test_gpu_templates_run_on_fake_gpus(cluster, tmp_path):
    """GPU requests are accepted and allocated: one GPU for picking, two tasks for DDP."""
    stub = tmp_path / "cryoglean-stub"
    stub.write_text(STUB)
    stub.chmod(0o755)
    jobs = {}
    for name, gpus in (("pick_centernet", 1), ("train_centernet", 2)):
        profile = _profile(gpus=gpus, cryoglean=str(stub))
        script = tmp_path / f"{name}.sh"
        script.write_text(slurm.render(name, profile, values_for(name, lambda n: str(tmp_path / n))))
        jobs[name] = cluster.submit(script, f"--output={tmp_path}/{name}-%A_%a.out")
    states = cluster.wait(list(jobs.values()))
    assert set(states.values()) == {"COMPLETED"}, states
    pick_logs = sorted(tmp_path.glob("pick_centernet-*.out"))
    assert len(pick_logs) == 2  # the array of 2 shards
    # each array task got one (fake) GPU of its own
    gpus = sorted(log.read_text().split("cvd=")[1].split()[0] for log in pick_logs)
    assert set(gpus) <= {"0", "1"} and all(len(g) == 1 for g in gpus), gpus
    train_log = next(tmp_path.glob("train_centernet-*.out")).read_text()
    tasks = sorted(ln.split("task=")[1].split()[0] for ln in train_log.splitlines() if ln.startswith("stub"))
    assert tasks == ["0", "1"], train_log  # srun started one task per GPU
    assert "--gpus 0,1" in train_log


def test_dynamicdet_pipeline_runs_in_order(cluster, tmp_path):
    """The whole chain submitted by submit.sh on the local Slurm (2 fake GPUs): jobs complete
    in dependency order, training runs one srun task per GPU, each detect task gets one GPU,
    and each step finds the files the previous one made (the stub fails otherwise)."""
    from test_slurm_dynamicdet import _pipeline, _stub

    record = tmp_path / "calls.txt"
    _stub(tmp_path / "bin", record)
    profile = _profile(gpus=2, cryoglean=str(tmp_path / "bin" / "cryoglean"))
    out, _ = _pipeline(tmp_path, profile)
    submitted = cluster.run("bash", str(out / "submit.sh"))
    jobs = dict(line.split() for line in (out / "jobids.txt").read_text().splitlines())
    assert list(jobs) == ["02-export", "03-train-step1", "04-train-step2", "05-detect",
                          "06-star", "07-evaluate"], submitted.stdout
    states = cluster.wait(list(jobs.values()), timeout=300)
    logs = "\n".join(p.read_text() for p in sorted((out / "logs").glob("*")))
    assert set(states.values()) == {"COMPLETED"}, f"{states}\n{logs}"
    calls = record.read_text().splitlines()
    order = [c.split("args=")[1].split()[0] for c in calls]
    first = {name: order.index(name) for name in ("export", "train", "detect", "star",
                                                   "evaluate")}
    last = {name: len(order) - 1 - order[::-1].index(name) for name in first}
    for a, b in [("export", "train"), ("train", "detect"), ("detect", "star"),
                 ("star", "evaluate")]:
        assert last[a] < first[b], order
    trains = [c for c in calls if "args=train" in c]
    assert sorted(c.split()[0] for c in trains) == ["task=0", "task=0", "task=1", "task=1"]
    detects = [c for c in calls if "args=detect" in c]
    assert sorted(c.split()[1] for c in detects) == ["array=0", "array=1"]
    assert all(len(c.split()[2].split("=")[1]) == 1 for c in detects), detects  # one GPU each
    assert (tmp_path / "work" / "train" / "exp2" / "weights" / "last.pt").exists()


def test_dynamicdet_failed_step1_cancels_the_rest(cluster, tmp_path):
    """afterok: when step 1 fails, nothing after it runs."""
    from test_slurm_dynamicdet import _pipeline, _stub

    record = tmp_path / "calls.txt"
    _stub(tmp_path / "bin", record)
    profile = _profile(gpus=1, cryoglean=str(tmp_path / "bin" / "cryoglean"))
    out, _ = _pipeline(tmp_path, profile)
    (tmp_path / "work" / "train" / "exp").mkdir(parents=True)  # a used run folder: step 1 refuses
    cluster.run("bash", str(out / "submit.sh"))
    jobs = dict(line.split() for line in (out / "jobids.txt").read_text().splitlines())
    states = cluster.wait(list(jobs.values()), timeout=300)
    assert states[jobs["02-export"]] == "COMPLETED"
    assert states[jobs["03-train-step1"]] == "FAILED"
    for step in ("04-train-step2", "05-detect", "06-star", "07-evaluate"):
        assert states[jobs[step]] in ("CANCELLED", "UNKNOWN"), states
    assert [c.split("args=")[1].split()[0] for c in record.read_text().splitlines()] == ["export"]


@pytest.mark.slow
def test_cryoglean_chain_runs_for_real(cluster, tmp_path, facility):
    """crawl -> export -> denoise array -> one-step training -> pick array -> evaluate,
    chained by afterok dependencies, on tiny generated data; outputs checked."""
    cryoglean = Path(sys.executable).with_name("cryoglean")
    if not cryoglean.exists():
        pytest.skip(f"no cryoglean command next to {sys.executable}")
    profile = _profile(cpus=2, mem="4G", cryoglean=str(cryoglean), time="00:20:00")
    work = tmp_path / "work dir"
    db = work / "catalog.db"
    export = work / "export"
    runs = work / "runs"
    chain = [
        ("crawl", {"roots": [str(facility.root)], "db": str(db)}),
        ("export", {"db": str(db), "format": "thi", "out": str(export),
                    "project": [str(facility.projects["cryosparc"])]}),
        ("denoise", {"source": str(export / "val" / "images"), "project": str(work / "partinet"),
                     "shards": 2}),
        ("train_centernet", {"data": str(export / "train" / "images"),
                             "label": str(export / "train" / "labels"), "exp_id": "slurm",
                             "output": str(runs), "num_epoch": 1, "batch_size": 2,
                             "extra": ["--input_width", "256"]}),
        ("pick_centernet", {"data": str(export / "val" / "images"),
                            "model": str(runs / "slurm" / "weights" / "last.ckpt"),
                            "output": str(work / "picks"), "shards": 2}),
        ("evaluate", {"picks": str(work / "picks"), "truth": str(export / "val" / "labels"),
                      "out": str(work / "evaluation")}),
    ]
    work.mkdir()
    previous = None
    ids = []
    for i, (name, values) in enumerate(chain):
        script = work / f"{i:02d}-{name}.sh"
        script.write_text(slurm.render(name, profile, values))
        opts = [f"--output={work}/{i:02d}-{name}-%A_%a.out"]
        if previous:
            opts.append(f"--dependency=afterok:{previous}")
        previous = cluster.submit(script, *opts)
        ids.append(previous)
    states = cluster.wait(ids, timeout=600)
    logs = "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(work.glob("*.out")))
    assert set(states.values()) == {"COMPLETED"}, f"{states}\n{logs}"
    assert db.exists()
    labels = sorted((export / "val" / "labels").glob("*.thi"))
    assert labels
    assert len(sorted((work / "partinet" / "denoised").glob("*.png"))) == len(labels)
    assert (runs / "slurm" / "weights" / "last.ckpt").exists()
    assert len(sorted((work / "picks").glob("*.thi"))) == len(labels)
    assert any((work / "evaluation").iterdir())


def test_tomo_pipeline_runs_in_dependency_order(cluster, tmp_path):
    """`slurm pipeline tomo` submitted through its submit.sh: every job completes, the pick
    array has one task per shard on one (fake) GPU each, and no job starts before the jobs it
    depends on have ended (cryoglean is a recorder stub; the picker itself is tested elsewhere)."""
    record = tmp_path / "record.txt"
    stub = tmp_path / "cryoglean-stub"
    stub.write_text("#!/usr/bin/env bash\n"
                    # the pick job's threshold lookup (slurm value) is not a step: answer it
                    'if [ "$1" = slurm ]; then echo 0.2; exit 0; fi\n'
                    f'echo "$(date +%s.%N) start $SLURM_JOB_NAME" >> {record}\n'
                    "sleep 1\n"
                    f'echo "$(date +%s.%N) end $SLURM_JOB_NAME '
                    '${CUDA_VISIBLE_DEVICES:-none} $*" >> ' f"{record}\n")
    stub.chmod(0o755)
    out = tmp_path / "chain"
    slurm.write_pipeline("tomo", _profile(gpus=1, cryoglean=str(stub)),
                         {"db": str(tmp_path / "c.db"), "workdir": str(tmp_path / "work"),
                          "roots": [str(tmp_path / "facility")], "shards": 2}, out)
    submitted = cluster.run("bash", str(out / "submit.sh"))
    assert submitted.returncode == 0, submitted.stderr
    ids = dict(line.split() for line in (out / "jobids.txt").read_text().splitlines())
    states = cluster.wait(list(ids.values()))
    assert set(states.values()) == {"COMPLETED"}, states
    start, end, gpus = {}, {}, []
    for line in record.read_text().splitlines():
        t, what, name, *rest = line.split()
        (start if what == "start" else end).setdefault(name, []).append(float(t))
        if what == "end" and name in ("04-train", "05-pick"):
            gpus.append(rest[0])
    assert len(start["05-pick"]) == 2 and len(end["05-pick"]) == 2  # the array of 2 tomogram shards
    assert gpus and all(g in ("0", "1") for g in gpus), gpus
    needs = {"02-export": ["01-crawl"], "03-files": ["02-export"], "04-train": ["02-export"],
             "05-pick": ["03-files", "04-train"], "06-evaluate": ["05-pick"]}
    for step, before in needs.items():
        for b in before:
            assert min(start[step]) >= max(end[b]), f"{step} started before {b} ended"


# --------------------------------------------------------------------------------------------
# A CPU-only nightly pipeline: one profile for crawl/export/evaluate, another for train/pick
# --------------------------------------------------------------------------------------------

CPU_PROFILES = """\
defaults:
  cryoglean: {cryoglean}
profiles:
  cpu-small:
    partition: debug
    cpus: 1
    mem: 1G
    time: "00:10:00"
    env: {{OMP_NUM_THREADS: "1"}}
  cpu-train:
    partition: long
    cpus: 2
    mem: 2G
    time: "00:30:00"
    env: {{OMP_NUM_THREADS: "2", CRYOGLEAN_PROGRESS_SECONDS: "0"}}
"""
# CRYOGLEAN_PROGRESS_SECONDS 0: a line after every batch. The tiny run trains 12 batches in about
# half a second, so any positive interval made the count of lines depend on the machine's speed
# (0.5 s gave one line on a fast CI machine and failed the ">= 2 lines" check).
RESOURCES = {"cpu-small": ("debug", "1", "1G", "00:10:00"),
             "cpu-train": ("long", "2", "2G", "00:30:00")}
STEP_PROFILE = {"crawl": "cpu-small", "export": "cpu-small", "train": "cpu-train",
                "pick": "cpu-train", "evaluate": "cpu-small"}
PROGRESS = re.compile(r"^train epoch \d+( loss [\d.e+-]+)?: (\d+)/(\d+) batches \((\d+)%\), "
                      r"[\d.e+]+ batches/s, ETA [\d:?]+$")


def _job_fields(cluster, job_id: str) -> dict[str, str]:
    """The scheduler's record of a job (its first line: an array's first task)."""
    line = cluster.run("scontrol", "show", "job", "-o", job_id).stdout.splitlines()[0]
    return dict(tok.split("=", 1) for tok in line.split() if "=" in tok)


def _watch_training(cluster, job_id: str, log: Path, timeout: float = 300.0) -> list[list[str]]:
    """Poll the training job's output file while the job runs: the progress lines seen at each
    poll made while the job was still RUNNING (checked after reading the file)."""
    seen, deadline = [], time.time() + timeout
    while time.time() < deadline:
        lines = [ln for ln in log.read_text().splitlines() if ln.startswith("train epoch")] \
            if log.exists() else []
        state = _job_fields(cluster, job_id).get("JobState", "")
        if state == "RUNNING" and lines:
            seen.append(lines)
        elif state not in ("PENDING", "RUNNING", "CONFIGURING"):
            return seen
        time.sleep(0.2)
    raise TimeoutError(f"training job {job_id} did not end in {timeout} s")


@pytest.mark.slow
def test_cpu_pipeline_with_a_profile_per_step(cluster, tmp_path, facility):
    """crawl -> export -> train -> pick (array) -> evaluate on the local Slurm, CPU only: the
    CPU-light steps on a small profile, training and picking on another; every job completes
    with the resources its script asks for; training writes progress lines into its Slurm
    output file while it runs; pick and evaluate use the run's threshold and the export's
    diameter."""
    from converters.dataset import open_export
    from cryoglean.cli import main
    from trainers.labels import read_labels

    cryoglean = Path(sys.executable).with_name("cryoglean")
    if not cryoglean.exists():
        pytest.skip(f"no cryoglean command next to {sys.executable}")
    profiles = tmp_path / "cluster.yaml"
    profiles.write_text(CPU_PROFILES.format(cryoglean=cryoglean))
    work, out = tmp_path / "work dir", tmp_path / "slurm"
    work.mkdir()  # the catalog's folder (crawl does not create it)
    tiny = ["--input_width", "128", "--width", "4", "--head_conv", "8", "--crop", "64",
            "--particle_size", "53", "--edge", "2"]
    code = main(["slurm", "pipeline", "centernet", "--profiles", str(profiles), "--profile",
                 "cpu-small", "--profile-for", "train=cpu-train", "--profile-for",
                 "pick=cpu-train", "-o", str(out), "--set", f"db={work / 'catalog.db'}",
                 "--set", f"workdir={work}", "--set", f"roots={facility.root}",
                 "--set", f"project={facility.projects['cryosparc']}", "--set", "shards=2",
                 "--set", "num_epoch=3", "--set", "batch_size=1",
                 *[a for t in tiny for a in ("--set", f"train_extra={t}")]])
    assert code == 0
    # the scripts ask for their profile's resources, and no GPU
    scripts = {p.stem.split("-", 1)[1]: p for p in out.glob("0*.sh")}
    assert set(scripts) == set(STEP_PROFILE)
    for step, script in scripts.items():
        partition, cpus, mem, limit = RESOURCES[STEP_PROFILE[step]]
        sbatch = [ln for ln in script.read_text().splitlines() if ln.startswith("#SBATCH")]
        for want in (f"--partition={partition}", f"--cpus-per-task={cpus}", f"--mem={mem}",
                     f"--time={limit}"):
            assert f"#SBATCH {want}" in sbatch, (step, sbatch)
        assert not any("gpu" in ln for ln in sbatch), (step, sbatch)
    submitted = cluster.run("bash", str(out / "submit.sh"))
    jobs = dict(line.split() for line in (out / "jobids.txt").read_text().splitlines())
    assert list(jobs) == ["01-crawl", "02-export", "03-train", "04-pick", "05-evaluate"], \
        submitted.stdout
    seen = _watch_training(cluster, jobs["03-train"], out / "logs" / f"03-train-{jobs['03-train']}.out")
    states = cluster.wait(list(jobs.values()), timeout=300)
    logs = {p.name: p.read_text() for p in sorted((out / "logs").glob("*.out"))}
    every_log = "\n".join(f"--- {n}\n{t[-2000:]}" for n, t in logs.items())
    assert set(states.values()) == {"COMPLETED"}, f"{states}\n{every_log}"
    # the cluster gave each job what its script asked for
    for name, job in jobs.items():
        partition, cpus, mem, limit = RESOURCES[STEP_PROFILE[name.split("-", 1)[1]]]
        f = _job_fields(cluster, job)
        assert (f["Partition"], f["NumCPUs"], f["MinMemoryNode"], f["TimeLimit"]) == \
            (partition, cpus, mem, limit), (name, f)
    # progress lines in the Slurm output file while training ran, growing, then 100 %
    train_log = logs[f"03-train-{jobs['03-train']}.out"]
    lines = [ln for ln in train_log.splitlines() if ln.startswith("train epoch")]
    assert seen, f"no progress line while the training job ran:\n{train_log}"
    assert all(PROGRESS.match(ln) for ln in lines), lines
    done = [int(PROGRESS.match(ln).group(2)) for ln in lines]
    assert len(lines) >= 2 and done == sorted(done), lines
    assert "(100%)" in lines[-1], lines
    assert "\r" not in train_log
    # pick used the run's best-F1 threshold, evaluate the manifest's diameter
    run_dir = work / "runs" / "centernet"
    best = json.loads((run_dir / "val_metrics.json").read_text())["summary"]["best_threshold"]
    pick_logs = [t for n, t in logs.items() if n.startswith("04-pick")]
    assert len(pick_logs) == 2  # the array of 2 shards
    for text in pick_logs:
        assert f"threshold {best} from {run_dir / 'val_metrics.json'}" in text, text
    scores = read_labels(work / "picks", "thi")["score"]
    assert (scores > best).all(), (best, scores.min())  # the picker kept score > threshold
    diameter = open_export(work / "export-thi").diameter_px
    ev = logs[f"05-evaluate-{jobs['05-evaluate']}.out"]
    assert f"diameter {diameter} from {work / 'export-thi' / 'manifest.json'}" in ev, ev
    metrics = json.loads((work / "evaluation" / "metrics.json").read_text())["summary"]
    assert metrics["radius"] == pytest.approx(0.5 * diameter)
