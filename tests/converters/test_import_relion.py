"""RELION's own pick files import (issue 10, item 3): per-micrograph ``*_autopick.star``, the
job's ``autopick.star``/``manualpick.star`` index, the job directory (RELION 4/5 index, 3.x
``coords_suffix``), RELION 5 tomography picks and per-tomogram annotations; and x, y scaled
separately on import (item 8: a THI round trip through downsampled PNGs)."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy.spatial import cKDTree

from converters import export as ex
from converters.importer import import_picks
from converters.select import SelectionOptions
from harvest.catalog import Catalog


@pytest.fixture(scope="module")
def fac(tmp_path_factory):
    """A RELION 5 (tutorial layout: AutoPick/job005/Movies/<mic>_autopick.star), 3.1 and 5
    tomography facility, crawled."""
    from harvest.crawl import crawl
    from harvest.synth import make_facility
    from harvest.synth.config import FacilityConfig

    base = tmp_path_factory.mktemp("relion_picks")
    f = make_facility(base / "fac", FacilityConfig(
        n_micrographs=3, versions=("relion50", "relion31", "relion50_tomo")))
    crawl([f.root], base / "c.db", progress=False)
    return f, base / "c.db"


def _work(db, tmp_path):
    work = tmp_path / "c.db"
    shutil.copy(db, work)
    return work


def _set_positions(db, project, job, name=None):
    """DataFrame[key, x, y] of the crawl's set of ``job`` (or of an imported set id)."""
    with Catalog(db, readonly=True) as cat:
        pid = cat.find_project(project)
        sets = cat.particle_sets(project_ids=[pid])
        sid = name if name is not None else int(sets[sets["job_key"] == job]["id"].iloc[0])
        parts = cat.particles([sid])
        mics = cat.micrographs(project_ids=[pid]).set_index("id")
    return pd.DataFrame({"key": parts["micrograph_id"].map(mics["key"]).to_numpy(),
                         "x": parts["x"].to_numpy(), "y": parts["y"].to_numpy(),
                         "z": parts["z"].to_numpy() if "z" in parts else np.nan})


def _same(a, b, cols=("x", "y")):
    a = a.sort_values(["key", *cols]).reset_index(drop=True)
    b = b.sort_values(["key", *cols]).reset_index(drop=True)
    assert a["key"].tolist() == b["key"].tolist()
    np.testing.assert_allclose(a[list(cols)].to_numpy(), b[list(cols)].to_numpy(), atol=1e-3)


# RELION 3.x has no coordinate index (coords_suffix_autopick.star instead)
@pytest.mark.parametrize("version,what", [("relion50", "file"), ("relion50", "index"),
                                          ("relion50", "job"), ("relion31", "file"),
                                          ("relion31", "job")])
def test_relion_pick_job_imports(fac, tmp_path, version, what):
    f, db = fac
    project = f.projects[version]
    job = project / "AutoPick" / "job005"
    path = {"file": job / "Movies" / "mic_0001_autopick.star",
            "index": job / "autopick.star", "job": job}[what]
    work = _work(db, tmp_path)
    r = import_picks(work, "star", path, str(project), "mine")
    crawled = _set_positions(work, str(project), "AutoPick/job005")
    ours = _set_positions(work, str(project), None, r.set_id)
    if what == "file":
        crawled = crawled[crawled["key"] == "mic_0001"]
    _same(ours, crawled)


def test_relion_pick_file_via_cli(fac, tmp_path):
    from cryoglean.cli import cli

    f, db = fac
    work = _work(db, tmp_path)
    path = f.projects["relion50"] / "AutoPick/job005/Movies/mic_0002_autopick.star"
    r = CliRunner().invoke(cli, ["import", "star", str(path), "--db", str(work), "--project",
                                 str(f.projects["relion50"]), "--name", "auto"])
    assert r.exit_code == 0, r.output
    assert "on 1 micrographs" in r.output


def test_relion5_tomography_picks(fac, tmp_path):
    f, db = fac
    project = f.projects["relion50_tomo"]
    tomo = f.tomograms[0]
    for src in (project / "Picks/job003/particles.star", project / "Picks/job003"):
        work = _work(db, tmp_path)
        r = import_picks(work, "star", src, str(project), "tomo-picks")
        got = _set_positions(work, str(project), None, r.set_id)
        assert set(got["key"]) == {tomo.key}
        larger = tomo.picks[tomo.classes == 0]  # Picks/job003 holds the larger species
        d, _ = cKDTree(larger).query(got[["x", "y", "z"]].to_numpy(float))
        assert len(got) == len(larger) and d.max() < 1e-3


