"""Training runs (``--runs DIR``) and evaluations of imported pickers against the curated
sets of the catalog, for the report."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd

from harvest.catalog import Catalog
from harvest.conventions import STAGES
from trainers.core import VAL_METRICS

STANDARD_PLOTS = ("loss.png", "pr.png", "f1.png")
GALLERY_MAX = 12


def find_runs(dirs: list[str | os.PathLike]) -> list[Path]:
    """Run directories (holding ``options.yaml``) given, or up to two levels below those
    given; sorted, each once."""
    found: set[Path] = set()
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            raise FileNotFoundError(f"--runs {d}: no such folder (give a training run folder "
                                    "OUTPUT/EXP_ID or a folder of runs)")
        for cand in [d, *d.glob("*"), *d.glob("*/*")]:
            if (cand / "options.yaml").is_file():
                found.add(cand.resolve())
    return sorted(found)


def read_run(run: Path, site: Path, slug: str) -> dict:
    """Options, last validation summary, epochs and the plots of one run; plots and up to
    :data:`GALLERY_MAX` other pictures (pick galleries) are copied under ``site/runs/slug``."""
    import yaml

    out = site / "runs" / slug
    out.mkdir(parents=True, exist_ok=True)
    options = yaml.safe_load((run / "options.yaml").read_text()) or {}
    val = {}
    if (run / VAL_METRICS).is_file():
        val = json.loads((run / VAL_METRICS).read_text()).get("summary", {})
    epochs = None
    if (run / "metrics.csv").is_file():
        m = pd.read_csv(run / "metrics.csv")
        if "epoch" in m.columns and len(m):
            epochs = int(m["epoch"].max()) + 1
    plots, gallery = [], []
    for name in STANDARD_PLOTS:
        if (run / name).is_file():
            _copy(run / name, out / name)
            plots.append(f"runs/{slug}/{name}")
    others = sorted(p for p in run.rglob("*.png") if p.name not in STANDARD_PLOTS
                    or p.parent != run)
    for i, p in enumerate(others[:GALLERY_MAX]):
        dest = out / f"gallery_{i:02d}_{p.name}"
        _copy(p, dest)
        gallery.append({"src": f"runs/{slug}/{dest.name}", "name": str(p.relative_to(run))})
    return {"slug": slug, "path": str(run), "name": run.name, "options": options, "val": val,
            "epochs": epochs, "plots": plots, "gallery": gallery}


def _copy(src: Path, dest: Path) -> None:
    st = src.stat()
    if dest.is_file() and dest.stat().st_size == st.st_size and \
            dest.stat().st_mtime_ns == st.st_mtime_ns:
        return  # unchanged since the last report
    shutil.copy2(src, dest)


def evaluate_imported(cat: Catalog, pid: int, sets: pd.DataFrame,
                      box_size: float | None) -> list[dict]:
    """Each imported set (no job) of the project scored against the project's most curated
    stage (excluding rejected) on the micrographs that stage covers. Matching radius: half
    the particle diameter, taken as 0.6 × the median extraction box (px), 20 px without one."""
    imported = sets[sets["job_id"].isna()]
    curated = sets[sets["job_id"].notna() & (sets["stage"] != "rejected2d")]
    if imported.empty or curated.empty:
        return []
    order = {s: i for i, s in enumerate(STAGES)}
    stage = max(curated["stage"], key=lambda s: order.get(s, -1))
    from trainers.evaluate import evaluate_picks

    mics = cat.micrographs([pid]).set_index("id")["key"]
    truth = cat.particles(curated[curated["stage"] == stage]["id"])
    truth = truth.drop_duplicates(["micrograph_id", "x", "y"])
    truth["micrograph"] = truth["micrograph_id"].map(mics)
    radius = 0.5 * (0.6 * box_size if box_size else 40.0)
    out = []
    for s in imported.itertuples():
        picks = cat.particles([int(s.id)])
        picks["micrograph"] = picks["micrograph_id"].map(mics)
        cols = ["micrograph", "x", "y"] + (["score"] if picks["score"].notna().any() else [])
        res = evaluate_picks(picks[cols], truth[["micrograph", "x", "y"]], radius,
                             micrographs=sorted(truth["micrograph"].unique()))
        sm = res.summary
        out.append({"set": s.name, "set_id": int(s.id), "against": stage, "radius": radius,
                    **{k: None if sm.get(k) is None else float(sm[k])
                       for k in ("precision", "recall", "f1", "auprc", "rmse")},
                    **{k: int(sm.get(k) or 0) for k in ("micrographs", "n_picks", "n_truth")}})
    return out
