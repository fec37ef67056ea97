"""The generated facility processes the same exposures in five projects (CryoSPARC and RELION
3.0/3.1/4/5): an export of all of them must put each exposure on one side of the split."""

from __future__ import annotations

from collections import defaultdict

import pytest

from converters.export import ExportOptions, export
from harvest.crawl import crawl


@pytest.fixture(scope="module")
def db(facility, tmp_path_factory):
    path = tmp_path_factory.mktemp("leak") / "catalog.db"
    crawl([str(facility.root)], path, progress=False)
    return path


@pytest.mark.parametrize("split_by", ["micrograph", "project"])
def test_each_exposure_on_one_side(db, tmp_path, split_by):
    opts = ExportOptions(images="none", split_by=split_by, val_fraction=0.3, seed=1)
    if split_by == "project":
        with pytest.raises(ValueError, match="shares exposures"):
            export(db, "star", tmp_path / "p", opts)  # every project holds the same exposures
        return
    man = export(db, "star", tmp_path / "m", opts).manifest
    sides = defaultdict(set)
    projects = defaultdict(set)
    for m in man["micrographs"]:
        sides[m["key"]].add(m["split"])
        projects[m["key"]].add(m["project_id"])
    assert max(len(p) for p in projects.values()) >= 2  # the premise: shared exposures
    assert all(len(s) == 1 for s in sides.values()), dict(sides)
    assert {"train", "val"} == set().union(*sides.values())
    assert man["split"]["shared_exposures"] == len(man["micrographs"]) - len(sides)
