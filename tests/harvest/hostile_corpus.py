"""The hostile-facility corpus: one generated facility per fault, each crawled by ``cryoglean
crawl`` in a subprocess with a time limit, the outcome compared with a clean crawl.

A fault is a row of :data:`FAULTS` (:class:`Fault`): a name, a builder that damages a fresh copy
of the base facility, and what the crawl must say: the exact problem rows (path relative to the
site folder, a regex on the error), the exit code, and which projects/jobs may differ from the
clean crawl (everything else must have the same particle counts). Other helpers add rows
(value faults, ...) by appending to :data:`FAULTS` or passing their own list to
:func:`run_corpus`.

Layout of one fault's site (the crawl root is ``site/fac``; its siblings are traps that a crawl
must never open or store)::

    site/fac/                 the facility: cryosparc/CS-cryoglean-demo, relion30, relion40
    site/trap.fifo            a FIFO: opening it blocks, so a crawl that opens it hangs
    site/secret.txt, .cs      TRAP_SECRET inside: must never reach the catalog
    site/outside/             a complete RELION project outside the roots: never in the catalog

Nothing outside ``site/fac`` may be read: the trap FIFO hangs a crawl that opens it, and
:func:`arm_traps` lets :func:`judge` see any other file outside that was read (access times).

Outcomes: ``clean`` (all as expected), ``silent`` (an expected problem row is missing, or data
lost without one), ``crash`` (a traceback or an unexpected exit code), ``hang`` (the time limit
passed), ``wrong`` (anything else: extra problem rows, leaked secrets, outside projects).

Long module: the fault table, its builders and the judge belong together, so that other work
adds faults in one place.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
TRAP_SECRET = "root:x:0:0:TRAP-SECRET-7f3a"
PROJECTS = {"cryosparc": "cryosparc/CS-cryoglean-demo", "relion30": "relion30",
            "relion40": "relion40"}
OUTCOMES = ("clean", "silent", "crash", "hang", "wrong")
WHOLE = "*"  # in Fault.changed: the whole project may be absent or differ


@dataclass(frozen=True)
class Site:
    """One fault's folder: ``fac`` is the crawl root."""

    dir: Path

    @property
    def fac(self) -> Path:
        return self.dir / "fac"

    def proj(self, name: str) -> Path:
        return self.fac / PROJECTS[name]


@dataclass(frozen=True)
class Fault:
    """One hostile input. ``problems``: (path relative to the site folder, regex on the error),
    each matched by exactly one problem row and no other row allowed. ``changed``: project
    name (key of :data:`PROJECTS`, or a path relative to ``fac``) → job keys whose sets may
    differ from the clean crawl (:data:`WHOLE`: the whole project). ``extra``: more checks on
    the catalog, returning failures. ``env``: environment of the crawl."""

    name: str
    item: str  # the issue item it reproduces (issue 14)
    build: Callable[[Site], None]
    problems: tuple[tuple[str, str], ...] = ()
    changed: Mapping[str, Sequence[str]] = field(default_factory=dict)
    exit_code: int = 3
    env: Mapping[str, str] = field(default_factory=dict)
    extra: Callable[[Site, sqlite3.Connection], list[str]] | None = None


@dataclass
class Outcome:
    fault: str
    status: str
    details: list[str] = field(default_factory=list)
    seconds: float = 0.0


# ------------------------------------------------------------------------------------------
# Base facility, reference crawl
# ------------------------------------------------------------------------------------------


def make_base(dest: Path) -> Path:
    """The base facility (small: 2 micrographs; CryoSPARC, RELION 3.0 and 4.0) at ``dest``."""
    from harvest.synth import FacilityConfig, make_facility

    make_facility(dest, FacilityConfig(n_micrographs=2,
                                       versions=("cryosparc", "relion30", "relion40")))
    return dest


def new_site(base: Path, where: Path) -> Site:
    """A fresh copy of ``base`` as ``where/fac`` with the traps beside it."""
    site = Site(where)
    where.mkdir(parents=True)
    shutil.copytree(base, site.fac, symlinks=True)
    os.mkfifo(where / "trap.fifo")
    (where / "secret.txt").write_text(TRAP_SECRET + "\n")
    (where / "secret.cs").write_text(TRAP_SECRET + "\n")
    shutil.copytree(base / PROJECTS["relion30"], where / "outside", symlinks=True)
    return site


