"""Build the static report site: ``index.html`` (the facility), ``projects/P.html`` (one per
project), ``runs.html`` (training runs), ``thumbs/`` (cached thumbnails), ``runs/`` (copied
plots). Every link is relative and nothing is loaded from elsewhere, so the site opens from
``file://`` and from any web server."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from cryoglean import __version__
from cryoglean.report import facts, runs, svg
from cryoglean.report.thumbs import cache_key, make_thumbnail
from harvest.catalog import Catalog
from harvest.catalog import problems as problem_state
from harvest.progress import Progress

#: Thumbnails per project page (readable micrographs, in catalog order).
THUMBNAILS = 12


@dataclass
class ReportSummary:
    site: str
    projects: int = 0
    pages: int = 0
    thumbnails_made: int = 0
    thumbnails_cached: int = 0
    pages_unchanged: int = 0
    unreadable_micrographs: int = 0
    runs: int = 0
    evaluations: int = 0
    problems: int = 0
    seconds: float = 0.0
    page_files: list[str] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("page_files")
        d["seconds"] = round(self.seconds, 3)
        return d

    def line(self) -> str:
        return (f"report {self.site}/index.html: {self.projects} projects "
                f"({self.pages_unchanged} unchanged), {self.runs} runs, "
                f"{self.thumbnails_made} new + {self.thumbnails_cached} cached thumbnails, "
                f"{self.problems} open problems in {self.seconds:.1f} s")


def _env():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("cryoglean.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )
    env.filters["num"] = lambda v, fmt="{:,}": "" if v is None or v != v else fmt.format(v)
    env.filters["svg"] = lambda text: __import__("markupsafe").Markup(text)
    return env


def build_report(db: str | os.PathLike, out: str | os.PathLike,
                 run_dirs: list[str | os.PathLike] = (), projects: list[str] = (),
                 thumbnails: int = THUMBNAILS, progress: bool = True) -> ReportSummary:
    """Write the site for catalog ``db`` into folder ``out`` (created; files of an earlier
    report are replaced, its thumbnails reused while their micrograph and particles are
    unchanged). ``projects``: only these (ids, roots or titles). Returns a summary."""
    t0 = time.monotonic()
    site = Path(out)
    site.mkdir(parents=True, exist_ok=True)
    (site / "projects").mkdir(exist_ok=True)
    summary = ReportSummary(site=str(site))
    env = _env()
    with Catalog(db, readonly=True) as cat:
        pids = sorted({cat.find_project(p) for p in projects}) if projects else None
        fac = facts.facility(cat, pids)
        summary.projects, summary.problems = len(fac["projects"]), len(fac["problems"])
        evaluations: dict[int, list] = {}
        used: set[str] = set()
        state_file = site / STATE
        old = _read_state(state_file)
        state: dict[str, dict] = {}
        extra = f"{__version__}|{thumbnails}|{_templates_digest()}"
        bar = Progress(len(fac["projects"]), "report", "projects", enabled=progress)
        for p in fac["projects"]:
            fp = facts.fingerprint(cat, p, extra)
            page_path = site / "projects" / f"{p['id']}.html"
            prev = old.get(str(p["id"]))
            if (prev and prev["fingerprint"] == fp and page_path.is_file()
                    and all((site / "thumbs" / t).is_file() for t in prev["thumbs"])):
                ev, names = prev["evaluations"], prev["thumbs"]  # nothing it shows changed
                summary.pages_unchanged += 1
                summary.thumbnails_cached += len(names)
            else:
                before = set(used)
                page, ev = _project_page(env, cat, p, site, thumbnails, summary, used)
                names = sorted(used - before)
                _write(page_path, page, summary)
            used.update(names)
            state[str(p["id"])] = {"fingerprint": fp, "thumbs": names, "evaluations": ev}
            evaluations[p["id"]] = ev
            summary.evaluations += len(ev)
            bar.update(1)
        bar.close()
        if pids is not None:  # a partial report keeps the other projects' state
            state = {**old, **state}
            used.update(t for v in old.values() for t in v["thumbs"])
        _write_state(state_file, state)
    run_rows = [runs.read_run(r, site, f"run{i:03d}")
                for i, r in enumerate(runs.find_runs(list(run_dirs)))]
    summary.runs = len(run_rows)
    by_project = {p["id"]: p for p in fac["projects"]}
    _write(site / "index.html", env.get_template("facility.html.j2").render(
        fac=fac, evaluations=evaluations, by_project=by_project, runs=run_rows,
        generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"), db=str(db)), summary)
    _write(site / "runs.html", env.get_template("runs.html.j2").render(runs=run_rows), summary)
    for old in (site / "thumbs").glob("*.*") if (site / "thumbs").is_dir() else ():
        if old.name not in used:  # a micrograph or its particles changed: its old picture
            old.unlink()
    summary.seconds = time.monotonic() - t0
    return summary


STATE = ".report-state.json"  # per project: fingerprint, thumbnails, evaluations


def _read_state(path: Path) -> dict:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # no earlier report (or a damaged state file): build every page


def _write_state(path: Path, state: dict) -> None:
    import json

    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, default=str))
    os.replace(tmp, path)


def _templates_digest() -> str:
    import hashlib
    from importlib import resources

    h = hashlib.sha1()
    folder = resources.files("cryoglean.report") / "templates"
    for name in sorted(f.name for f in folder.iterdir() if f.name.endswith(".j2")):
        h.update((folder / name).read_bytes())
    return h.hexdigest()


def _write(path: Path, text: str, summary: ReportSummary) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    summary.pages += 1
    summary.page_files.append(str(path))


def _project_page(env, cat: Catalog, p: dict, site: Path, limit: int,
                  summary: ReportSummary, used: set[str]) -> tuple[str, list]:
    pf = facts.project(cat, p["id"])
    funnel = facts.funnel(p["stages"])
    mics = pf["micrographs"]
    radius = 0.3 * pf["box_size"] if pf["box_size"] else 20.0
    thumbs = []
    stage_of = dict(zip(pf["sets"]["id"], pf["sets"]["stage"]))
    digests = facts.particle_digests(cat, p["id"])
    for m in mics:
        if len(thumbs) >= limit:
            break
        if not m["abs_path"] or not os.path.isfile(m["abs_path"]):
            summary.unreadable_micrographs += 1
            continue
        key = cache_key(m["abs_path"], digests.get(m["id"], ""), radius)
        if key is None:
            summary.unreadable_micrographs += 1
            continue
        dest = site / "thumbs" / f"{key}.jpg"
        if dest.is_file():
            summary.thumbnails_cached += 1
        else:
            parts = cat.micrograph_particles(m["id"])
            parts = pd.DataFrame({"stage": parts["set_id"].map(stage_of), "x": parts["x"],
                                  "y": parts["y"]})
            try:
                make_thumbnail(m["abs_path"], parts, radius, dest)
            except (OSError, ValueError):
                summary.unreadable_micrographs += 1
                continue
            summary.thumbnails_made += 1
        used.add(dest.name)
        thumbs.append({"src": f"../thumbs/{dest.name}", "key": m["key"],
                       "counts": m["stages"]})
    missing = sum(1 for m in mics if not m["abs_path"] or not os.path.exists(m["abs_path"]))
    evaluations = runs.evaluate_imported(cat, p["id"], pf["sets"], pf["box_size"])
    hists = [
        svg.histogram([m["defocus"] for m in mics], "defocus", "Å"),
        svg.histogram([m["ctf_max_res"] for m in mics], "CTF fit resolution", "Å"),
        svg.histogram([m["total_motion"] for m in mics], "total motion", "px"),
    ]
    if pf["stages"]:
        top = [s for s in pf["stages"] if s != "rejected2d"][-1:] or pf["stages"][-1:]
        hists.append(svg.histogram([m["stages"].get(top[0], 0) for m in mics],
                                   f"{top[0]} particles per micrograph", ""))
    problems = problem_state.open_problems(cat.conn, p["id"])
    page = env.get_template("project.html.j2").render(
        p=p, pf=pf, funnel=funnel, funnel_svg=svg.funnel(funnel),
        graph_svg=svg.provenance(pf["jobs"], pf["edges"]), hists=hists, thumbs=thumbs,
        missing=missing, evaluations=evaluations, colors=svg.STAGE_COLORS,
        problems=[{"path": r.path, "error": r.error, "job": r.job_key,
                   "advice": facts.advice(r.error)} for r in problems.itertuples()])
    return page, evaluations
