"""Malformed files through ``cryoglean import`` (issue 14, item 7): every registry format that
reads × malformed variants of a file its own writer wrote. Iterating the registry, a new format
is covered without edits.

Variants are found without knowing the format: the writer writes the picks twice, once with the
first pick's x moved; the text that differs is where x lives, and it is replaced by ``nan``,
``inf``, ``abc``, a value far off the micrograph on either side, or the line is cut after it
(a truncated row), cut there with the rest of the file (a truncated file), given extra fields;
the file emptied; JSON files get their first list replaced by a number (copick
``"points": 5``).

Each import either refuses with one line naming the file and a non-zero exit, or stores a set
without any value outside its valid range and, where rows were left out, says how many. The
outcomes: clean (either of those), silent (garbage stored, or rows lost without a word), crash
(a traceback, or an error that is not one line naming the file). The totals are printed;
target 0 silent, 0 crash.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from converters import registry
from converters.layout import side_information
from harvest.catalog import Catalog
from harvest.conventions import EDGE_MARGIN
from harvest.records import FileStamp, JobRecord, JobScan, MicrographRecord, ProjectScan

NX, NY, NZ = 200, 150, 60
MICS = ("mic_a", "mic_b")
READABLE = registry.names(capability="read")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _is_3d(fmt: str) -> bool:
    return registry.get(fmt).dims == (3,)


def _picks(fmt: str, first_x: float = 20.0) -> pd.DataFrame:
    rows = [{"micrograph": m, "x": 20.0 + 30 * i, "y": 15.0 + 25 * i, "diameter": 24.0,
             "score": 0.5} for m in MICS for i in range(4)]
    picks = pd.DataFrame(rows)
    picks.loc[0, "x"] = first_x
    if _is_3d(fmt):
        picks["z"] = [3.0 + i for i in range(len(picks))]
    return picks


def _sizes() -> pd.DataFrame:
    return pd.DataFrame({"stem": list(MICS), "out_nx": [NX] * 2, "out_ny": [NY] * 2,
                         "pixel_size": [1.5] * 2, "scale_x": [1.0] * 2})


def _write(fmt: str, dest: Path, first_x: float) -> dict[Path, str]:
    spec = registry.get(fmt)
    opts = {n: side_information(n, _sizes()) for n in spec.write_needs}
    files = registry.write_picks(_picks(fmt, first_x), dest, fmt, **opts)
    return {Path(f).relative_to(dest): Path(f).read_text() for f in files}


def _x_token(fmt: str, tmp: Path) -> tuple[Path, str, int, int]:
    """(file, text, start, end) of the first pick's x in the file the writer wrote."""
    a = _write(fmt, tmp / "a", 20.0)
    b = _write(fmt, tmp / "b", 27.0)
    for rel, text in a.items():
        other = b.get(rel)
        if other is None or other == text:
            continue
        ta, tb = list(_NUMBER.finditer(text)), list(_NUMBER.finditer(other))
        for ma, mb in zip(ta, tb):
            if ma.group() != mb.group():
                return rel, text, ma.start(), ma.end()
    raise AssertionError(f"{fmt}: moving a pick's x changed no number in {list(a)}")


def _first_list_to_number(text: str) -> str | None:
    try:
        doc = json.loads(text)
    except ValueError:
        return None

    def walk(node):
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for k, v in items:
            if isinstance(v, list):
                node[k] = 5
                return True
            if isinstance(v, (dict, list)) and walk(v):
                return True
        return False

    return json.dumps(doc) if isinstance(doc, (dict, list)) and walk(doc) else None


