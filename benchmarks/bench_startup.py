"""Start-up of a pick task: wall time from the command to its first (and only) micrograph.

    .venv/bin/python benchmarks/bench_startup.py [--repeat 5]

Every Slurm array shard of ``pick`` pays its start-up again, so it is measured alone: a tiny
CenterNet checkpoint is trained once (one epoch on two generated micrographs, through the
real ``cryoglean train centernet`` of the checkout this script is in), then ``cryoglean pick
centernet`` of the code under test picks one 576×448 micrograph ``--repeat`` times in fresh
processes. Rows: the bare ``python -c pass``, ``python -c "import torch"`` (the floor: inference
needs torch), the import of the pick entry point alone (wall time of the import in a fresh
interpreter), and the whole command, plus whether pytorch_lightning was loaded by the pick run.
Run it on two versions with ``benchmarks/before_after.py --script-from-after`` for a
before/after (the checkpoint is trained by the after tree, whose trainer reads the script's
minimal label files).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# the code under test: PYTHONPATH when set (benchmarks/before_after.py --script-from-after)
CODE = Path(os.environ.get("PYTHONPATH", "").split(os.pathsep)[0] or REPO)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cryoglean.cli", *args]


def _median_times(cmd: list[str], repeat: int, env: dict) -> tuple[float, float]:
    """(median wall s, median CPU s of the child: user + system, what a core costs)."""
    import resource

    times, cpu = [], []
    for _ in range(repeat):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=CODE)
        times.append(time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    return statistics.median(times), statistics.median(cpu)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": str(CODE)}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        own = {**os.environ, "PYTHONPATH": str(REPO)}  # data and checkpoint: this tree
        subprocess.run(_cli("demo-data", str(tmp / "fac"), "--force"), check=True, env=own,
                       capture_output=True, cwd=REPO)
        mics = sorted((tmp / "fac").rglob("*.mrc"))
        mics = [m for m in mics if "micrographs" in m.parts][:2]
        data = tmp / "data"
        data.mkdir()
        for m in mics:
            os.symlink(m, data / m.name)
        labels = tmp / "labels"
        labels.mkdir()
        for m in mics:  # one label per micrograph is enough for a start-up measurement
            (labels / f"{m.stem}.star").write_text(
                "\ndata_\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n100.0 100.0\n")
        subprocess.run(_cli("train", "centernet", "--data", str(data), "--label", str(labels),
                            "--label_type", "star", "--exp_id", "tiny", "--output",
                            str(tmp / "runs"), "--num_epoch", "1", "--gpus", "-1",
                            "--val_pct", "0", "--test_pct", "0", "--input_width", "256"),
                       check=True, env=own, capture_output=True, cwd=REPO)
        ckpt = tmp / "runs" / "tiny" / "weights" / "last.ckpt"
        one = tmp / "one"
        one.mkdir()
        os.symlink(mics[0], one / mics[0].name)
        pick = _cli("pick", "centernet", "--data", str(one), "--load_model", str(ckpt),
                    "--output", str(tmp / "picks"), "--output_type", "star", "--gpus", "-1")
        t_pick = _median_times(pick, args.repeat, env)
        t_py = _median_times([sys.executable, "-c", "pass"], args.repeat, env)
        t_torch = _median_times([sys.executable, "-c", "import torch"], args.repeat, env)
        run_probe = ("import sys, runpy; sys.argv = ['cryoglean', *sys.argv[1:]]\n"
                     "try:\n    runpy.run_module('cryoglean.cli', run_name='__main__')\n"
                     "except SystemExit:\n    pass\n"
                     "print('LIGHTNING', any(m.split('.')[0] in ('pytorch_lightning', "
                     "'lightning') for m in sys.modules))")
        ran = subprocess.run([sys.executable, "-c", run_probe, *pick[3:]], env=env, cwd=CODE,
                             capture_output=True, text=True).stdout
        pick_lightning = "LIGHTNING True" in ran
        probe = ("import sys, time, json; t=time.perf_counter(); "
                 "import cryoglean.cli, importlib; "
                 "g = cryoglean.cli.cli.get_command(None, 'pick'); "
                 "c = g.get_command(None, 'centernet') if hasattr(g, 'get_command') else g; "
                 "print(json.dumps({'s': time.perf_counter()-t, "
                 "'lightning': 'pytorch_lightning' in sys.modules}))")
        res = json.loads(subprocess.run([sys.executable, "-c", probe], check=True, env=env,
                                        capture_output=True, text=True,
                                        cwd=CODE).stdout.strip().splitlines()[-1])
    print("| step | median wall s | median CPU s |")
    print("|---|---:|---:|")
    print(f"| `python -c pass` | {t_py[0]:.2f} | {t_py[1]:.2f} |")
    print(f"| `python -c \"import torch\"` (the floor) | {t_torch[0]:.2f} | {t_torch[1]:.2f} |")
    print(f"| loading the pick command (`pick centernet`) | {res['s']:.2f} | |")
    print(f"| `cryoglean pick centernet`, one 576×448 micrograph, command to exit | "
          f"{t_pick[0]:.2f} | {t_pick[1]:.2f} |")
    print(f"\npytorch_lightning imported by loading the pick command: {res['lightning']}; "
          f"by a whole pick run: {pick_lightning}; load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
