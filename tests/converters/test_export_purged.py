"""Exports from a facility whose micrograph files were purged after (or before) the crawl: every
coordinate format exports without images; formats that need a size take the catalog's or
``--micrograph-size``; the manifest says where each size came from (issue 10, item 1)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.spatial import cKDTree

from converters import export as ex
from converters import registry
from converters.select import SelectionOptions

PROJECTS = ("relion31", "cryosparc")


def _copy(facility, root):
    root.mkdir()
    shutil.copytree(facility.root / "micrographs", root / "micrographs")
    for name in PROJECTS:
        shutil.copytree(facility.projects[name], root / name, symlinks=True)


def _purge(root):
    for p in (root / "micrographs").glob("*.mrc"):
        p.unlink()


@pytest.fixture(scope="module")
def purged(facility, tmp_path_factory):
    """(catalog crawled before the purge, catalog crawled after it, facility root)."""
    from harvest.crawl import crawl

    base = tmp_path_factory.mktemp("purged")
    root = base / "fac"
    _copy(facility, root)
    crawl([root], base / "before.db", progress=False)
    _purge(root)
    crawl([root], base / "after.db", progress=False)
    return base / "before.db", base / "after.db", root


def _export(db, fmt, out, **kw):
    sel_kw = {k: kw.pop(k) for k in list(kw) if k in SelectionOptions.__dataclass_fields__}
    sel_kw.setdefault("projects", ("1",))  # the first project crawled
    return ex.export(db, fmt, out, ex.ExportOptions(selection=SelectionOptions(**sel_kw), **kw))


def _coordinate_formats():
    return [n for n in registry.names(dim=2, capability="write")]


@pytest.mark.parametrize("fmt", _coordinate_formats())
def test_every_format_exports_without_micrographs(purged, facility, tmp_path, fmt):
    _, after, root = purged
    need = "image_size" in registry.get(fmt).write_needs
    size = (facility.config.nx, facility.config.ny) if need else None
    res = _export(after, fmt, tmp_path / "out", images="none", val_fraction=0.0,
                  micrograph_size=size)
    labels = ex.read_labels(res.out_dir)
    assert len(labels) == len(facility.scenario.select("selected"))
    sources = {m["size_source"].split(" ")[0] for m in res.manifest["micrographs"]}
    assert sources <= ({"option", "catalog"} if need else {"unknown", "catalog"})
    # the labels still sit on the particles (no size needed to place them)
    truth = facility.truth_frame()
    truth = truth[truth["kind"] == "particle"]
    for stem, grp in labels.groupby("stem"):
        t = truth[truth["micrograph"] == stem][["x", "y"]].to_numpy(float)
        d, _ = cKDTree(t).query(grp[["x", "y"]].to_numpy(float))
        assert d.max() < 1.0


def test_default_link_mode_keeps_labels(purged, facility, tmp_path):
    _, after, _ = purged
    res = _export(after, "star", tmp_path / "out")
    assert res.manifest["filters"]["images"]["dropped"] == 0
    assert len(res.manifest["images"]["not_linked_missing"]) == len(res.manifest["micrographs"])
    assert all(m["image"] is None for m in res.manifest["micrographs"])


def test_yolo_takes_sizes_from_the_catalog(purged, facility, tmp_path):
    # crawled while the micrographs existed: the catalog holds their sizes
    before, _, _ = purged
    res = _export(before, "yolo", tmp_path / "out", images="none")
    mics = res.manifest["micrographs"]
    assert {m["size_source"].split(" ")[0] for m in mics} == {"catalog"}
    assert res.manifest["sizes"]["sources"] == {"catalog": len(mics)}
    assert {(m["nx"], m["ny"]) for m in mics} == {(facility.config.nx, facility.config.ny)}


def test_yolo_takes_sizes_from_metadata_when_the_files_are_gone(purged, facility, tmp_path):
    # crawled after the purge: the crawl kept the sizes the projects' metadata records
    _, after, _ = purged
    res = _export(after, "yolo", tmp_path / "out", images="none")
    mics = res.manifest["micrographs"]
    assert {m["size_source"] for m in mics} == {"catalog (metadata)"}
    assert {(m["nx"], m["ny"]) for m in mics} == {(facility.config.nx, facility.config.ny)}


def test_yolo_without_any_size_says_which_in_one_line(purged, facility, tmp_path):
    _, after, _ = purged
    import sqlite3

    db = tmp_path / "nosize.db"
    shutil.copy(after, db)
    with sqlite3.connect(db) as conn:  # as if no metadata held a size either
        conn.execute("UPDATE micrographs SET nx = NULL, ny = NULL")
    with pytest.raises(ex.ExportError) as err:
        _export(db, "yolo", tmp_path / "out", images="none")
    msg = str(err.value)
    assert "\n" not in msg and "--micrograph-size" in msg and "mic_0001" in msg
    n = len({k for k in facility.scenario.select("selected")["micrograph"]})
    assert f"unknown for {n} (" in msg
    res = _export(db, "yolo", tmp_path / "out", images="none",
                  micrograph_size=(facility.config.nx, facility.config.ny))
    assert res.manifest["sizes"]["sources"] == {"option": n}
    assert list(res.manifest["sizes"]["micrograph_size_option"]) == [facility.config.nx,
                                                                     facility.config.ny]
    # the flip needs the heights too
    with pytest.raises(Exception, match="--flip-y needs the micrograph size"):
        _export(db, "star", tmp_path / "o2", images="none", flip_y=True)


def test_writing_images_of_purged_micrographs_is_one_clear_line(purged, tmp_path):
    _, after, _ = purged
    with pytest.raises(ex.ExportError) as err:
        _export(after, "thi", tmp_path / "out")  # EPicker's default: PNG images
    assert "\n" not in str(err.value) and "--images none" in str(err.value)


def test_cli_micrograph_size(purged, facility, tmp_path):
    from cryoglean.cli import cli

    _, after, root = purged
    size = f"{facility.config.nx}x{facility.config.ny}"
    r = CliRunner().invoke(cli, ["export", "yolo", "--db", str(after), "-o", str(tmp_path / "y"),
                                 "--project", str(root / "cryosparc"), "--images", "none", "-q",
                                 "--micrograph-size", size])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["export", "yolo", "--db", str(after), "-o", str(tmp_path / "z"),
                                 "--project", str(root / "cryosparc"), "--images", "none",
                                 "--micrograph-size", "4096"])
    assert r.exit_code == 1 and "NXxNY" in r.output
    lab = ex.read_labels(tmp_path / "y")
    assert np.isfinite(lab[["x", "y"]].to_numpy(float)).all()
