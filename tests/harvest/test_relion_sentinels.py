"""One rule for RELION's "no value" (−999) and class numbers, in a crawl and in an import:
−999 is missing, classes are stored as RELION numbers them (1-based), and ``export --class 1``
selects RELION's class 1."""

from __future__ import annotations

import numpy as np

from converters.importer import import_picks
from converters.select import SelectionOptions, select_labels
from harvest.catalog import Catalog
from harvest.crawl import crawl

STAR = """
data_particles

loop_
_rlnMicrographName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnAutopickFigureOfMerit #4
_rlnClassNumber #5
MotionCorr/job002/Movies/mic_0001.mrc 100.0 120.0 -999 2
MotionCorr/job002/Movies/mic_0001.mrc 200.0 220.0 0.75 1
MotionCorr/job002/Movies/mic_0002.mrc 300.0 150.0 0.5 -999
"""


def test_import_keeps_classes_and_reads_minus_999_as_missing(facility, tmp_path):
    db = tmp_path / "c.db"
    crawl([facility.projects["relion31"]], db, progress=False)
    path = tmp_path / "picks.star"
    path.write_text(STAR)
    res = import_picks(db, "star", path, "relion31", "mine")
    with Catalog(db, readonly=True) as cat:
        p = cat.particles([res.set_id]).sort_values("x")
    assert np.isnan(p["score"].iloc[0]) and p["score"].iloc[1] == 0.75  # −999: no score
    assert p["class_id"].tolist() == [2, 1, -1]  # kept as RELION numbers them; −999: none


def test_export_class_1_is_relions_class_1(facility, tmp_path):
    db = tmp_path / "c.db"
    crawl([facility.projects["relion40"]], db, progress=False)
    with Catalog(db, readonly=True) as cat:
        sel = select_labels(cat, SelectionOptions(stage="classified3d", classes=(1,)))
        sets = cat.particle_sets(set_ids=sel.positives["set_id"].unique())
    assert set(sets["name"]) == {"class_1"} and set(sel.positives["class_id"]) == {1}
    truth = facility.expected_sets("relion40")
    (want,) = [e["count"] for e in truth if e["name"] == "class_1"]
    assert len(sel.positives) == want
