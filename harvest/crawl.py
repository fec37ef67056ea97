"""Incremental crawls: discover projects, parse what changed, write the catalog.

:func:`crawl` holds the catalog's writer lock (``<db>.lock``) for its whole run, walks the roots
(:mod:`harvest.discover`), and for each project:

0. when the catalog holds a fingerprint of the project (:mod:`harvest.fingerprint`) and every
   path it names stats as recorded, the project is unchanged: nothing is opened or parsed;
1. ``scan_project(root)`` (cheap: the project's own bookkeeping);
2. compares every job's status and file stamps (size + mtime_ns) with the catalog; a job is
   parsed (``parse_job``) only when it is completed and new, changed, finished since the last
   crawl, or failed to parse last time;
3. writes the project in ONE transaction (:meth:`Catalog.write_project`): new/updated jobs,
   replaced particle sets of re-parsed jobs, merged micrographs, edges, stamps; jobs no longer in
   the project are marked ``missing`` (rows kept). An unchanged project writes nothing;
4. a project that ends the crawl clean (no problem) gets a new fingerprint, written in batches.

Projects whose marker file has gone are marked ``missing``. Bad input never stops a crawl: every
exception from a parser becomes one ``problems`` row and one log line naming the file and the
reason. The crawler only reads the facility; it writes the catalog and its lock file only.

``CRYOGLEAN_TEST_KILL_AFTER=N`` (tests only) makes the crawler SIGKILL itself at its N-th write
event (a job, a particle set or a commit), to prove that an interrupted crawl leaves the catalog
as it was before the project it was writing.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import pandas as pd

from harvest import fingerprint, fsguard
from harvest.catalog import Catalog, ProjectState, db_text, stamps_equal, writer_lock
from harvest.catalog import problems as problem_state
from harvest.discover import CRYOSPARC_MARKER, RELION_MARKER, FoundProject, classify, discover
from harvest.progress import Progress
from harvest.records import JobRecord, JobScan, Problem, ProjectScan

log = logging.getLogger("harvest.crawl")

PARSERS = {"cryosparc": "harvest.cryosparc", "relion": "harvest.relion"}
MARKERS = {"cryosparc": CRYOSPARC_MARKER, "relion": RELION_MARKER}
KILL_ENV = "CRYOGLEAN_TEST_KILL_AFTER"
FINGERPRINT_BATCH = 500  # fingerprints written per transaction


@dataclass
class CrawlSummary:
    """What one crawl did. ``problems``: problems this crawl found (new rows of the
    ``problems`` table); ``open_problems``: every problem still unresolved after it, found
    tonight or on an earlier night (:mod:`harvest.catalog.problems`): the exit status."""

    projects: int = 0
    new_jobs: int = 0
    new_particles: int = 0
    problems: int = 0
    open_problems: int = 0
    seconds: float = 0.0
    parsed_jobs: int = 0
    missing_projects: int = 0
    crawl_id: int = 0
    unchanged_ids: list[int] = field(default_factory=list, repr=False)
    roots: list[str] = field(default_factory=list, repr=False)  # project roots found (paths)

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("unchanged_ids")
        d.pop("roots")
        d["seconds"] = round(self.seconds, 3)
        return d

    def line(self) -> str:
        return (
            f"crawled {self.projects} projects: {self.new_jobs} new jobs, "
            f"{self.new_particles} new particles, {self.problems} problems in "
            f"{self.seconds:.1f} s" + (f"; {self.open_problems} unresolved problems "
                                       "(`cryoglean show PROJECT` lists them)"
                                       if self.open_problems else "")
        )


def _kill_hook() -> Callable[[str], None] | None:
    value = os.environ.get(KILL_ENV)
    if not value:
        return None
    try:
        limit = int(value)
    except ValueError:
        raise ValueError(f"{KILL_ENV}={value!r} is not an integer") from None
    count = [0]

    def hook(event: str) -> None:
        count[0] += 1
        if count[0] >= limit:
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def _parser(software: str):
    return importlib.import_module(PARSERS[software])


def crawl(
    roots: Sequence[str | os.PathLike],
    db_path: str | os.PathLike,
    excludes: Sequence[str] = (),
    progress: bool = True,
    wait: float = 0.0,
    only: Iterable[str] | None = None,
    should_stop: Callable[[], bool] | None = None,
    scan_workers: int = 4,
    follow_symlinks: str = "within",
) -> CrawlSummary:
    """Crawl ``roots`` into the catalog at ``db_path``; return a :class:`CrawlSummary`.

    Projects are written one at a time, in sorted order; their ``scan_project`` (reading job
    bookkeeping, latency-bound on network storage) runs ``scan_workers`` projects ahead in
    threads. Parsers only read, so that is safe; the catalog is touched by this thread only.

    ``follow_symlinks``: which directory links discovery enters (``within`` the roots, ``never``,
    ``any``; :mod:`harvest.discover`). ``only``: crawl just these project roots (``cryoglean watch``), without walking ``roots``.
    ``should_stop``: checked between projects; a crawl that stops early leaves every project it
    finished committed. Raises :class:`harvest.catalog.CatalogLocked` when another crawl holds
    the lock after ``wait`` seconds.
    """
    start = time.monotonic()
    roots = [os.path.abspath(os.fspath(r)) for r in roots]
    summary = CrawlSummary()
    hook = _kill_hook()
    with writer_lock(db_path, wait=wait), Catalog(db_path) as cat, \
            fsguard.confine(roots, follow_symlinks):
        if only is None:
            # raises for a root that does not exist
            found = discover(roots, excludes, follow_symlinks=follow_symlinks)
            projects, disc_problems = found.projects, found.problems
        else:
            projects, disc_problems = [], []
            for root in sorted({os.path.abspath(r) for r in only}):
                software = classify(root)
                if software is not None:
                    projects.append(FoundProject(root, software))
        crawl_id = cat.start_crawl(roots)
        summary.crawl_id = crawl_id
        summary.roots = [p.root for p in projects]
        for p in disc_problems:
            log.warning("problem: %s", p)
        summary.problems += cat.add_problems(crawl_id, disc_problems)
        bar = Progress(len(projects), "crawl", "projects", enabled=progress)
        prints = _Fingerprints(cat, {p.software for p in projects})
        with ThreadPoolExecutor(max_workers=scan_workers) as pool:
            for found_project, scanned in _prefetch_scans(pool, projects, 2 * scan_workers,
                                                          prints.known):
                if should_stop is not None and should_stop():
                    log.info("stopping: %d projects crawled", summary.projects)
                    pool.shutdown(wait=True, cancel_futures=True)
                    break
                _crawl_project(cat, found_project, scanned, crawl_id, summary, hook, prints)
                summary.projects += 1
                bar.update(1)
        prints.flush()
        bar.close()
        scope = roots if only is None else sorted({os.path.abspath(r) for r in only})
        present = {db_text(p.root) for p in projects}
        summary.missing_projects = _mark_missing_projects(cat, scope, present,
                                                          exact=only is not None)
        summary.seconds = time.monotonic() - start
        cat.finish_crawl(crawl_id, summary.projects, summary.new_jobs, summary.new_particles,
                         summary.problems, unchanged_projects=summary.unchanged_ids)
        summary.open_problems = len(problem_state.open_problems(cat.conn))
    summary.seconds = time.monotonic() - start
    return summary


@dataclass
class _Scanned:
    """What scanning one project gave: a scan with its parser (and the fingerprint of what it
    read, None if it cannot be trusted), a problem, or ``unchanged_id``: the catalog id of a
    project whose fingerprint matched (not scanned)."""

    parser: object = None
    scan: ProjectScan | None = None
    problem: Problem | None = None
    fingerprint: fingerprint.Fingerprint | None = None
    unchanged_id: int | None = None


class _Fingerprints:
    """The crawl's fingerprints: those the catalog holds (:attr:`known`, read once) and those to
    record or forget, written in batches of :data:`FINGERPRINT_BATCH`."""

    def __init__(self, cat: Catalog, softwares: Iterable[str]):
        self.cat = cat
        self.scanners = {s: fingerprint.scanner_id(s) for s in softwares}
        self.known = fingerprint.load(cat.conn, self.scanners)
        self.stored: list[tuple[int, str, fingerprint.Fingerprint]] = []
        self.dropped: list[int] = []

    def record(self, project_id: int, software: str, fp: fingerprint.Fingerprint | None,
               clean: bool) -> None:
        """After a project's full path: keep ``fp`` when the project ended clean, else forget
        any older fingerprint."""
        if fp is not None and clean:
            self.stored.append((project_id, self.scanners[software], fp))
        else:
            self.dropped.append(project_id)
        if len(self.stored) + len(self.dropped) >= FINGERPRINT_BATCH:
            self.flush()

    def flush(self) -> None:
        fingerprint.save(self.cat.conn, self.stored, self.dropped)
        self.stored, self.dropped = [], []


def _scan(found: FoundProject, known: tuple[int, tuple[bytes, bytes]] | None = None) -> _Scanned:
    if known is not None and fingerprint.matches(found.root, known[1]):
        return _Scanned(unchanged_id=known[0])
    try:
        parser = _parser(found.software)
    except ImportError as exc:
        return _Scanned(problem=Problem(found.root,
                                        f"no {found.software} parser available: {exc}"))
    started = time.time_ns()
    try:
        scan = parser.scan_project(found.root)
    except Exception as exc:  # noqa: BLE001 - any parser failure is one problem row
        return _Scanned(problem=Problem(
            found.root, f"cannot read {found.software} project: {_reason(exc)}"))
    fp = None
    if not scan.problems:
        try:
            fp = fingerprint.take(scan, *parser.scan_depends(scan), started_ns=started)
        except Exception as exc:  # noqa: BLE001 - no fingerprint: the next crawl scans again
            log.debug("no fingerprint for %s: %s", found.root, _reason(exc))
    return _Scanned(parser, scan, fingerprint=fp)


def _prefetch_scans(pool: ThreadPoolExecutor, projects: Sequence[FoundProject], ahead: int,
                    known: dict | None = None):
    """(project, _Scanned) in order, with up to ``ahead`` scans running in the pool;
    ``known``: root → (project id, fingerprint) from the catalog."""
    known = known or {}
    window: deque = deque()
    it = iter(projects)
    for p in it:
        window.append((p, pool.submit(_scan, p, known.get(db_text(p.root)))))
        if len(window) >= ahead:
            break
    while window:
        p, fut = window.popleft()
        nxt = next(it, None)
        if nxt is not None:
            window.append((nxt, pool.submit(_scan, nxt, known.get(db_text(nxt.root)))))
        yield p, fut.result()


def _mark_missing_projects(cat: Catalog, scope: Sequence[str], present: set[str],
                           exact: bool) -> int:
    """Projects under ``scope`` that this crawl did not find and whose marker file is gone."""
    projects = cat.projects()
    gone = []
    for r in projects.itertuples():
        if r.status == "missing" or r.root in present:
            continue
        inside = any(r.root == s or (not exact and r.root.startswith(s.rstrip("/") + "/"))
                     for s in (db_text(s) for s in scope))
        if not inside:
            continue
        marker = os.path.join(r.root, MARKERS.get(r.software, CRYOSPARC_MARKER))
        if not os.path.lexists(marker):
            gone.append(r.root)
            log.info("project %s is gone (no %s): marked missing", r.root, marker)
    return cat.mark_missing_projects(gone)


def _job_needs_parse(job: JobScan, state: ProjectState | None) -> bool:
    if not job.harvestable:
        return False
    stored = state.jobs.get(job.key) if state else None
    if stored is None or not stored.harvested or stored.status != job.status:
        return True
    return not stamps_equal(job.files, stored.files)


def _unchanged(scan: ProjectScan, state: ProjectState | None, cat: Catalog) -> bool:
    """True when writing this project would change nothing (the fast path of a re-crawl)."""
    if state is None or state.status != "ok" or scan.problems:
        return False
    row = cat.conn.execute(
        "SELECT software, version, title, uid FROM projects WHERE id = ?", (state.id,)
    ).fetchone()
    if tuple(row) != (scan.software, scan.version, scan.title, scan.uid):
        return False
    if not stamps_equal(scan.files, state.files):
        return False
    keys = {j.key for j in scan.jobs}
    if keys != {k for k, j in state.jobs.items() if j.status != "missing"}:
        return False
    for job in scan.jobs:
        stored = state.jobs[job.key]
        if stored.status != job.status or _job_needs_parse(job, state):
            return False
        if stored.harvested and not job.harvestable:
            return False
    return True


def _crawl_project(cat: Catalog, found: FoundProject, scanned: _Scanned, crawl_id: int,
                   summary: CrawlSummary, hook, prints: _Fingerprints | None = None) -> None:
    if scanned.unchanged_id is not None:
        # the fingerprint matched: unchanged, and it had no problem to carry forward (only
        # projects that ended a crawl clean get a fingerprint)
        summary.unchanged_ids.append(scanned.unchanged_id)
        return
    if scanned.problem is not None:
        log.warning("problem: %s", scanned.problem)
        summary.problems += cat.add_problems(crawl_id, [scanned.problem])
        return
    parser, scan = scanned.parser, scanned.scan
    state = cat.project_state(scan.root)
    since = problem_state.last_visit(cat.conn, state.id) if state is not None else None
    if _unchanged(scan, state, cat):
        summary.unchanged_ids.append(state.id)
        carried = problem_state.carry(cat.conn, crawl_id, state.id, since, reexamined=())
        if prints is not None:
            prints.record(state.id, scan.software, scanned.fingerprint, clean=carried == 0)
        return
    try:
        w, parsed, reexamined = _write_project(cat, parser, scan, state, crawl_id, hook)
    except sqlite3.OperationalError:
        raise  # the catalog itself is in trouble: stop
    except Exception as exc:  # noqa: BLE001 - the project is rolled back; the crawl goes on
        p = Problem(scan.root, f"cannot store project: {_reason(exc)}")
        log.warning("problem: %s", p)
        summary.problems += cat.add_problems(crawl_id, [p])
        if state is not None and prints is not None:
            prints.record(state.id, scan.software, None, clean=False)
        return
    carried = 0
    if state is not None:  # problems of jobs not parsed again are still open
        carried = problem_state.carry(cat.conn, crawl_id, state.id, since, reexamined)
    if prints is not None:
        prints.record(w.project_id, scan.software, scanned.fingerprint,
                      clean=w.problems == 0 and carried == 0)
    summary.new_jobs += w.new_jobs
    summary.new_particles += w.new_particles
    summary.problems += w.problems
    summary.parsed_jobs += parsed


def _write_project(cat: Catalog, parser, scan: ProjectScan, state: ProjectState | None,
                   crawl_id: int, hook):
    """Everything about one project, in one transaction; returns (writer, parsed jobs, keys of
    the jobs it tried to parse)."""
    parsed = 0
    reexamined: list[str] = []
    with cat.write_project(scan, crawl_id, hook) as w:
        for p in scan.problems:
            log.warning("problem: %s", p)
        w.add_problems(scan.problems)
        edges = []
        for job in scan.jobs:
            edges.extend((parent, job.key) for parent in job.parents)
            if not _job_needs_parse(job, state):
                stored = state.jobs.get(job.key) if state else None
                drop = bool(stored and stored.harvested and not job.harvestable)
                w.put_job(job, harvested=False if drop else None)
                continue
            reexamined.append(job.key)
            try:
                record = parser.parse_job(scan, job.key)
            except Exception as exc:  # noqa: BLE001 - one bad job never stops the crawl
                where = os.path.join(scan.root, job.key)
                p = Problem(where, f"cannot parse job {job.key}: {_reason(exc)}")
                log.warning("problem: %s", p)
                w.put_job(job, harvested=False)
                w.add_problems([p], job_key=job.key)
                continue
            record.problems.extend(confine_record(record, scan.root))
            for p in record.problems:
                log.warning("problem: %s", p)
            try:
                w.put_job(job, record)
            except ValueError as exc:  # the record could not be stored; the rest goes on
                p = Problem(os.path.join(scan.root, job.key), str(exc))
                log.warning("problem: %s", p)
                w.add_problems([p], job_key=job.key)
                continue
            parsed += 1
        w.set_edges(edges)
        w.set_project_files(scan.files)
        w.mark_missing_jobs(unreadable=_jobs_named(scan, state))
    return w, parsed, reexamined


def confine_record(record: JobRecord, root: str) -> list[Problem]:
    """Drop what a parsed job names outside the crawl roots (:mod:`harvest.fsguard`):
    micrograph records whose path leaves them, and the particles on such micrographs (one
    Problem per set, with the count); the catalog, and the exports that link to its paths,
    then hold only paths inside the roots. Returns the Problems."""
    if not fsguard.roots():
        return []
    problems: list[Problem] = []
    outside = {m.path for m in record.micrographs if not fsguard.inside(m.abs_path)}
    if outside:
        record.micrographs = [m for m in record.micrographs if m.path not in outside]
    for ps in record.particle_sets:
        mics = ps.particles["micrograph"] if "micrograph" in ps.particles else None
        if mics is None or not len(mics):
            continue
        names = (mics.cat.categories if isinstance(mics.dtype, pd.CategoricalDtype)
                 else pd.unique(mics.to_numpy()))  # one check per micrograph, not per row
        bad = [n for n in names if n in outside or not fsguard.inside(_named_path(root, n))]
        if not bad:
            continue
        keep = ~mics.isin(bad).to_numpy()
        problems.append(Problem(ps.source_file or os.path.join(root, record.key), (
            f"{int((~keep).sum())} of {len(keep)} particles of set '{ps.name}' are on "
            f"{len(bad)} micrograph(s) named outside the crawl roots (first: "
            f"{fsguard.shown(str(bad[0]))!r}); left out")))
        ps.particles = ps.particles[keep].reset_index(drop=True)
    if outside and not problems:
        first = sorted(outside)[0]
        problems.append(Problem(os.path.join(root, record.key), (
            f"{len(outside)} micrograph(s) named outside the crawl roots (first: "
            f"{fsguard.shown(first)!r}); left out")))
    return problems


def _named_path(root: str, name) -> str:
    """The absolute path of a micrograph name as the catalog stores it (CryoSPARC's leading
    ``>`` dropped, relative names joined to the project root)."""
    p = str(name)
    p = p[1:] if p.startswith(">") else p
    return os.path.normpath(p if os.path.isabs(p) else os.path.join(root, p))


def _jobs_named(scan: ProjectScan, state: ProjectState | None) -> set[str]:
    """Known jobs whose folder still exists and that a scan problem points into (e.g. an
    unreadable job.json): present, just not readable this time."""
    if state is None or not scan.problems:
        return set()
    root = scan.root.rstrip("/") + "/"
    return {key for key in state.jobs
            if os.path.isdir(root + key)
            and any(p.path.startswith(root + key + "/") or p.path == root + key
                    for p in scan.problems)}


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, (ValueError, OSError, KeyError)):
        return text
    return f"{type(exc).__name__}: {text}"
