"""Benchmark: how far the default export's labels lie from the simulated truth, before and after
2D shifts recentre (issue 10, item 2), per package flavour of the generated facility.

Two facilities from one generated one: as generated (every project refined: the default export
takes the ``refined`` particles) and "stopped at 2D" (the 3D jobs marked failed, as in a facility
whose processing stopped at Select 2D: the default export takes the ``selected2d`` particles).
Each is crawled and selected (:func:`converters.select.select_labels`, default options) by two
code trees: ``--before`` (e.g. /work/main) and this one. A label's distance is the distance to
the nearest true item (particle or junk) on its micrograph, in micrograph pixels.

    .venv/bin/python benchmarks/bench_recentre.py --before /work/main [--out results/recentre.md]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def measure(facility_dir: str) -> dict:
    """{flavour: (median px, labels, stage)} for the code tree on sys.path."""
    import numpy as np

    from converters.select import SelectionOptions, select_labels
    from harvest.catalog import Catalog
    from harvest.crawl import crawl
    from harvest.synth import load_facility

    fac = load_facility(facility_dir)
    truth = fac.truth_frame()
    db = os.path.join(tempfile.mkdtemp(), "c.db")
    crawl([str(fac.root)], db, progress=False)
    out = {}
    with Catalog(db, readonly=True) as cat:
        projects = cat.projects()
        for flavour, root in fac.projects.items():
            pid = int(projects[projects["root"] == str(root)]["id"].iloc[0])
            sel = select_labels(cat, SelectionOptions(projects=(pid,)))
            pos = sel.positives.merge(sel.micrographs[["mic", "key"]], on="mic")
            dists = []
            for key, g in pos.groupby("key"):
                t = truth[truth["micrograph"] == key][["x", "y"]].to_numpy()
                d = np.hypot(g["x"].to_numpy()[:, None] - t[None, :, 0],
                             g["y"].to_numpy()[:, None] - t[None, :, 1]).min(axis=1)
                dists.append(d)
            d = np.concatenate(dists)
            out[flavour] = (float(np.median(d)), int(len(d)),
                            ",".join(sorted(set(sel.micrographs["stage"]))))
    return out


def stop_at_2d(src: Path, dst: Path) -> None:
    """Copy of a generated facility whose 3D jobs (RELION Class3D/job009, Refine3D/job010;
    CryoSPARC J9, J10) are marked failed."""
    from harvest.starread import read_star
    from harvest.starwrite import write_star

    shutil.copytree(src, dst, symlinks=True)
    for proj in [*dst.iterdir(), *dst.glob("cryosparc/*")]:
        if (proj / "default_pipeline.star").is_file():
            pipe = proj / "default_pipeline.star"
            data = read_star(pipe, parse_as_string=("rlnPipeLineProcessName",))
            procs = data["pipeline_processes"]
            failed = procs["rlnPipeLineProcessName"].isin(["Class3D/job009/", "Refine3D/job010/"])
            if "rlnPipeLineProcessStatusLabel" in procs:
                procs.loc[failed, "rlnPipeLineProcessStatusLabel"] = "Failed"
            else:  # 3.0 has no failed status: running
                procs.loc[failed, "rlnPipeLineProcessStatus"] = 0
            version = 50001 if "rlnPipeLineNodeTypeLabelDepth" in data["pipeline_nodes"] else (
                30001 if "# version" in pipe.read_text() else None)
            write_star(pipe, list(data.items()), version)
            for job, out in (("Class3D/job009", "run_it025_data.star"),
                             ("Refine3D/job010", "run_data.star")):
                (proj / job / out).unlink()  # 3.0: a running job with its outputs is finished
                ok = proj / job / "RELION_JOB_EXIT_SUCCESS"
                if ok.exists():
                    ok.unlink()
                    (proj / job / "RELION_JOB_EXIT_FAILURE").write_text("")
        elif (proj / "project.json").is_file():
            for job in ("J9", "J10"):
                path = proj / job / "job.json"
                doc = json.loads(path.read_text())
                doc["status"] = "failed"
                path.write_text(json.dumps(doc))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="code tree of the 'before' figures")
    ap.add_argument("--out", default=str(HERE / "results" / "recentre.md"))
    ap.add_argument("--measure", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    from harvest.synth import FacilityConfig, make_facility

    work = Path(tempfile.mkdtemp())
    make_facility(work / "full", FacilityConfig())
    stop_at_2d(work / "full", work / "stopped2d")
    rows = []
    for scenario in ("full", "stopped2d"):
        figures = {}
        for label, tree in (("before", args.before), ("after", str(REPO))):
            env = {**os.environ, "PYTHONPATH": tree}
            res = subprocess.run([sys.executable, __file__, "--before", tree, "--measure",
                                  str(work / scenario)], env=env, capture_output=True,
                                 text=True, check=True, cwd=tree)
            figures[label] = json.loads(res.stdout.strip().splitlines()[-1])
        for flavour in figures["after"]:
            b, a = figures["before"][flavour], figures["after"][flavour]
            rows.append(f"| {scenario} | {flavour} | {b[2]} | {b[0]:.3f} | {a[2]} | {a[0]:.3f} "
                        f"| {a[1]} |")
    table = "\n".join([
        "| facility | flavour | stage before | median px before | stage after | median px after "
        "| labels |",
        "|---|---|---|---|---|---|---|", *rows])
    text = (f"# Default export vs simulated truth (issue 10, item 2)\n\n"
            f"`{' '.join(['python', 'benchmarks/bench_recentre.py', '--before', args.before])}`"
            f"\n\nMedian distance (micrograph px) of the default export's labels to the nearest "
            f"true item; default FacilityConfig (6 micrographs, 576×448 px, 1.5 Å/px). "
            f"'stopped2d': the same facility with the 3D jobs marked failed.\n\n{table}\n")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
