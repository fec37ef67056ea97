"""Views of the catalog for ``cryoglean ls`` and ``cryoglean show PROJECT``: plain text
(:func:`ls_text`, :func:`show_text`) and JSON-ready dicts (:func:`ls_data`, :func:`show_data`).

Counts come from stored aggregates: per-project stage totals (``Catalog.project_stage_totals``,
a few rows per project) and jobs per project from the jobs index; ``show`` reads one project's
per-micrograph counts. No particle row is read. Text output escapes control characters
(:func:`printable`): a title or path written by someone else cannot forge a row."""

from __future__ import annotations

import pandas as pd

from harvest.catalog import Catalog
from harvest.catalog.problems import open_problems
from harvest.conventions import STAGES


def printable(text) -> str:
    """``text`` with every character that is not printable (newline, tab, escape sequences,
    bidirectional overrides, lone surrogates of undecodable names) written as a Python escape
    (``\\n``, ``\\x1b``, ``\\u202e``): one value stays on one line and shows what it holds."""
    text = "" if text is None else str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace")
                   .decode("ascii") for c in text)


def _table(rows: list[list], header: list[str]) -> str:
    cells = [[printable(c) for c in header]] + [[printable(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _strip_prefix(text: str, prefix: str) -> str:
    return text[len(prefix):] if text.startswith(prefix) else text


def _num(v) -> str:
    return "" if v is None or (isinstance(v, float) and pd.isna(v)) else f"{int(v):,}"


def ls_text(cat: Catalog) -> str:
    """One line per project: id, software, version, status, jobs, particles per stage, root."""
    projects = cat.projects()
    if projects.empty:
        return f"catalog {cat.path} holds no projects yet (run `cryoglean crawl ROOT --db ...`)"
    njobs = cat.job_counts()
    totals = cat.project_stage_totals()
    present = [s for s in STAGES if s in set(totals["stage"])] if not totals.empty else []
    by = {(int(r.project_id), r.stage): int(r.count) for r in totals.itertuples()}
    rows = []
    for p in projects.itertuples():
        rows.append([p.id, p.software, p.version or "", p.status, njobs.get(p.id, 0),
                     *[_num(by.get((p.id, s))) for s in present], p.title or "", p.root])
    return _table(rows, ["id", "software", "version", "status", "jobs", *present, "title",
                         "root"])


def show_text(cat: Catalog, spec: str | int) -> str:
    """Jobs of one project (kind, status, sets with stage and count, parents), then per
    micrograph how many particles reached each stage."""
    pid = cat.find_project(spec)
    p = cat.projects().set_index("id").loc[pid]
    out = [f"project {pid}: {printable(p['title'])} ({p['software']} {p['version']}, "
           f"{p['status']})", f"root: {printable(p['root'])}", f"last crawl: {p['last_crawl']}",
           ""]
    jobs = cat.jobs([pid])
    edges = cat.job_edges([pid])
    key_of = dict(zip(jobs["id"], jobs["key"]))
    parents: dict[int, list[str]] = {}
    for e in edges.itertuples():
        parents.setdefault(e.child_id, []).append(key_of.get(e.parent_id, "?"))
    sets = cat.particle_sets(project_ids=[pid])
    rows = []
    for j in jobs.itertuples():
        js = sets[sets["job_id"] == j.id]
        text = ", ".join(
            f"{s.name} [{s.stage}{'' if pd.isna(s.class_id) else f' class {int(s.class_id)}'}]"
            f" {s.count:,}" for s in js.itertuples()
        )
        rows.append([j.key, j.kind, j.raw_type, j.status, text, " ".join(parents.get(j.id, []))])
    out.append(_table(rows, ["job", "kind", "type", "status", "particle sets", "parents"]))
    ext = sets[sets["job_id"].isna()]
    if len(ext):
        out += ["", "imported sets:"]
        out += [f"  set {s.id}: {printable(s.name)} [{s.stage}] {s.count:,}"
                for s in ext.itertuples()]
    problems = open_problems(cat.conn, pid)
    if len(problems):
        out += ["", f"problems at the last crawl that read this project, still open "
                    f"({len(problems)}):"]
        out += [f"  {printable(r.path)}: {printable(_strip_prefix(r.error, r.path + ': '))}"
                for r in problems.itertuples()]
    counts = cat.stage_counts(pid)
    out.append("")
    if counts.empty:
        out.append("no particles")
        return "\n".join(out)
    mics = cat.micrographs([pid]).set_index("id")
    wide = counts.pivot(index="micrograph_id", columns="stage", values="count")
    present = [s for s in STAGES if s in wide.columns]
    rows = []
    for mid, r in wide[present].iterrows():
        rows.append([mics.at[mid, "key"] if mid in mics.index else mid,
                     *[_num(r[s]) for s in present]])
    out.append(_table(rows, ["micrograph", *present]))
    return "\n".join(out)


def _plain(v):
    """A JSON-ready value: NaN/NA as None, numpy scalars as Python ones."""
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    return v.item() if hasattr(v, "item") else v


def _records(df: pd.DataFrame) -> list[dict]:
    return [{k: _plain(v) for k, v in row.items()} for row in df.to_dict("records")]


def ls_data(cat: Catalog, project_ids: list[int] | None = None) -> list[dict]:
    """Per project (all, or ``project_ids``): id, root, software, version, title, status,
    last_crawl, jobs, particles per stage (``stages``), open problems."""
    projects = cat.projects()
    if project_ids is not None:
        projects = projects[projects["id"].isin([int(i) for i in project_ids])]
    njobs = cat.job_counts(project_ids)
    totals = cat.project_stage_totals(project_ids)
    stages: dict[int, dict[str, int]] = {}
    for r in totals.itertuples():
        stages.setdefault(int(r.project_id), {})[r.stage] = int(r.count)
    if project_ids is not None and len(project_ids) == 1:
        open_by = {int(project_ids[0]): len(open_problems(cat.conn, int(project_ids[0])))}
    else:
        open_by = open_problems(cat.conn).groupby("project_id").size().to_dict()
    out = []
    for p in _records(projects):
        pid = p["id"]
        p["jobs"] = int(njobs.get(pid, 0))
        p["stages"] = stages.get(pid, {})
        p["problems"] = int(open_by.get(pid, 0))
        out.append(p)
    return out


def show_data(cat: Catalog, spec: str | int) -> dict:
    """One project: its row, jobs (with parents), particle sets, open problems, and per
    micrograph the particles per stage."""
    pid = cat.find_project(spec)
    project = ls_data(cat, [pid])[0]
    jobs = cat.jobs([pid])
    key_of = dict(zip(jobs["id"], jobs["key"]))
    parents: dict[int, list[str]] = {}
    for e in cat.job_edges([pid]).itertuples():
        parents.setdefault(e.child_id, []).append(key_of.get(e.parent_id, "?"))
    job_rows = _records(jobs)
    for j in job_rows:
        j["parents"] = parents.get(j["id"], [])
    counts = cat.stage_counts(pid)
    mics = cat.micrographs([pid]).set_index("id")["key"]
    per_mic: dict[str, dict[str, int]] = {}
    for r in counts.itertuples():
        per_mic.setdefault(str(mics.get(r.micrograph_id, r.micrograph_id)), {})[r.stage] = \
            int(r.count)
    return {"project": project, "jobs": job_rows,
            "particle_sets": _records(cat.particle_sets(project_ids=[pid])),
            "problems": _records(open_problems(cat.conn, pid)), "micrographs": per_mic}
