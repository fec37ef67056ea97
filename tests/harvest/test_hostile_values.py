"""Value faults in a facility (issue 14, item 4): garbage values never reach the catalog.

Each case copies the generated facility, spoils values in one file (CryoSPARC
``location/center_*_frac`` NaN, inf, negative or > 1; RELION coordinates ``abc``/``nan``/``inf``
or off the micrograph; MRC headers that do not fit their file) and crawls it through the CLI in
a subprocess with a time limit. Checked for each: the exit code, exactly the expected problem
rows (beyond those of a clean crawl), every particle set not named by a problem row as large as
in the clean crawl (other projects in full), each set that lost rows named by exactly one
problem row with the count, no value outside its valid range in the catalog (SQL on the
catalog's views), no traceback. The totals (inputs, clean, silent, crash, hang) are printed.

``VALUE_FAULTS`` is the table of cases (:class:`ValueFault`), for the hostile-facility corpus.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from harvest.conventions import EDGE_MARGIN

REPO = Path(__file__).resolve().parents[2]
CRAWL_TIMEOUT_S = 120


@dataclass(frozen=True)
class ValueFault:
    """One value fault: ``inject(facility root)`` spoils a copy of the facility; ``problems``:
    (path regex, error regex, rows) of the problem rows the crawl must add, exactly."""

    name: str
    inject: Callable[[Path], None]
    problems: tuple[tuple[str, str, int], ...]
    exit_code: int = 3  # harvest.cli.EXIT_PROBLEMS: a problem row is open


# --- injections -------------------------------------------------------------------------------

CS_PICKS = "cryosparc/CS-cryoglean-demo/J5/picked_particles.cs"
RELION_PICKS = "relion40/AutoPick/job005/Movies/mic_0001_autopick.star"
RELION_PARTICLES = "relion31/Extract/job006/particles.star"
MICROGRAPH = "micrographs/mic_0001.mrc"
CS_MICROGRAPHS = "cryosparc/CS-cryoglean-demo/J2/J2_micrographs.cs"
CS_REFINED = "cryosparc/CS-cryoglean-demo/J9/J9_passthrough_particles.cs"
RELION_REFINED = "relion40/Refine3D/job010/run_data.star"


def _cs_frac(field: str, value: float, rows: int = 3, path: str = CS_PICKS):
    rel = path

    def inject(root: Path) -> None:
        path = root / rel
        arr = np.load(path)
        arr[field][:rows] = value
        with open(path, "wb") as fh:  # np.save would append .npy to a path without it
            np.save(fh, arr)
    return inject


def _star_token(rel: str, column: int, token: str, rows: int = 2):
    """Replace field ``column`` (0-based) of the first ``rows`` data rows of a STAR loop."""
    def inject(root: Path) -> None:
        path = root / rel
        lines = path.read_text().splitlines()
        done = 0
        in_loop = labels = False
        for i, line in enumerate(lines):
            s = line.strip()
            if s == "loop_":
                in_loop, labels = True, False
            elif in_loop and s.startswith("_"):
                labels = True
            elif in_loop and labels and s and not s.startswith("#") and done < rows:
                fields = s.split()
                fields[column] = token
                lines[i] = " ".join(fields)
                done += 1
        assert done == rows, f"{path}: no data rows to spoil"
        path.write_text("\n".join(lines) + "\n")
    return inject


def _star_values(path: Path, block: str, values: dict[str, str], rows: int) -> None:
    """Set ``values`` (by label) in the first ``rows`` data rows of ``block``'s loop."""
    lines = path.read_text().splitlines()
    current, labels, done = None, [], 0
    for i, line in enumerate(lines):
        s = line.strip()
        if s.startswith("data_"):
            current, labels = s, []
        elif s.startswith("_rln"):
            labels.append(s.split()[0][1:])
        elif (current == block and all(k in labels for k in values) and s
              and not s.startswith(("#", "loop_")) and done < rows):
            fields = s.split()
            for label, token in values.items():
                fields[labels.index(label)] = token
            lines[i] = " ".join(fields)
            done += 1
    assert done == rows, f"{path}: no {block} rows to spoil"
    path.write_text("\n".join(lines) + "\n")


