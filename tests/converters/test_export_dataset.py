"""converters.dataset: an export opened by its manifest (the hand-off to the trainers)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from converters import dataset
from converters.export import ExportOptions, export
from converters.select import SelectionOptions


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """A RELION 4 project over 5 small simulated micrographs, crawled (read-only here)."""
    from harvest.crawl import crawl
    from harvest.synth import FacilityConfig, make_facility

    root = tmp_path_factory.mktemp("dataset")
    fac = make_facility(root / "fac", FacilityConfig(
        n_micrographs=5, nx=256, ny=192, particles_per_micrograph=10, junk_per_micrograph=4,
        versions=("relion40",)))
    path = root / "catalog.db"
    crawl([fac.root], path, progress=False)
    return path


def _selected(db) -> pd.DataFrame:
    """Positives as selected: stem, x, y in px of the original micrographs."""
    from converters.select import select_labels
    from harvest.catalog import Catalog

    with Catalog(db, readonly=True) as cat:
        sel = select_labels(cat, SelectionOptions())
    stems = sel.micrographs.set_index("mic")["stem"]
    return pd.DataFrame({"stem": sel.positives["mic"].map(stems).to_numpy(),
                         "x": sel.positives["x"].to_numpy(float),
                         "y": sel.positives["y"].to_numpy(float)})


def _match(labels: pd.DataFrame, ref: pd.DataFrame) -> float:
    """Largest distance from a label to the nearest reference point of its micrograph."""
    from scipy.spatial import cKDTree

    worst = 0.0
    for stem, grp in labels.groupby("stem"):
        r = ref[ref["stem"] == stem][["x", "y"]].to_numpy(float)
        d, _ = cKDTree(r).query(grp[["x", "y"]].to_numpy(float))
        worst = max(worst, float(d.max()))
    return worst


def test_micrographs_table(db, tmp_path):
    res = export(db, "star", tmp_path / "out", ExportOptions(images="mrc", scale=2.0))
    ds = dataset.open_export(tmp_path / "out" / "manifest.json")  # the manifest file works too
    assert ds.root == (tmp_path / "out").resolve() and ds.format == "star" and ds.dims == 2
    mics = ds.micrographs()
    assert list(mics.columns) == list(dataset.MICROGRAPH_COLUMNS)
    man = {m["stem"]: m for m in res.manifest["micrographs"]}
    assert sorted(mics["stem"]) == sorted(man)
    for r in mics.itertuples():
        m = man[r.stem]
        assert (r.split, r.nx, r.ny, r.out_nx, r.out_ny) == (
            m["split"], m["nx"], m["ny"], m["nx"] // 2, m["ny"] // 2)
        assert r.scale_x == r.out_nx / r.nx
        assert r.image == str(ds.root / r.split / "images" / f"{r.stem}.mrc")
        assert r.source == m["path"]
    assert set(ds.micrographs("val")["stem"]) == {s for s, m in man.items() if m["split"] == "val"}
    d = mics["diameter_px"].to_numpy(float)
    assert ds.diameter_px == pytest.approx(float(np.median(d)))
    in_px = [m["diameter_A"] / m["pixel_size"] * m["scale_x"] for m in man.values()]
    assert ds.diameter_px == pytest.approx(float(np.median(in_px)))


def test_labels_in_exported_pixels_of_a_scaled_export(db, tmp_path):
    res = export(db, "star", tmp_path / "out", ExportOptions(images="mrc", scale=2.0))
    ds = dataset.open_export(res.out_dir)
    labels = ds.labels()
    assert len(labels) == sum(c["positives"] for c in res.counts.values())
    scale = ds.micrographs().set_index("stem")[["scale_x", "scale_y"]]
    ref = _selected(db)
    ref = ref.assign(x=ref["x"] * ref["stem"].map(scale["scale_x"]),
                     y=ref["y"] * ref["stem"].map(scale["scale_y"]))
    assert _match(labels, ref) < 1e-3
    assert _match(labels, _selected(db)) > 1  # not the original micrographs' pixels
    pd.testing.assert_frame_equal(labels, dataset.read_labels(res.out_dir))


def test_images_none_gives_the_source_when_unscaled(db, tmp_path):
    res = export(db, "star", tmp_path / "out", ExportOptions(images="none"))
    mics = dataset.open_export(res.out_dir).micrographs()
    man = {m["stem"]: m for m in res.manifest["micrographs"]}
    assert all(m["image"] is None for m in man.values())
    assert mics["image"].tolist() == [man[s]["path"] for s in mics["stem"]]
    # scaled without images: the source's pixels are not the labels' pixels, so no image
    export(db, "star", tmp_path / "half", ExportOptions(images="none", scale=2.0))
    assert dataset.open_export(tmp_path / "half").micrographs()["image"].isna().all()


def test_yolo_labels_read_with_sizes_from_the_manifest(db, tmp_path):
    from converters.export import read_labels  # still importable from the export module

    res = export(db, "yolo", tmp_path / "out", ExportOptions(scale=2.0))
    ds = dataset.open_export(res.out_dir)
    labels = ds.labels()
    assert len(labels) == sum(c["positives"] for c in res.counts.values()) > 0
    scale = ds.micrographs().set_index("stem")["scale_x"]
    ref = _selected(db)
    ref = ref.assign(x=ref["x"] * ref["stem"].map(scale), y=ref["y"] * ref["stem"].map(scale))
    assert _match(labels, ref) < 1e-3  # 6 decimals of a ~128 px image
    assert (labels["class_id"] == 0).all()
    pd.testing.assert_frame_equal(labels, read_labels(res.out_dir))


def test_not_an_export(tmp_path):
    assert not dataset.is_export(tmp_path)
    with pytest.raises(FileNotFoundError, match="no manifest"):
        dataset.open_export(tmp_path)
