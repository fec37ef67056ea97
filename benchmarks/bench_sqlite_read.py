"""Benchmark: what reading an export's particles costs, and where the floor is (issue 15).

The export of ``bench_export_scale.py``'s 10⁶-particle project spends about half its time
reading the two refined sets (J20, J21) from the catalog. This script reads the same rows
several ways, in one process, alternating, on a catalog that script built:

- ``read_centres``: cryoglean's lean read (``harvest.catalog.codec``), three values a row;
- ``3 ints``, ``2 ints``, ``1 int``: the same id ranges through ``sqlite3`` into one int64
  array (``np.fromiter``), with (score, class) packed into one value for ``2 ints`` and only
  the packed centre for ``1 int``: what fewer Python objects per row would save;
- ``fetchall 3 ints``: the rows as a list of tuples (no array), for comparison;
- ``SQLite only``: ``SELECT total(...)`` of the same expressions: SQLite's own cost, no row
  reaching Python;
- ``adbc``: ``adbc-driver-sqlite`` into Arrow, when installed (it is not a dependency: it
  bundles a second SQLite library, see BENCHMARKS.md, Export).

    .venv/bin/python benchmarks/bench_export_scale.py --catalog /work/bigcat/cat_2.8M.db \\
        --build 2800000 --formats topaz --repeat 1 --no-topaz       # once, builds the catalog
    .venv/bin/python benchmarks/bench_sqlite_read.py --catalog /work/bigcat/cat_2.8M.db
"""

from __future__ import annotations

import argparse
import itertools
import sqlite3
import statistics
import time
from pathlib import Path

import numpy as np

_XY = "((p.x + p.dx) << 32) | ((p.y + p.dy) & 4294967295)"
_SC = "(ifnull(p.score, 0) << 16) + ifnull(p.class_id, -1) + 1"
_WHERE = "FROM particle_rows p WHERE p.id BETWEEN ? AND ? ORDER BY p.id"


def _ranges(conn, set_ids):
    return [conn.execute("SELECT min(first_row), max(first_row + count - 1) FROM set_counts "
                         "WHERE set_id = ? AND count > 0", (s,)).fetchone() for s in set_ids]


def main(argv=None) -> int:
    from harvest.catalog import codec

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--catalog", required=True, type=Path)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    uri = f"file:{args.catalog}?mode=ro"
    conn = sqlite3.connect(uri, uri=True)
    sets = [r[0] for r in conn.execute(
        "SELECT s.id FROM particle_sets s JOIN jobs j ON j.id = s.job_id "
        "WHERE s.project_id = 1 AND j.key IN ('J20', 'J21') ORDER BY s.id")]
    if not sets:
        raise SystemExit(f"{args.catalog}: no J20/J21 sets in project 1; build the catalog with "
                         "bench_export_scale.py first")
    ranges = _ranges(conn, sets)
    rows = sum(hi - lo + 1 for lo, hi in ranges)

    def through_python(cols):
        def run():
            return [np.fromiter(itertools.chain.from_iterable(
                conn.execute(f"SELECT {cols} {_WHERE}", r)), dtype=np.int64) for r in ranges]
        return run

    ways = {
        "read_centres (cryoglean)": lambda: [codec.read_centres(conn, s, 1e4) for s in sets],
        "3 ints": through_python(f"{_XY}, ifnull(p.score, 0), ifnull(p.class_id, -1)"),
        "2 ints": through_python(f"{_XY}, {_SC}"),
        "1 int": through_python(_XY),
        "fetchall 3 ints": lambda: [conn.execute(
            f"SELECT {_XY}, ifnull(p.score, 0), ifnull(p.class_id, -1) {_WHERE}", r).fetchall()
            for r in ranges],
        "SQLite only": lambda: [conn.execute(
            f"SELECT total({_XY}), total(ifnull(p.score, 0)), total(ifnull(p.class_id, -1)) "
            "FROM particle_rows p WHERE p.id BETWEEN ? AND ?", r).fetchall() for r in ranges],
    }
    try:
        import adbc_driver_sqlite.dbapi as adbc

        aconn = adbc.connect(uri)

        def arrow():
            out = []
            for r in ranges:
                cur = aconn.cursor()
                cur.execute(f"SELECT {_XY} AS xy, ifnull(p.score, 0) AS s, "
                            f"ifnull(p.class_id, -1) AS c {_WHERE}", r)
                t = cur.fetch_arrow_table()
                out.append(np.column_stack([t.column(i).to_numpy() for i in range(3)]).ravel())
                cur.close()
            return out

        ways["adbc (Arrow, second SQLite)"] = arrow
        same = all(np.array_equal(a, b) for a, b in zip(arrow(), ways["3 ints"]()))
        note = f"adbc gives the same values as sqlite3: {same}"
    except ImportError:
        note = "adbc-driver-sqlite not installed: its row left out"
    times = {k: [] for k in ways}
    for _ in range(args.repeat):
        for k, fn in ways.items():
            c0 = time.process_time()
            fn()
            times[k].append(time.process_time() - c0)
    base = statistics.median(times["read_centres (cryoglean)"])
    print(f"{args.catalog.name}: sets {sets}, {rows:,} rows; SQLite {sqlite3.sqlite_version}; "
          f"median CPU s of {args.repeat}, alternating\n")
    print("| read | CPU s | µs per row | vs read_centres |\n|---|---:|---:|---:|")
    for k, v in times.items():
        m = statistics.median(v)
        print(f"| {k} | {m:.3f} | {1e6 * m / rows:.2f} | {m / base:.2f}× |")
    print(f"\n{note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