def _particles_token(token: str, rel: str = None):
    """``token`` as rlnCoordinateX of the first 2 rows of the particles loop (not the optics)."""
    def inject(root: Path) -> None:
        _star_values(root / (rel or RELION_PARTICLES), "data_particles",
                     {"rlnCoordinateX": token}, 2)
    return inject


def _optics(values: dict[str, str]):
    """Values of the optics row of the RELION particles STAR, by label."""
    def inject(root: Path) -> None:
        _star_values(root / RELION_PARTICLES, "data_optics", values, 1)
    return inject


def _cs_exposure(field: str, value):
    """``value`` in ``field`` of the first micrograph of the motion job (later jobs pass it
    through)."""
    def inject(root: Path) -> None:
        path = root / CS_MICROGRAPHS
        arr = np.load(path)
        arr[field][0] = value
        with open(path, "wb") as fh:
            np.save(fh, arr)
    return inject


def _mrc_header(nx: int, ny: int, nz: int | None = None):
    def inject(root: Path) -> None:
        path = root / MICROGRAPH
        data = bytearray(path.read_bytes())
        data[0:4] = int(nx).to_bytes(4, "little", signed=True)
        data[4:8] = int(ny).to_bytes(4, "little", signed=True)
        if nz is not None:
            data[8:12] = int(nz).to_bytes(4, "little", signed=True)
        path.unlink()  # projects link to it: the link now reaches the spoilt copy
        path.write_bytes(bytes(data))
    return inject


def _grow_to(nbytes: int, inner):
    def inject(root: Path) -> None:
        inner(root)
        path = root / MICROGRAPH
        with open(path, "ab") as fh:
            fh.truncate(nbytes)
    return inject


_CS_ROW = (re.escape(CS_PICKS) + "$", r"^3 of 144 particles of set 'particles' have a position "
           r"that is not finite or lies more than 5% of the micrograph's size outside it", 1)


def _relion_picks_row(n: int = 2):
    return (r"relion40/AutoPick/job005/Movies/mic_0001_autopick\.star$",
            rf"^{n} of 144 particles of set 'coords' have a position that is not finite .* on "
            r"MotionCorr/job002/Movies/mic_0001\.mrc, 576x448 px\); left out$", 1)


# Each RELION project links the spoilt micrograph: one row per job naming it, size from metadata.
_HEADER_ROW = (r"relion\d\d/MotionCorr/job002/Movies/mic_0001\.mrc$",
               r"micrographs referenced by \S+ are missing or unreadable \(e\.g\. "
               r"MotionCorr/job002/Movies/mic_0001\.mrc: MRC header inconsistent with the file "
               r"\(nx=.*header refused, size unknown\); their sizes come from metadata$", None)

# The catalog writer's last guard: one row per job that carries the micrograph (motion, CTF, ...).
def _exposure_row(what: str):
    return (r"cryosparc/CS-cryoglean-demo/J2/motioncorrected/\d+_mic_\d+\S*\.mrc$",
            r"^1 micrographs of J\d+ have sizes or pixel sizes out of range \(e\.g\. "
            + what + r"\); stored as unknown$", None)


