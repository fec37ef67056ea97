"""``watch``'s event bookkeeping: events map to project roots, bursts become one batch after
the debounce, the catalog's own files and excluded folders are ignored. (The end-to-end watch
run, new job and SIGTERM, is in test_crawl_robust.py.)"""

from __future__ import annotations

import time

from harvest.watch import _FULL, _Pending


def test_events_map_to_projects_and_debounce():
    p = _Pending(ignore_prefix="/data/catalog.db", excludes=["scratch"])
    p.set_known(["/data/lab/P1", "/data/lab/P1/exports/P2", "/data/lab/P10"])
    for i in range(200):  # a burst of events in one job folder
        p.add_path(f"/data/lab/P1/J7/file_{i}.cs")
    p.add_path("/data/lab/P1/exports/P2/J1/job.json")  # nested project: the longest root
    p.add_path("/data/lab/P10/default_pipeline.star")  # not confused with P1
    p.add_path("/data/catalog.db-wal")  # the catalog's own writes
    p.add_path("/data/lab/scratch/tmp.txt")  # excluded
    assert p.take_if_quiet(debounce=60) is None  # still within the debounce
    time.sleep(0.05)
    batch = p.take_if_quiet(debounce=0.01)
    assert batch == {"/data/lab/P1", "/data/lab/P1/exports/P2", "/data/lab/P10"}
    assert p.take_if_quiet(debounce=0) is None  # taken
    p.add_path("/data/lab/new-project/project.json")  # unknown: rediscover everything
    time.sleep(0.02)
    assert p.take_if_quiet(debounce=0.01) == {_FULL}
