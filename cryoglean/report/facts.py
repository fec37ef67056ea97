"""What the report shows, read from the catalog as plain dicts (no HTML here)."""

from __future__ import annotations

import datetime as _dt

import pandas as pd

from harvest.catalog import Catalog
from harvest.catalog import problems as problem_state
from harvest.conventions import STAGES
from harvest.show import ls_data

#: (words in the message, what to do), first match wins.
ADVICE = (
    ("permission denied", "give the crawling account read access to it; the next crawl "
                          "reads it again"),
    ("micrographs referenced", "the micrographs were archived or moved: exports that need no "
                               "image still work; restore them for image exports and thumbnails"),
    ("metafile", "restore the missing file (or delete the job in its package); the next "
                 "crawl resolves the problem when the job's files change"),
    ("missing", "restore the missing file (or delete the job in its package); the next "
                "crawl resolves the problem when the job's files change"),
    ("no job.json", "the job folder is gone or incomplete: restore it or remove it from the "
                    "project in its package"),
    ("cannot read", "the file is unreadable or not what its package writes: check it "
                    "(truncated copy? other version?); the next crawl tries again"),
    ("cannot parse", "the job's files could not be parsed: check them; the job is tried "
                     "again on every crawl"),
)


def advice(error: str) -> str:
    """What to do about a problem, from its message."""
    low = (error or "").lower()
    for words, what in ADVICE:
        if words in low:
            return what
    return "fix or remove the file; the next crawl reads it again"


def _value(v, kind=float):
    """A number, or None for NaN/NA/None."""
    return None if v is None or pd.isna(v) else kind(v)