VALUE_FAULTS: list[ValueFault] = [
    ValueFault("cryosparc center_x_frac NaN", _cs_frac("location/center_x_frac", np.nan),
               (_CS_ROW,)),
    ValueFault("cryosparc center_y_frac inf", _cs_frac("location/center_y_frac", np.inf),
               (_CS_ROW,)),
    ValueFault("cryosparc center_x_frac -0.64", _cs_frac("location/center_x_frac", -0.64),
               (_CS_ROW,)),
    ValueFault("cryosparc center_y_frac 1.7", _cs_frac("location/center_y_frac", 1.7),
               (_CS_ROW,)),
    ValueFault("relion pick x 'abc'", _star_token(RELION_PICKS, 0, "abc"),
               (_relion_picks_row(),)),
    ValueFault("relion pick x nan", _star_token(RELION_PICKS, 0, "nan"), (_relion_picks_row(),)),
    ValueFault("relion pick y inf", _star_token(RELION_PICKS, 1, "inf"), (_relion_picks_row(),)),
    ValueFault("relion pick x -288", _star_token(RELION_PICKS, 0, "-288"),
               (_relion_picks_row(),)),
    ValueFault("relion pick y 761.6 on 448 px", _star_token(RELION_PICKS, 1, "761.6"),
               (_relion_picks_row(),)),
    ValueFault("relion particle x nan", _particles_token("nan"),
               ((re.escape(RELION_PARTICLES) + "$",
                 r"^2 of 128 particles of set 'particles' have a position that is not finite", 1),)),
    ValueFault("cryosparc micrograph_blob/shape [0, 0]",
               _cs_exposure("micrograph_blob/shape", [0, 0]), (_exposure_row("nx=0, ny=0"),)),
    ValueFault("cryosparc micrograph_blob/shape 2**32-1",
               _cs_exposure("micrograph_blob/shape", [2**32 - 1, 2**32 - 1]),
               (_exposure_row("nx=4294967295, ny=4294967295"),)),
    ValueFault("cryosparc micrograph_blob/psize_A -1",
               _cs_exposure("micrograph_blob/psize_A", -1.0),
               (_exposure_row(r"pixel size -1\.0"),)),
    # recentring sets: the stored position is at fault, not a pixel size or shift (the row
    # names the set's file; the location fields came from its passthrough file)
    ValueFault("cryosparc refined center_x_frac NaN",
               _cs_frac("location/center_x_frac", np.nan, path=CS_REFINED),
               ((r"cryosparc/CS-cryoglean-demo/J9/J9_002_particles\.cs$",
                 r"^3 of 104 particles of set 'particles' have a position that is not finite",
                 1),)),
    ValueFault("relion refined particle x nan", _particles_token("nan", RELION_REFINED),
               ((re.escape(RELION_REFINED) + "$",
                 r"^2 of 104 particles of set 'run_data' have a position that is not finite", 1),)),
    ValueFault("relion optics box -40, amplitude contrast 7",
               _optics({"rlnImageSize": "-40", "rlnAmplitudeContrast": "7"}),
               ((re.escape(RELION_PARTICLES) + "$", r"^set 'particles': box_size=-40, "
                 r"amp_contrast=7\.0 out of range; stored as unknown$", 1),)),
    ValueFault("mrc header nx=-576 ny=0", _mrc_header(-576, 0), (_HEADER_ROW,)),
    ValueFault("mrc header nx=ny=100000 in 1 MB",
               _grow_to(1 << 20, _mrc_header(100000, 100000, 1)), (_HEADER_ROW,)),
]


# --- the runner -------------------------------------------------------------------------------