def arm_traps(site: Site) -> dict[str, int]:
    """Set the access time of every regular file outside ``site/fac`` an hour before its
    modification time; with ``relatime`` (and ``strictatime``) mounts, reading a file then
    moves its access time, so :func:`judge` sees any file outside the root that was read
    (on a ``noatime`` mount the check sees nothing; the trap FIFO still hangs a crawl that
    opens it). Returns path → the access time set."""
    stamps: dict[str, int] = {}
    for dirpath, dirnames, filenames in os.walk(site.dir):
        if Path(dirpath) == site.dir:
            dirnames[:] = [d for d in dirnames if d != "fac"]
        for f in filenames:
            p = os.path.join(dirpath, f)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                old = st.st_mtime_ns - 3600 * 10**9
                os.utime(p, ns=(old, st.st_mtime_ns), follow_symlinks=False)
                stamps[p] = old
    return stamps


def crawl_counts(db: Path, fac: Path) -> dict[str, dict[tuple[str, str], int]]:
    """Project (path relative to ``fac``) → {(job key, set name): particle count}."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        out: dict[str, dict[tuple[str, str], int]] = {}
        for (root,) in con.execute("SELECT root FROM projects"):
            out[os.path.relpath(root, fac)] = {}
        rows = con.execute(
            "SELECT p.root, j.key, s.name, s.count FROM particle_sets s "
            "JOIN jobs j ON j.id = s.job_id JOIN projects p ON p.id = j.project_id")
        for root, job, name, count in rows:
            out.setdefault(os.path.relpath(root, fac), {})[(job, name)] = count
        return out
    finally:
        con.close()


def run_crawl(site: Site, db: Path, env: Mapping[str, str] = {}, timeout: float = 60.0):
    """``cryoglean crawl site/fac`` in a subprocess: CompletedProcess, or None when it hung."""
    full = dict(os.environ)
    full["PYTHONPATH"] = os.pathsep.join([str(REPO), full.get("PYTHONPATH", "")]).rstrip(
        os.pathsep)
    full.update(env)
    cmd = [sys.executable, "-m", "cryoglean.cli", "crawl", str(site.fac), "--db", str(db),
           "--json", "--quiet"]
    try:
        return subprocess.run(cmd, cwd=REPO, env=full, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


# ------------------------------------------------------------------------------------------
# Judging one crawl
# ------------------------------------------------------------------------------------------


def _catalog_text(con: sqlite3.Connection) -> str:
    return "\n".join(con.iterdump())


def judge(fault: Fault, site: Site, db: Path, proc, clean: dict,
          traps: Mapping[str, int] = {}) -> Outcome:
    out = Outcome(fault.name, "clean")
    if proc is None:
        out.status = "hang"
        out.details.append("the crawl did not finish in time")
        return out
    if "Traceback" in proc.stderr or proc.returncode not in (0, 3, fault.exit_code):
        out.status = "crash"
        out.details.append(f"exit {proc.returncode}: {proc.stderr.strip()[-800:]}")
        return out
    silent: list[str] = []
    wrong: list[str] = []
    read = sorted(os.path.relpath(p, site.dir) for p, atime in traps.items()
                  if os.stat(p).st_atime_ns != atime)
    if read:
        wrong.append(f"files outside the crawl root were read: {read}")
    if proc.returncode != fault.exit_code:
        (silent if proc.returncode == 0 else wrong).append(
            f"exit {proc.returncode}, expected {fault.exit_code}")
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = [(os.path.relpath(p, site.dir), e)
                for p, e in con.execute("SELECT path, error FROM problems")]
        used = [False] * len(rows)
        for path, pattern in fault.problems:
            hits = [i for i, (p, e) in enumerate(rows)
                    if p == path and re.search(pattern, e) and not used[i]]
            if not hits:
                silent.append(f"no problem row for {path} ~ {pattern!r}")
                continue
            used[hits[0]] = True
        extra_rows = [r for r, u in zip(rows, used) if not u]
        if extra_rows:
            wrong.append(f"unexpected problem rows: {extra_rows}")
        text = _catalog_text(con)
        if "TRAP-SECRET" in text or "root:x" in text:
            wrong.append("file content (a trap secret) is in the catalog")
        roots = [r for (r,) in con.execute("SELECT root FROM projects")]
        outside = [r for r in roots if not r.startswith(str(site.fac) + "/")
                   and r != str(site.fac)]
        if outside:
            wrong.append(f"projects outside the crawl root: {outside}")
        if fault.extra is not None:
            wrong.extend(fault.extra(site, con))
    finally:
        con.close()
    got = crawl_counts(db, site.fac)
    changed = {PROJECTS.get(k, k): set(v) for k, v in fault.changed.items()}
    for proj, sets in clean.items():
        allowed = changed.get(proj, set())
        if WHOLE in allowed:
            continue
        have = got.get(proj)
        if have is None:
            silent.append(f"project {proj} missing from the catalog")
            continue
        for key, count in sets.items():
            if key[0] in allowed:
                continue
            if have.get(key) != count:
                silent.append(f"{proj} {key}: {have.get(key)} particles, clean crawl {count}")
    if silent:
        out.status = "silent"
    elif wrong:
        out.status = "wrong"
    out.details = silent + wrong
    return out


def run_fault(fault: Fault, base: Path, work: Path, clean: dict, timeout: float = 60.0
              ) -> Outcome:
    import time

    site = new_site(base, work / fault.name / "site")
    try:
        fault.build(site)
    except Exception as exc:  # noqa: BLE001 - a broken builder is the corpus's bug: say so
        return Outcome(fault.name, "wrong", [f"builder failed: {type(exc).__name__}: {exc}"])
    traps = arm_traps(site)
    start = time.monotonic()
    proc = run_crawl(site, work / fault.name / "catalog.db", fault.env, timeout)
    outcome = judge(fault, site, work / fault.name / "catalog.db", proc, clean, traps)
    outcome.seconds = time.monotonic() - start
    return outcome


def run_corpus(faults: Sequence[Fault], work: Path, timeout: float = 60.0, workers: int = 2
               ) -> tuple[list[Outcome], dict[str, int]]:
    """Every fault's outcome and the totals (inputs, clean, silent, crash, hang, wrong)."""
    base = make_base(work / "base" / "fac")
    ref_site = new_site(base, work / "reference" / "site")
    proc = run_crawl(ref_site, work / "reference" / "catalog.db", timeout=timeout)
    if proc is None or proc.returncode != 0:
        raise AssertionError(f"the clean crawl failed: {proc and proc.stderr[-2000:]}")
    clean = crawl_counts(work / "reference" / "catalog.db", ref_site.fac)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(pool.map(lambda f: run_fault(f, base, work, clean, timeout), faults))
    totals = {"inputs": len(outcomes)}
    totals.update({k: sum(o.status == k for o in outcomes) for k in OUTCOMES})
    return outcomes, totals


