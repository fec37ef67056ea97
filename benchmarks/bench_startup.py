"""Start-up of inference tasks: CPU and wall time from the command to the end of its first (and
only) micrograph, before and after a change, side by side in one run.

    .venv/bin/python benchmarks/bench_startup.py [--before REF] [--repeat 7]

Every Slurm array task of ``pick``/``detect`` pays its start-up again, so it is measured alone,
in fresh processes: ``cryoglean pick centernet`` on one 576×448 micrograph (a tiny checkpoint
trained once by this checkout's ``cryoglean train centernet``), ``cryoglean detect`` (PartiNet's
flags, a tiny DynamicDet checkpoint written by hand) and ``cryoglean pick tomo`` on one
24×64×64 tomogram (random weights). The floor is ``python -c "import torch"`` (inference needs
torch), with ``python -c pass`` beside it.

``--before REF``: the same commands on git ``REF`` (exported with ``git archive`` into a temporary
folder), run with ``PYTHONPATH`` set to that tree. Every repetition runs every row once, before
and after alternating, so a change of load on a shared machine hits both alike. Figures are
medians over ``--repeat`` repetitions of the child's CPU time (user + system,
``getrusage(RUSAGE_CHILDREN)``: what a core costs, and what stays comparable on a loaded machine)
and of its wall time. Also printed: which of the modules inference does not need each command
loaded, and the top-level imports of the pick command by ``python -X importtime`` (one run each;
wall time, so only indicative under load), and where the after tree's pick spends its CPU, phase
by phase in one process (imports, checkpoint, the first and a second micrograph, the label
file). ``--threads N`` sets ``OMP_NUM_THREADS`` for every child (a task given N cores; torch
otherwise starts one thread per core, which on a loaded machine costs spinning CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("pytorch_lightning", "lightning", "pandas", "matplotlib", "cv2", "scipy", "yaml",
         "sympy")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cryoglean.cli", *args]


THREADS: dict[str, str] = {}


def _env(tree: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(tree), **THREADS}


def _timed(cmd: list[str], tree: Path) -> tuple[float, float]:
    """(wall s, CPU s of the child)."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=_env(tree), cwd=tree)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime


def _loaded(cmd: list[str], tree: Path) -> list[str]:
    """The HEAVY packages the command ``cryoglean ...`` (``cmd[3:]``) loaded."""
    probe = ("import sys, runpy, json; sys.argv = ['cryoglean', *sys.argv[1:]]\n"
             "try:\n    runpy.run_module('cryoglean.cli', run_name='__main__')\n"
             "except SystemExit:\n    pass\n"
             f"print('LOADED', json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & "
             f"set({list(HEAVY)!r}))))")
    out = subprocess.run([sys.executable, "-c", probe, *cmd[3:]], env=_env(tree), cwd=tree,
                         capture_output=True, text=True).stdout
    line = [x for x in out.splitlines() if x.startswith("LOADED ")]
    return json.loads(line[-1][7:]) if line else ["(probe failed)"]


def _importtime(cmd: list[str], tree: Path, top: int = 8) -> list[tuple[str, float]]:
    """Top-level packages by cumulative import time (s, wall) of one run of ``cmd``."""
    res = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], env=_env(tree), cwd=tree,
                         capture_output=True, text=True)
    per: dict[str, float] = {}
    for line in res.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S.*)$", line)
        if m:  # depth 0: no indentation before the name
            name = m.group(2).split(".")[0]
            per[name] = per.get(name, 0.0) + int(m.group(1)) / 1e6
    return sorted(per.items(), key=lambda kv: -kv[1])[:top]


PHASES = """
import resource, sys, time
from pathlib import Path
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
marks, c0 = [], cpu()
def mark(name):
    marks.append((name, cpu()))
import torch; mark("import torch")
import scipy.fft; mark("import scipy.fft (the Fourier crop)")
from cryoglean.cli import cli
from trainers.cli import pick_group
pick_group.get_command(None, "centernet"); mark("cryoglean.cli and the pick command")
from trainers.centernet.options import PickOptions
from trainers.centernet import pick as cp
from trainers.core.pick import write_picks_file
from trainers.labels import format_name
mark("pick modules")
net, h = cp.load_picker(sys.argv[1]); mark("checkpoint and network")
one = getattr(cp, "pick_columns", cp.pick_micrograph)
opts = PickOptions(load_model=sys.argv[1], output=sys.argv[3], output_type="star")
picks = one(net, h, sys.argv[2], opts); mark("first micrograph (read, crop, forward, decode)")
one(net, h, sys.argv[2], opts); mark("the same micrograph again")
write_picks_file(picks, Path(sys.argv[3]), format_name("star"), Path(sys.argv[2]).stem)
mark("its label file")
prev = 0.0
for name, c in marks:
    print(f"{name}: {c - c0 - prev:.2f}")
    prev = c - c0
"""