def _seconds(start, end) -> float | None:
    try:
        a = _dt.datetime.fromisoformat(str(start).replace("Z", "+00:00"))
        b = _dt.datetime.fromisoformat(str(end).replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return None
    return (b - a).total_seconds()


def facility(cat: Catalog, project_ids: list[int] | None = None) -> dict:
    """Projects (as ``cryoglean ls --json`` plus open problems), crawl history with
    durations, every open problem with what to do."""
    projects = ls_data(cat, project_ids)  # stored totals: no count row is read
    history = problem_state.crawl_history(cat.conn)
    crawls = []
    for r in history.itertuples():
        crawls.append({"id": int(r.id), "started_at": r.started_at, "finished_at": r.finished_at,
                       "projects": r.projects, "new_jobs": r.new_jobs,
                       "new_particles": r.new_particles, "problems": r.problems,
                       "seconds": _seconds(r.started_at, r.finished_at)})
    problems = problem_state.open_problems(cat.conn)
    if project_ids is not None:
        problems = problems[problems["project_id"].isna()
                            | problems["project_id"].isin(project_ids)]
    rows = [{"project_id": None if pd.isna(r.project_id) else int(r.project_id),
             "job": r.job_key, "path": r.path, "error": r.error, "advice": advice(r.error)}
            for r in problems.itertuples()]
    stages = [s for s in STAGES if any(s in p["stages"] for p in projects)]
    return {"projects": projects, "crawls": crawls, "problems": rows, "stages": stages}


def funnel(stage_totals: dict[str, int]) -> list[tuple[str, int]]:
    """(stage, particles) in curation order, only the stages the project has."""
    return [(s, int(stage_totals[s])) for s in STAGES if s in stage_totals]


def project(cat: Catalog, pid: int) -> dict:
    """Jobs (with the most curated stage of their sets), edges, funnel, micrograph table rows,
    the values of the histograms."""
    jobs = cat.jobs([pid])
    sets = cat.particle_sets(project_ids=[pid])
    order = {s: i for i, s in enumerate(STAGES)}
    order["rejected2d"] = -1  # a selection job's colour is what it kept
    best: dict[int, str] = {}
    for s in sets.itertuples():
        if pd.notna(s.job_id):
            j = int(s.job_id)
            if j not in best or order.get(s.stage, -1) > order.get(best[j], -1):
                best[j] = s.stage
    job_rows = [{"id": int(j.id), "key": j.key, "kind": j.kind, "raw_type": j.raw_type,
                 "status": j.status, "stage": best.get(int(j.id))} for j in jobs.itertuples()]
    edges = [(int(e.parent_id), int(e.child_id)) for e in cat.job_edges([pid]).itertuples()]
    mics = cat.micrographs([pid])
    counts = cat.stage_counts(pid)
    wide = (counts.pivot(index="micrograph_id", columns="stage", values="count")
            if len(counts) else pd.DataFrame())
    stages = [s for s in STAGES if s in wide.columns]
    per_mic = wide[stages].fillna(0).astype(int).to_dict("index") if stages else {}
    rows = []
    for m in mics.to_dict("records"):  # plain dicts: ~50x faster than pandas scalar access
        du, dv = _value(m["defocus_u"]), _value(m["defocus_v"])
        rows.append({"id": int(m["id"]), "key": m["key"], "abs_path": m["abs_path"],
                     "nx": _value(m["nx"], int), "ny": _value(m["ny"], int),
                     "pixel_size": _value(m["pixel_size"]),
                     "defocus": None if du is None else (du + (dv if dv is not None else du)) / 2,
                     "ctf_max_res": _value(m["ctf_max_res"]),
                     "total_motion": _value(m["total_motion"]),
                     "stages": per_mic.get(m["id"], dict.fromkeys(stages, 0))})
    external = [{"id": int(s.id), "name": s.name, "count": int(s.count)}
                for s in sets.itertuples() if pd.isna(s.job_id)]
    box = sets["box_size"].dropna()
    return {"jobs": job_rows, "edges": edges, "micrographs": rows, "stages": stages,
            "sets": sets, "external": external,
            "box_size": float(box.median()) if len(box) else None}


def particle_digests(cat: Catalog, pid: int) -> dict[int, str]:
    """{micrograph id: text naming the particle sets on it and their counts}: what a thumbnail
    shows changes only with this (a re-parsed job's sets get new ids), read in one query."""
    rows = cat.conn.execute(
        "SELECT c.micrograph_id, c.set_id, c.count FROM set_counts c JOIN particle_sets s "
        "ON s.id = c.set_id WHERE s.project_id = ? ORDER BY c.micrograph_id, c.set_id",
        (int(pid),)).fetchall()
    out: dict[int, list[str]] = {}
    for mid, sid, n in rows:
        out.setdefault(int(mid), []).append(f"{sid}:{n}")
    return {k: ",".join(v) for k, v in out.items()}


def fingerprint(cat: Catalog, p: dict, extra: str = "") -> str:
    """A digest of everything a project page shows (its ``cryoglean ls`` row but the crawl
    time, jobs, edges, sets, particles per micrograph, micrograph metadata, which micrograph
    files are readable (path, size, mtime), open problems) plus ``extra``: an unchanged
    project's page is not built again. A few cheap queries and one stat per micrograph."""
    import hashlib
    import json
    import os

    pid = int(p["id"])
    h = hashlib.sha1(extra.encode())
    row = {k: v for k, v in p.items() if k != "last_crawl"}
    h.update(json.dumps(row, sort_keys=True, default=str).encode())
    for sql in (
        "SELECT id, key, kind, raw_type, status, parsed_at FROM jobs WHERE project_id = ? "
        "ORDER BY id",
        "SELECT e.parent_id, e.child_id FROM job_edges e JOIN jobs j ON j.id = e.child_id "
        "WHERE j.project_id = ? ORDER BY 1, 2",
        "SELECT id, job_id, name, stage, class_id, count, box_size FROM particle_sets "
        "WHERE project_id = ? ORDER BY id",
        "SELECT c.set_id, c.micrograph_id, c.count FROM set_counts c JOIN particle_sets s "
        "ON s.id = c.set_id WHERE s.project_id = ? ORDER BY 1, 2",
        "SELECT id, key, nx, ny, pixel_size, defocus_u, defocus_v, ctf_max_res, total_motion "
        "FROM micrographs WHERE project_id = ? ORDER BY id",
    ):
        h.update(repr(cat.conn.execute(sql, (pid,)).fetchall()).encode())
    for (path,) in cat.conn.execute(
            "SELECT abs_path FROM micrographs WHERE project_id = ? ORDER BY id", (pid,)):
        try:
            st = os.stat(path) if path else None
        except OSError:
            st = None
        h.update(f"{path}:{st.st_size}:{st.st_mtime_ns}|".encode("utf-8", "surrogateescape")
                 if st else f"{path}:-|".encode("utf-8", "surrogateescape"))
    h.update(problem_state.open_problems(cat.conn, pid).drop(columns=["id", "crawl_id"]).to_csv().encode())
    return h.hexdigest()