def report(outcomes: Sequence[Outcome], totals: Mapping[str, int]) -> str:
    lines = ["hostile-facility corpus (crawl): " + ", ".join(f"{k} {v}" for k, v in
                                                            totals.items())]
    for o in outcomes:
        lines.append(f"  {o.status:6s} {o.fault} ({o.seconds:.1f} s)"
                     + "".join(f"\n         {d}" for d in o.details))
    return "\n".join(lines)


def write_report(path: str | os.PathLike, outcomes: Sequence[Outcome],
                 totals: Mapping[str, int]) -> None:
    Path(path).write_text(json.dumps({
        "totals": dict(totals),
        "faults": [{"fault": o.fault, "status": o.status, "details": o.details,
                    "seconds": round(o.seconds, 2)} for o in outcomes],
    }, indent=2) + "\n")


# ------------------------------------------------------------------------------------------
# Builders
# ------------------------------------------------------------------------------------------


def _rel(site: Site, path: Path) -> str:
    return os.path.relpath(path, site.dir)


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _socket(path: Path) -> None:
    """A unix socket at ``path`` (bound from its folder: socket paths are short)."""
    path.unlink()
    here = os.getcwd()
    os.chdir(path.parent)
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path.name)
        s.close()
    finally:
        os.chdir(here)


def _job_json(site: Site, job: str) -> Path:
    return site.proj("cryosparc") / job / "job.json"


def _edit_json(site: Site, job: str, change: Callable[[dict], None]) -> None:
    p = _job_json(site, job)
    doc = json.loads(p.read_text())
    change(doc)
    p.write_text(json.dumps(doc))


def _set_metafiles(value) -> Callable[[dict], None]:
    def change(doc: dict) -> None:
        for r in doc["output_results"]:
            if r.get("group_name") == "particles" and not r.get("passthrough"):
                r["metafiles"] = value
    return change


def _main_cs(site: Site, job: str) -> Path:
    doc = json.loads(_job_json(site, job).read_text())
    return site.proj("cryosparc") / next(
        r["metafiles"][-1] for r in doc["output_results"]
        if r.get("group_name") == "particles" and not r.get("passthrough"))