def _phases(pick: list[str], tree: Path) -> str:
    ckpt, mic = pick[pick.index("--load_model") + 1], pick[pick.index("--data") + 1]
    mic = str(next(Path(mic).iterdir()))
    with tempfile.TemporaryDirectory() as out:
        res = subprocess.run([sys.executable, "-c", PHASES, ckpt, mic, out], env=_env(tree),
                             cwd=tree, capture_output=True, text=True)
    return "; ".join(res.stdout.split("\n")).strip("; ") or res.stderr[-300:]


def _setup(tmp: Path) -> dict[str, list[str]]:
    """Data, checkpoints and the commands of each row (trained/written by this checkout)."""
    own = _env(REPO)
    subprocess.run(_cli("demo-data", str(tmp / "fac"), "--force"), check=True, env=own,
                   capture_output=True, cwd=REPO)
    mics = sorted(m for m in (tmp / "fac").rglob("*.mrc") if "micrographs" in m.parts)[:2]
    data, labels, one = tmp / "data", tmp / "labels", tmp / "one"
    for d in (data, labels, one):
        d.mkdir()
    for m in mics:  # one label per micrograph is enough for a start-up measurement
        os.symlink(m, data / m.name)
        (labels / f"{m.stem}.star").write_text(
            "\ndata_\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n100.0 100.0\n")
    subprocess.run(_cli("train", "centernet", "--data", str(data), "--label", str(labels),
                        "--label_type", "star", "--exp_id", "tiny", "--output", str(tmp / "runs"),
                        "--num_epoch", "1", "--gpus", "-1", "--val_pct", "0", "--test_pct", "0",
                        "--input_width", "256"), check=True, env=own, capture_output=True,
                   cwd=REPO)
    os.symlink(mics[0], one / mics[0].name)
    write = f"""
import numpy as np, torch, mrcfile
from trainers.dynamicdet.network import DynamicDet, config_of
torch.manual_seed(0)
net = DynamicDet(config_of("tiny"))
torch.save({{"state_dict": {{f"net.{{k}}": v for k, v in net.state_dict().items()}},
            "hyper_parameters": {{"model_cfg": config_of("tiny"), "img_size": 640}},
            "router_calibration": {{"percentiles": np.linspace(0.4, 0.6, 101).tolist()}}}},
           {str(tmp / "dd.pt")!r})
from trainers.tomopicker.network import TomoNet
net = TomoNet("unet_4", 8, 3)
hp = {{"arch": "unet_4", "head_conv": 8, "last_k": 3, "order": "zxy", "bbox": 8}}
torch.save({{"state_dict": {{"net." + k: v for k, v in net.state_dict().items()}},
            "hyper_parameters": hp}}, {str(tmp / "tomo.ckpt")!r})
(tomos := __import__("pathlib").Path({str(tmp / "tomos")!r})).mkdir()
with mrcfile.new(tomos / "t1.mrc") as m:
    m.set_data(np.random.default_rng(0).normal(size=(24, 64, 64)).astype(np.float32))
"""
    subprocess.run([sys.executable, "-c", write], check=True, env=own, cwd=REPO,
                   capture_output=True)
    return {
        "`cryoglean pick centernet`, one 576×448 micrograph": _cli(
            "pick", "centernet", "--data", str(one), "--load_model",
            str(tmp / "runs" / "tiny" / "weights" / "last.ckpt"), "--output", str(tmp / "picks"),
            "--output_type", "star", "--gpus", "-1", "--quiet"),
        "`cryoglean detect`, the same micrograph": _cli(
            "detect", "--weight", str(tmp / "dd.pt"), "--source", str(one), "--project",
            str(tmp / "detect"), "--device", "cpu", "--quiet"),
        "`cryoglean pick tomo`, one 24×64×64 tomogram": _cli(
            "pick", "tomo", "--data", str(tmp / "tomos"), "--load_model", str(tmp / "tomo.ckpt"),
            "--output", str(tmp / "tomo_picks"), "--out_thresh", "0", "--quiet"),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", default=None, help="git ref to compare with (e.g. main)")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of every child")
    args = ap.parse_args(argv)
    if args.threads:
        THREADS["OMP_NUM_THREADS"] = str(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        trees = {"after": REPO}
        revs = {"after": subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                        capture_output=True, text=True).stdout.strip()}
        if args.before:
            before = tmp / "before"
            before.mkdir()
            tar = subprocess.run(["git", "-C", str(REPO), "archive", args.before],
                                 check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(before)], input=tar, check=True)
            trees = {"before": before, "after": REPO}
            revs["before"] = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short",
                                             args.before], capture_output=True,
                                            text=True).stdout.strip()
        rows = _setup(tmp)
        floors = {"`python -c pass`": [sys.executable, "-c", "pass"],
                  "`python -c \"import torch\"` (the floor)": [sys.executable, "-c",
                                                              "import torch"]}
        times: dict[tuple[str, str], list[tuple[float, float]]] = {}
        loads = []
        for _ in range(args.repeat):
            loads.append(os.getloadavg()[0])
            for name, cmd in floors.items():
                times.setdefault((name, "floor"), []).append(_timed(cmd, REPO))
            for name, cmd in rows.items():
                for side, tree in trees.items():
                    times.setdefault((name, side), []).append(_timed(cmd, tree))
        loaded = {(n, s): _loaded(c, t) for n, c in rows.items() for s, t in trees.items()}
        imports = {s: _importtime(next(iter(rows.values())), t) for s, t in trees.items()}
        phases = _phases(next(iter(rows.values())), REPO)

    def med(key, i):
        return statistics.median(v[i] for v in times[key])

    def cpu_cell(key):  # median (min–max) of the CPU seconds
        v = [t[1] for t in times[key]]
        return f"{statistics.median(v):.2f} ({min(v):.2f}–{max(v):.2f})"

    sides = list(trees)
    floor_cpu = med(("`python -c \"import torch\"` (the floor)", "floor"), 1)
    threads = f"OMP_NUM_THREADS={args.threads}" if args.threads else "torch's default threads"
    print(f"{args.repeat} repetitions, medians; load average {min(loads):.1f}–{max(loads):.1f} "
          f"on {os.cpu_count()} cores; {threads}; " + ", ".join(f"{s} = `{revs[s]}`" for s in sides))
    print()
    head = " | ".join(f"{s}: CPU s (min–max) | {s}: wall s" for s in sides)
    print(f"| step | {head} |" + (" after/before CPU |" if len(sides) > 1 else ""))
    print("|---|" + "---:|" * (2 * len(sides) + (len(sides) > 1)))
    for name in floors:
        cpu, wall = cpu_cell((name, "floor")), med((name, "floor"), 0)
        print(f"| {name} | " + " | ".join(f"{cpu} | {wall:.2f}" for _ in sides)
              + (" | |" if len(sides) > 1 else " |"))
    for name in rows:
        cells = " | ".join(f"{cpu_cell((name, s))} | {med((name, s), 0):.2f}" for s in sides)
        ratio = (f" {med((name, 'after'), 1) / med((name, 'before'), 1):.2f} |"
                 if len(sides) > 1 else "")
        print(f"| {name} | {cells} |{ratio}")
    print()
    print("CPU s above the floor (`import torch`, same run): " + "; ".join(
        f"{name.split(',')[0]} " + " → ".join(f"{med((name, s), 1) - floor_cpu:.2f}"
                                               for s in sides) for name in rows))
    print()
    print("Modules inference does not need, loaded by each command: " + "; ".join(
        f"{name.split(',')[0]} " + " / ".join(
            f"{s}: {', '.join(loaded[(name, s)]) or 'none'}" for s in sides) for name in rows))
    print()
    print(f"`pick centernet` CPU s by phase (after, one process): {phases}")
    print()
    for s in sides:
        print(f"`pick centernet` top-level imports ({s}, `-X importtime`, wall s, one run): "
              + ", ".join(f"{k} {v:.2f}" for k, v in imports[s]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
