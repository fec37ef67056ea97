"""Run benchmark scripts on two versions of cryoglean, side by side in one run.

    .venv/bin/python benchmarks/before_after.py --before a1e4c7a \\
        --bench "bench_formats_write.py --repeat 2" --bench "bench_harvest_size.py" \\
        --out benchmarks/results/before_after.md

The "before" version is checked out with ``git worktree add --detach`` into a temporary
directory; the "after" version is this checkout (or ``--after REF``, checked out likewise). Each
benchmark runs with its own tree's script, ``PYTHONPATH`` set to that tree (so its packages win
over the editable install), alternating before/after ``--rounds`` times so that a change of load
on a shared machine hits both sides alike. The load average is recorded before every run. The
output file holds, per benchmark, the commands and each run's full stdout; nothing is parsed or
summarised by this script, the numbers are the benchmarks' own.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _worktree(ref: str, where: Path) -> Path:
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-f", str(where), ref],
                   check=True, stdout=subprocess.DEVNULL)
    return where


def _run(tree: Path, bench: str, timeout: float, script_tree: Path | None = None
         ) -> tuple[str, float, float]:
    args = shlex.split(bench)
    cmd = [sys.executable, str((script_tree or tree) / "benchmarks" / args[0]), *args[1:]]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
    dt = time.perf_counter() - t0
    out = res.stdout + (f"\n[stderr tail]\n{res.stderr[-2000:]}" if res.returncode else "")
    if res.returncode:
        out += f"\n[exit {res.returncode}]"
    return out, dt, load


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="git ref of the version before the change")
    ap.add_argument("--after", default=None, help="git ref after (default: this checkout)")
    ap.add_argument("--bench", action="append", required=True,
                    help="a script in benchmarks/ with its arguments (repeatable)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per run")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "out" / "before_after.md"))
    ap.add_argument("--script-from-after", action="store_true",
                    help="run the after tree's benchmark script on both versions (for a new "
                         "benchmark the before version lacks; the script must import the code "
                         "under test from PYTHONPATH)")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="cryoglean-before-after-"))
    trees = {"before": _worktree(args.before, tmp / "before")}
    trees["after"] = _worktree(args.after, tmp / "after") if args.after else REPO
    revs = {k: subprocess.run(["git", "-C", str(v), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip()
            for k, v in trees.items()}
    lines = [f"# Before/after: {revs['before']} vs {revs['after']}"
             + (" (+ uncommitted changes)" if not args.after else ""), "",
             "    " + " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]), ""]
    try:
        for bench in args.bench:
            lines += [f"## `{bench}`", ""]
            for r in range(args.rounds):
                for side in ("before", "after"):
                    print(f"[{side} {revs[side]}] {bench} (round {r + 1})", flush=True)
                    out, dt, load = _run(trees[side], bench, args.timeout,
                                         trees["after"] if args.script_from_after else None)
                    print(out, flush=True)
                    lines += [f"### {side} ({revs[side]}), round {r + 1}: {dt:.1f} s wall, "
                              f"load average {load:.1f} at start", "", "```", out.rstrip(), "```",
                              ""]
    finally:
        for tree in trees.values():
            if tree != REPO:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                                str(tree)], stdout=subprocess.DEVNULL)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