def _star_rows(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, count))


def _escape_link(site: Site) -> None:
    os.symlink("/", site.fac / "escape")
    os.symlink("..", site.fac / "up")  # the site folder: traps and an outside project
    os.symlink(site.fac, site.fac / "loop")


def _job_dir_link(site: Site) -> None:
    """RELION's Extract/job006 replaced by a link to a copy outside the roots."""
    job = site.proj("relion40") / "Extract" / "job006"
    outside = site.dir / "outside-job006"
    shutil.copytree(job, outside, symlinks=True)
    shutil.rmtree(job)
    os.symlink(outside, job)


def _cs_file_link(site: Site) -> None:
    p = _main_cs(site, "J5")
    p.unlink()
    os.symlink(site.dir / "secret.cs", p)


def _cs_micrograph_escape(site: Site) -> None:
    """Two particles of J5 name a micrograph outside the roots (``../../../secret.txt``)."""
    p = _main_cs(site, "J5")
    arr = np.load(p)
    path = arr["location/micrograph_path"].copy()
    path[:2] = b"../../../secret.txt"
    arr["location/micrograph_path"] = path
    with open(p, "wb") as fh:
        np.save(fh, arr)


def _deep_json(site: Site) -> None:
    _job_json(site, "J5").write_text('{"uid": "J5", "x": ' + "[" * 100000 + "]" * 100000 + "}")


def _twins(site: Site) -> None:
    """A non-UTF-8 folder and its backslash-escaped twin, each with a copy of relion40 (at the
    same depth, so its relative links still resolve)."""
    base = os.fsencode(str(site.fac))
    for name in (b"caf\xe9", b"caf\\xe9"):
        shutil.copytree(os.fsencode(str(site.proj("relion40"))), os.path.join(base, name),
                        symlinks=True)


def _twins_stored(site: Site, con: sqlite3.Connection) -> list[str]:
    clean = crawl_counts_con(con, site.fac)
    want = clean.get("relion40")
    bad = []
    twins = [k for k in clean if k.startswith("caf")]
    if len(twins) != 2:
        bad.append(f"expected 2 twin projects, catalog has {twins}")
    for t in twins:
        if clean[t] != want:
            bad.append(f"twin {t}: {sum(clean[t].values())} particles, relion40 "
                       f"{sum(want.values())}")
    return bad


def crawl_counts_con(con: sqlite3.Connection, fac: Path) -> dict:
    out: dict[str, dict] = {}
    for root, job, name, count in con.execute(
            "SELECT p.root, j.key, s.name, s.count FROM particle_sets s "
            "JOIN jobs j ON j.id = s.job_id JOIN projects p ON p.id = j.project_id"):
        out.setdefault(os.path.relpath(root, fac), {})[(job, name)] = count
    return out


def _pipeline_process_escape(site: Site) -> None:
    p = site.proj("relion40") / "default_pipeline.star"
    _star_rows(p, "Class2D/job011/         None relion.class2d       Failed",
               "Class2D/job011/         None relion.class2d       Failed\n"
               "../../outside/Extract/job006/  None relion.extract  Succeeded\n"
               "/etc/  None relion.extract  Succeeded")


def _coords_index_escape(site: Site) -> None:
    p = site.proj("relion40") / "AutoPick" / "job005" / "autopick.star"
    _star_rows(p, "AutoPick/job005/Movies/mic_0002_autopick.star", "../../trap.fifo")


def _star_micrograph_escape(site: Site) -> None:
    p = site.proj("relion40") / "Extract" / "job006" / "particles.star"
    _star_rows(p, " MotionCorr/job002/Movies/mic_0001.mrc ", " ../../secret.txt ", 3)


def _suffix_escape(site: Site) -> None:
    """RELION 3.0 coords_suffix file naming a micrographs STAR outside the project."""
    p = site.proj("relion30") / "AutoPick" / "job005" / "coords_suffix_autopick.star"
    p.write_text("../../secret.txt\n")


def _relion_bad_star(site: Site) -> None:
    p = site.proj("relion40") / "Extract" / "job006" / "particles.star"
    p.write_text("data_particles\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n"
                 "12.0\nnot-a-number 7 8 9\n\x00\x01garbage\n")


def _cs_truncated(site: Site) -> None:
    p = _main_cs(site, "J5")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _cs_garbage(site: Site) -> None:
    _main_cs(site, "J5").write_bytes(b"root:x:0:0:" + os.urandom(2000))