def test_tomogram_annotations_are_named_after_their_tomogram(fac, tmp_path):
    # RELION 5's picker writes annotations/<tomogram>_particles.star (voxels of the tomogram;
    # rlnTomoName only sometimes): the micrograph is the tomogram, never the file name
    from harvest.starwrite import write_star

    f, db = fac
    project = f.projects["relion50_tomo"]
    tomo = f.tomograms[0]
    ann = tmp_path / "annotations"
    xyz = pd.DataFrame(tomo.picks, columns=["rlnCoordinateX", "rlnCoordinateY",
                                            "rlnCoordinateZ"])
    write_star(ann / f"{tomo.key}_particles.star", [("", xyz)], 50001)
    named = ann / "named" / "anything.star"
    write_star(named, [("", xyz.assign(rlnTomoName=tomo.key))], 50001)
    for i, src in enumerate((ann / f"{tomo.key}_particles.star", named)):
        work = _work(db, tmp_path)
        r = import_picks(work, "star", src, str(project), f"ann{i}")
        got = _set_positions(work, str(project), None, r.set_id)
        assert set(got["key"]) == {tomo.key} and len(got) == len(tomo.picks)


def test_thi_round_trip_scales_x_and_y_separately(fac, tmp_path):
    # PNGs 500 px wide: x scale 500/576, y scale int(448*500/576)/448 differ; one factor for
    # both axes put y up to ~1 px off here (3.4 px on a 4k micrograph)
    f, db = fac
    work = _work(db, tmp_path)
    project = f.projects["relion31"]
    opts = ex.ExportOptions(selection=SelectionOptions(projects=(str(project),)), images="png",
                            width=500, val_fraction=0.0)
    res = ex.export(work, "thi", tmp_path / "thi", opts)
    m = res.manifest["micrographs"][0]
    assert m["scale_x"] != m["scale_y"]
    r = import_picks(work, "thi", tmp_path / "thi" / "train" / "labels", str(project), "back")
    got = _set_positions(work, str(project), None, r.set_id)
    truth = f.truth_frame()
    truth = truth[truth["kind"] == "particle"]
    worst = 0.0
    for key, grp in got.groupby("key"):
        t = truth[truth["micrograph"] == key][["x", "y"]].to_numpy(float)
        worst = max(worst, cKDTree(t).query(grp[["x", "y"]].to_numpy(float))[0].max())
    # integer THI rows in 500-px images: half a PNG pixel per axis = 0.58 micrograph px
    assert worst < 0.5 / m["scale_y"] * 2**0.5 + 0.05
    # exactly the written rows over each axis' own scale (one factor: y off by up to 1 px)
    labels = ex.read_labels(tmp_path / "thi")
    scale = {mm["stem"]: (mm["scale_x"], mm["scale_y"]) for mm in res.manifest["micrographs"]}
    want = pd.DataFrame({"key": labels["stem"],
                         "x": labels["x"] / labels["stem"].map(lambda k: scale[k][0]),
                         "y": labels["y"] / labels["stem"].map(lambda k: scale[k][1])})
    _same(got, want)
    # the same from the PNGs themselves (--images): per-axis ratios of the image sizes
    r2 = import_picks(work, "thi", tmp_path / "thi" / "train" / "labels", str(project), "back2",
                      images=tmp_path / "thi" / "train" / "images")
    _same(_set_positions(work, str(project), None, r2.set_id), got)


@pytest.mark.parametrize("name,mic", [
    ("AutoPick/job008/Movies/20170629_00021_frameImage_autopick.star", "20170629_00021_frameImage"),
    ("ManualPick/job004/Movies/mic_0001_manualpick.star", "mic_0001"),
    ("Import/job009/coords/mic_0001_coords.star", "mic_0001"),
    ("Picks/job009/annotations/TS_01_particles.star", "TS_01"),
    ("mic_0001.star", "mic_0001"),
    ("_autopick.star", "_autopick"),  # a suffix alone is a name
])
def test_pick_file_micrograph(name, mic):
    from harvest.conventions import micrograph_key, pick_file_micrograph

    assert pick_file_micrograph(name) == mic
    assert micrograph_key(pick_file_micrograph(name)) == micrograph_key(mic)