def variants(text: str, start: int, end: int) -> dict[str, str]:
    t = abs(float(text[start:end]))
    line_end = text.find("\n", end)
    line_end = len(text) if line_end < 0 else line_end
    out = {
        "x nan": text[:start] + "nan" + text[end:],
        "x inf": text[:start] + "inf" + text[end:],
        "x abc": text[:start] + "abc" + text[end:],
        "x far below": text[:start] + f"{-(10 * t + 1000):g}" + text[end:],
        "x far above": text[:start] + f"{10 * t + 1000:g}" + text[end:],
        "truncated row": text[:end] + text[line_end:],
        "truncated file": text[:end],
        "extra fields": text[:line_end] + " 7 8 9" + text[line_end:],
        "empty file": "",
    }
    js = _first_list_to_number(text)
    if js is not None:
        out["list is a number"] = js
    return out


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A catalog with a 2D project (micrographs mic_a, mic_b: 200 × 150 px) and a 3D one
    (tomograms of the same names, 200 × 150 × 60)."""
    base = tmp_path_factory.mktemp("import_corpus")
    db = base / "c.db"
    with Catalog(db) as cat:
        for name, nz in (("P2", None), ("P3", NZ)):
            root = base / name
            (root / "J1").mkdir(parents=True)
            (root / "project.json").write_text("{}")
            scan = ProjectScan(root=str(root), software="cryosparc", version="v4", title=name,
                               files=[FileStamp.of(root / "project.json")])
            job = JobScan(key="J1", raw_type="import_micrographs", kind="import_micrographs",
                          status="completed")
            scan.jobs = [job]
            rec = JobRecord(key="J1", raw_type=job.raw_type, kind=job.kind, status="completed",
                            micrographs=[MicrographRecord(
                                path=f"J1/{m}.mrc", abs_path=str(root / "J1" / f"{m}.mrc"),
                                key=m, nx=NX, ny=NY, nz=nz, pixel_size=1.5) for m in MICS])
            with cat.write_project(scan) as w:
                w.put_job(job, rec)
    return db


CASES = []
for _fmt in READABLE:
    for _v in ("x nan", "x inf", "x abc", "x far below", "x far above", "truncated row",
               "truncated file", "extra fields", "empty file", "list is a number"):
        if _v != "list is a number" or ".json" in registry.get(_fmt).extensions:
            CASES.append((_fmt, _v))
TOTALS: Counter = Counter()


def _stored(db: Path, name: str) -> tuple[int, int]:
    """(particles of imported set ``name``, how many have a value outside its range)."""
    with Catalog(db, readonly=True) as cat:
        con = cat.conn
        row = con.execute("SELECT id FROM particle_sets WHERE name = ? AND job_id IS NULL",
                          (name,)).fetchone()
        if row is None:
            return 0, 0
        m = EDGE_MARGIN
        off = " OR ".join(
            f"(m.{n} > 0 AND (q.{c} < -{m} * m.{n} OR q.{c} > {1 + m} * m.{n}))"
            for c, n in (("x", "nx"), ("y", "ny"), ("z", "nz")))
        n, bad = con.execute(
            "SELECT count(*), sum(q.x IS NULL OR q.y IS NULL OR abs(q.score) > 1e300 OR "
            f"{off}) FROM particles_px q JOIN micrographs m ON m.id = q.micrograph_id "
            "WHERE q.set_id = ?", (row[0],)).fetchone()
    return int(n), int(bad or 0)


def judge(result, path: Path, db: Path, clean_count: int) -> tuple[str, str]:
    out = result.output.strip()
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return "crash", f"{type(result.exception).__name__}: {result.exception}"
    if "Traceback" in out:
        return "crash", out[-300:]
    if result.exit_code != 0:
        lines = [s for s in out.splitlines() if s.strip()]
        if len(lines) != 1 or path.name not in lines[0]:
            return "crash", f"exit {result.exit_code}, not one line naming {path.name}: {out!r}"
        return "clean", lines[0]
    n, bad = _stored(db, "corpus")
    if bad:
        return "silent", f"exit 0 and {bad} of {n} stored values out of range: {out!r}"
    if n < clean_count and not re.search(rf"\b{clean_count - n}\b.*(left out|dropped)", out):
        return "silent", f"exit 0, {n} of {clean_count} picks stored without a count: {out!r}"
    return "clean", out


@pytest.mark.parametrize("fmt,variant", CASES, ids=[f"{f}-{v}" for f, v in CASES])
def test_import_malformed(fmt, variant, template, tmp_path):
    from cryoglean.cli import cli

    rel, text, start, end = _x_token(fmt, tmp_path)
    cases = variants(text, start, end)
    assert variant in cases, f"{fmt}: its .json file holds no list"
    src = tmp_path / "a"
    target = src / rel
    target.write_text(cases[variant])
    db = tmp_path / "c.db"
    shutil.copy(template, db)
    project = "P3" if _is_3d(fmt) else "P2"
    result = CliRunner().invoke(cli, ["import", fmt, str(target), "--db", str(db),
                                      "--project", project, "--name", "corpus"])
    clean_count = int((_picks(fmt)["micrograph"] == Path(rel).stem).sum()) or len(_picks(fmt))
    outcome, why = judge(result, target, db, clean_count)
    TOTALS["inputs"] += 1
    TOTALS[outcome] += 1
    print(f"\nimport corpus: {TOTALS['inputs']} inputs, {TOTALS['clean']} clean, "
          f"{TOTALS['silent']} silent, {TOTALS['crash']} crash — {fmt} {variant}: {why}")
    assert outcome == "clean", f"{fmt} / {variant}: {outcome}: {why}"