def crawl_cli(root: Path, db: Path, timeout: float = CRAWL_TIMEOUT_S):
    """``cryoglean crawl ROOT --db DB`` in a subprocess; None when it ran past ``timeout``."""
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    try:
        return subprocess.run([sys.executable, "-m", "cryoglean.cli", "crawl", str(root),
                               "--db", str(db), "--quiet"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def catalog_facts(db: Path, root: Path) -> dict:
    """Problems (facility-relative path, error), set counts by (project, job, set) and the
    number of values outside their valid range (SQL on the catalog's views)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rel = len(str(root)) + 1
        problems = Counter((p[rel:] if p.startswith(str(root)) else p, e)
                           for p, e in con.execute("SELECT path, error FROM problems"))
        counts = {(r[rel:], j, s): c for r, j, s, c in con.execute(
            "SELECT p.root, j.key, s.name, s.count FROM particle_sets s "
            "JOIN jobs j ON j.id = s.job_id JOIN projects p ON p.id = j.project_id")}
        m = EDGE_MARGIN
        off = " OR ".join(
            f"(m.{n} > 0 AND (q.{c} < -{m} * m.{n} OR q.{c} > {1 + m} * m.{n}))"
            for c, n in (("x", "nx"), ("raw_x", "nx"), ("y", "ny"), ("raw_y", "ny")))
        bad_particles = con.execute(
            "SELECT count(*) FROM particles_px q JOIN micrographs m ON m.id = q.micrograph_id "
            "WHERE q.x IS NULL OR q.y IS NULL OR q.raw_x IS NULL OR q.raw_y IS NULL "
            "OR abs(q.x) > 1e9 OR abs(q.y) > 1e9 OR abs(q.score) > 1e300 "
            f"OR {off}").fetchone()[0]
        bad_micrographs = con.execute(
            "SELECT count(*) FROM micrographs WHERE nx <= 0 OR ny <= 0 OR nz <= 0 "
            "OR nx > 1000000 OR ny > 1000000 OR pixel_size <= 0").fetchone()[0]
    finally:
        con.close()
    return {"problems": problems, "counts": counts,
            "out_of_range": bad_particles + bad_micrographs}


def judge(case: ValueFault, res, facts: dict | None, clean: dict) -> tuple[str, list[str]]:
    """Outcome of one case: "hang", "crash" (traceback or wrong exit code), "silent" (garbage
    stored, rows lost without a problem row, or problem rows not as expected) or "clean"; and
    what was wrong."""
    if res is None:
        return "hang", [f"ran past {CRAWL_TIMEOUT_S} s"]
    why = []
    if "Traceback" in res.stderr + res.stdout:
        why.append("traceback: " + res.stderr.strip().splitlines()[-1])
    if res.returncode != case.exit_code:
        why.append(f"exit {res.returncode} (expected {case.exit_code}): {res.stderr.strip()}")
    if why:
        return "crash", why
    new = facts["problems"] - clean["problems"]
    rows = list(new.elements())
    for path_re, error_re, count in case.problems:
        hits = [r for r in rows if re.search(path_re, r[0]) and re.search(error_re, r[1])]
        if not hits or (count is not None and len(hits) != count):
            why.append(f"expected {count or '≥ 1'} problem row(s) {path_re!r}: {error_re!r}; "
                       f"got {len(hits)}")
        rows = [r for r in rows if r not in hits]
    if rows:
        why.append(f"unexpected problem rows: {rows}")
    named = " ".join(e for _, e in new.elements())
    for key, n in clean["counts"].items():
        got = facts["counts"].get(key)
        if got == n:
            continue
        lost = f"{n - got} of {n} particles of set '{key[2]}'" if got is not None else None
        if lost is None or sum(e.count(lost) for _, e in new.elements()) != 1:
            why.append(f"set {key}: {got} particles, clean crawl {n}; no one problem row says "
                       f"{lost!r} ({named[:200]})")
    if facts["out_of_range"]:
        why.append(f"{facts['out_of_range']} values outside their valid range in the catalog")
    return ("silent" if why else "clean"), why


@pytest.fixture(scope="module")
def clean_crawl(facility, tmp_path_factory):
    """The generated facility (copied) and its clean crawl's facts."""
    base = tmp_path_factory.mktemp("hostile_values")
    root = base / "facility"
    shutil.copytree(facility.root, root, symlinks=True)
    res = crawl_cli(root, base / "clean.db")
    assert res is not None and res.returncode == 0, res and res.stderr
    facts = catalog_facts(base / "clean.db", root)
    assert facts["out_of_range"] == 0
    return root, facts


TOTALS: Counter = Counter()


@pytest.mark.slow
@pytest.mark.parametrize("case", VALUE_FAULTS, ids=[c.name for c in VALUE_FAULTS])
def test_value_fault(case, clean_crawl, tmp_path):
    source, clean = clean_crawl
    root = tmp_path / "facility"
    shutil.copytree(source, root, symlinks=True)
    case.inject(root)
    res = crawl_cli(root, tmp_path / "c.db")
    facts = None if res is None or res.returncode not in (0, case.exit_code) or not (
        tmp_path / "c.db").exists() else catalog_facts(tmp_path / "c.db", root)
    if res is not None and facts is None and res.returncode == case.exit_code:
        facts = {"problems": Counter(), "counts": {}, "out_of_range": 0}
    outcome, why = judge(case, res, facts, clean)
    TOTALS["inputs"] += 1
    TOTALS[outcome] += 1
    print(f"value faults: {TOTALS['inputs']} inputs, {TOTALS['clean']} clean, "
          f"{TOTALS['silent']} silent, {TOTALS['crash']} crash, {TOTALS['hang']} hang")
    assert outcome == "clean", f"{case.name}: {outcome}: " + "; ".join(why)


# --- the rules themselves ---------------------------------------------------------------------

def test_positions_valid_margin_and_unknown_sizes():
    from harvest.conventions import positions_valid

    x = np.array([0.0, -0.05 * 448, -0.051 * 448, 1.05 * 448, 1.06 * 448, np.nan, np.inf, -288])
    y = np.full(len(x), 10.0)
    assert positions_valid(x, y, 448, 448).tolist() == [True, True, False, True, False, False,
                                                         False, False]
    # size unknown: only finiteness
    assert positions_valid(x, y, np.nan, None).tolist() == [True] * 5 + [False, False, True]
    z = np.array([0.0, 61.0])
    assert positions_valid([1, 1], [1, 1], 10, 10, z, 20).tolist() == [True, False]


def test_mrc_header_size_refuses_headers_that_do_not_fit(tmp_path):
    import mrcfile

    from harvest.imageio import MicrographError, micrograph_shape, mrc_header_size

    good = tmp_path / "good.mrc"
    with mrcfile.new(good) as mrc:
        mrc.set_data(np.zeros((48, 64), dtype=np.float32))
    assert mrc_header_size(good) == (64, 48, 1)
    for name, (nx, ny, nz), size in (("neg", (-576, 0, 1), None),
                                     ("huge", (100000, 100000, 1), 1 << 20),
                                     ("short", (64, 48, 2), None)):
        bad = tmp_path / f"{name}.mrc"
        data = bytearray(good.read_bytes())
        data[0:12] = np.array([nx, ny, nz], dtype="<i4").tobytes()
        bad.write_bytes(bytes(data))
        if size:
            with open(bad, "ab") as fh:
                fh.truncate(size)
        for read in (mrc_header_size, micrograph_shape):
            with pytest.raises(MicrographError, match=rf"{name}\.mrc: MRC header inconsistent "
                               rf"with the file \(nx={nx}, ny={ny}, nz={nz}"):
                read(bad)


def test_the_rule_reads_x_against_the_width_and_y_against_the_height():
    """A non-square micrograph (700 wide, 400 high): x = 650 is on it, y = 650 is not. A flip of
    the axes anywhere in the check (the per-micrograph rule or the fast path over the smallest
    size) keeps or drops the wrong row."""
    import pandas as pd

    from harvest.conventions import positions_valid
    from harvest.records import ParticleSetRecord
    from harvest.validate import check_particles

    assert positions_valid([650, 100], [100, 650], 700, 400).tolist() == [True, False]
    frame = pd.DataFrame({"micrograph": ["m.mrc"] * 3, "raw_x": [650.0, 100.0, 10.0],
                          "raw_y": [100.0, 650.0, 390.0], "x": [650.0, 100.0, 10.0],
                          "y": [100.0, 650.0, 390.0]})
    pset = ParticleSetRecord("s", "picked", frame, "s.star")
    problems = check_particles(pset, {"m.mrc": (700, 400)})
    assert len(problems) == 1 and "1 of 3 particles" in problems[0].error
    assert pset.particles[["raw_x", "raw_y"]].values.tolist() == [[650.0, 100.0], [10.0, 390.0]]
    wide = ParticleSetRecord("w", "picked", frame.iloc[[0, 2]].copy(), "w.star")
    assert check_particles(wide, {"m.mrc": (700, 400)}) == []  # the fast path keeps both