CS = PROJECTS["cryosparc"]
R30 = PROJECTS["relion30"]
R40 = PROJECTS["relion40"]
J5_CS = f"fac/{CS}/J5/picked_particles.cs"
EXTRACT40 = f"fac/{R40}/Extract/job006/particles.star"
# Jobs whose sets derive from the RELION 4.0 Extract output (re-read by Select for rejects)
R40_EXTRACT = ("Extract/job006",)

FAULTS: list[Fault] = [
    # item 1: files that are not regular files
    Fault("relion-particles-star-fifo", "1",
          lambda s: _fifo(s.proj("relion40") / "Extract/job006/particles.star"),
          ((EXTRACT40, r"FIFO"),), {"relion40": R40_EXTRACT}),
    Fault("relion-particles-star-folder", "1",
          lambda s: _folder(s.proj("relion40") / "Extract/job006/particles.star"),
          ((EXTRACT40, r"is a folder"),), {"relion40": R40_EXTRACT}),
    Fault("relion-coordinates-fifo", "1",
          lambda s: _fifo(s.proj("relion40") / "AutoPick/job005/Movies/mic_0002_autopick.star"),
          ((f"fac/{R40}/AutoPick/job005/Movies/mic_0002_autopick.star", r"FIFO"),),
          {"relion40": ("AutoPick/job005",)}),
    Fault("relion30-coordinates-socket", "1",
          lambda s: _socket(s.proj("relion30") / "AutoPick/job005/Movies/mic_0002_autopick.star"),
          ((f"fac/{R30}/AutoPick/job005/Movies/mic_0002_autopick.star", r"socket"),),
          {"relion30": ("AutoPick/job005",)}),
    Fault("relion-pipeline-fifo", "1,5",
          lambda s: _fifo(s.proj("relion40") / "default_pipeline.star"),
          ((f"fac/{R40}/default_pipeline.star", r"marker is a FIFO"),), {"relion40": WHOLE}),
    Fault("relion-pipeline-folder", "5",
          lambda s: _folder(s.proj("relion40") / "default_pipeline.star"),
          ((f"fac/{R40}/default_pipeline.star", r"marker is a folder"),), {"relion40": WHOLE}),
    Fault("cryosparc-project-json-fifo", "1,5",
          lambda s: _fifo(s.proj("cryosparc") / "project.json"),
          ((f"fac/{CS}/project.json", r"marker is a FIFO"),), {"cryosparc": WHOLE}),
    Fault("cryosparc-project-json-folder", "5",
          lambda s: _folder(s.proj("cryosparc") / "project.json"),
          ((f"fac/{CS}/project.json", r"marker is a folder"),), {"cryosparc": WHOLE}),
    Fault("cryosparc-job-json-fifo", "1",
          lambda s: _fifo(_job_json(s, "J5")),
          ((f"fac/{CS}/J5/job.json", r"cannot read job.json: .*FIFO"),), {"cryosparc": ("J5",)}),
    Fault("cryosparc-cs-fifo", "1",
          lambda s: _fifo(_main_cs(s, "J5")),
          ((J5_CS, r"FIFO"),), {"cryosparc": ("J5",)}),
    Fault("relion-slow-file", "1",
          lambda s: None,
          ((EXTRACT40, r"per-file budget"),), {"relion40": R40_EXTRACT},
          env={"CRYOGLEAN_FILE_BUDGET": "5",
               "CRYOGLEAN_TEST_STALL": "relion40/Extract/job006/particles.star=6"}),
    # items 2 and 3: leaving the facility
    Fault("symlinks-to-root-parent-and-loop", "2", _escape_link, (), {}, exit_code=0),
    Fault("relion-job-folder-links-outside", "3", _job_dir_link,
          ((EXTRACT40, r"outside the crawl roots"),), {"relion40": R40_EXTRACT}),
    Fault("cryosparc-metafile-dotdot", "3",
          lambda s: _edit_json(s, "J5", _set_metafiles(["../../../secret.cs"])),
          ((f"fac/{CS}/J5/job.json", r"leaves the crawl roots"),), {"cryosparc": ("J5",)}),
    Fault("cryosparc-metafile-trap-fifo", "1,3",
          lambda s: _edit_json(s, "J5", _set_metafiles(["../../../trap.fifo"])),
          ((f"fac/{CS}/J5/job.json", r"leaves the crawl roots"),), {"cryosparc": ("J5",)}),
    Fault("cryosparc-metafile-absolute", "3",
          lambda s: _edit_json(s, "J5", _set_metafiles(["/etc/passwd"])),
          ((f"fac/{CS}/J5/job.json", r"leaves the crawl roots"),), {"cryosparc": ("J5",)}),
    Fault("cryosparc-cs-links-outside", "3", _cs_file_link,
          ((J5_CS, r"outside the crawl roots"),), {"cryosparc": ("J5",)}),
    Fault("cryosparc-micrograph-path-dotdot", "3", _cs_micrograph_escape,
          ((J5_CS, r"2 of \d+ particles .* outside the crawl roots"),), {"cryosparc": ("J5",)}),
    Fault("relion-pipeline-process-outside", "3", _pipeline_process_escape,
          ((f"fac/{R40}/default_pipeline.star", r"2 process\(es\) named outside the project"),),
          {}),
    Fault("relion-coordinate-index-outside", "3", _coords_index_escape,
          (("trap.fifo", r"outside the crawl roots"),), {"relion40": ("AutoPick/job005",)}),
    Fault("relion-star-micrograph-dotdot", "3", _star_micrograph_escape,
          ((EXTRACT40, r"\d+ of \d+ particles .* outside the crawl roots"),),
          {"relion40": R40_EXTRACT}),
    Fault("relion30-coords-suffix-outside", "3", _suffix_escape,
          (("secret.txt", r"outside the crawl roots"),), {"relion30": ("AutoPick/job005",)}),
    # item 5: whole projects lost or merged, silent drops
    Fault("cryosparc-job-json-outputs-not-a-list", "5",
          lambda s: _edit_json(s, "J5", lambda d: d.update(output_results={"a": 1})),
          ((f"fac/{CS}/J5/job.json", r"cannot read job.json: 'output_results' is dict"),),
          {"cryosparc": ("J5",)}),
    Fault("cryosparc-job-json-wrong-types", "5",
          lambda s: _edit_json(s, "J5", lambda d: d.update(parents=5, input_slot_groups=[7])),
          ((f"fac/{CS}/J5/job.json", r"cannot read job.json: malformed \(AttributeError"),),
          {"cryosparc": ("J5",)}),
    Fault("cryosparc-job-json-deep-nesting", "5", _deep_json,
          ((f"fac/{CS}/J5/job.json", r"nested too deeply"),), {"cryosparc": ("J5",)}),
    Fault("cryosparc-job-json-truncated", "5",
          lambda s: _job_json(s, "J5").write_text('{"uid": "J5", "type": '),
          ((f"fac/{CS}/J5/job.json", r"cannot read job.json"),), {"cryosparc": ("J5",)}),
    Fault("cryosparc-metafiles-int", "5",
          lambda s: _edit_json(s, "J5", _set_metafiles(12)),
          ((f"fac/{CS}/J5/job.json", r"'metafiles' is int"),), {"cryosparc": ("J5",)}),
    Fault("non-utf8-folder-and-escaped-twin", "5", _twins, (), {}, exit_code=0,
          extra=_twins_stored),
    Fault("relion30-autopick-coordinates-missing", "5",
          lambda s: (s.proj("relion30") / "AutoPick/job005/Movies/mic_0002_autopick.star"
                     ).unlink(),
          ((f"fac/{R30}/AutoPick/job005/Movies/mic_0002_autopick.star",
            r"1 coordinate files expected from AutoPick/job005 are missing"),),
          {"relion30": ("AutoPick/job005",)}),
    Fault("relion40-indexed-coordinates-missing", "5",
          lambda s: (s.proj("relion40") / "AutoPick/job005/Movies/mic_0002_autopick.star"
                     ).unlink(),
          ((f"fac/{R40}/AutoPick/job005/Movies/mic_0002_autopick.star",
            r"1 coordinate files listed by AutoPick/job005 are missing"),),
          {"relion40": ("AutoPick/job005",)}),
    # faults tested before issue 14, kept in the corpus
    Fault("cryosparc-cs-truncated", "-", _cs_truncated, ((J5_CS, r"truncated"),),
          {"cryosparc": ("J5",)}),
    Fault("cryosparc-cs-garbage", "3", _cs_garbage, ((J5_CS, r"unknown magic bytes"),),
          {"cryosparc": ("J5",)}),
    Fault("relion-malformed-star", "-", _relion_bad_star,
          ((f"fac/{R40}/Extract/job006", r"particles.star:5: row has 1 fields"),),
          {"relion40": R40_EXTRACT}),
]
