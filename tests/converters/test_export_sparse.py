"""``export --label-fraction F``: training labels only inside seeded rectangular subregions
holding ≈ F of each image's particles (cet_pick's sparse annotations); validation complete."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from converters import export as ex
from converters.sparse import GRID, subregion_subset


@pytest.fixture(scope="module")
def tomo_db(tmp_path_factory):
    from harvest.crawl import crawl
    from harvest.synth import FacilityConfig, make_facility

    root = tmp_path_factory.mktemp("sparse")
    config = replace(FacilityConfig(), n_micrographs=1, versions=("relion50_tomo",),
                     tomograms=2, tomo_size=(160, 160, 48), tomo_particles=(24, 16))
    fac = make_facility(root / "fac", config)
    crawl([fac.root], root / "c.db", progress=False)
    return fac, root / "c.db"


def _export(db, out, **kw):
    return ex.export(db, "cetpick", out, ex.ExportOptions(**kw))


def test_subset_covers_about_the_fraction_in_rectangles():
    rng = np.random.default_rng(0)
    picks = pd.DataFrame({"stem": ["a"] * 800 + ["b"] * 400, "split": "train",
                          "x": rng.uniform(0, 512, 1200), "y": rng.uniform(0, 256, 1200)})
    images = pd.DataFrame({"stem": ["a", "b"], "split": "train", "out_nx": [512, 512],
                           "out_ny": [256, 256]})
    for f in (0.1, 0.3, 0.7):
        kept, rec = subregion_subset(picks, images, f, seed=1)
        for stem, n in (("a", 800), ("b", 400)):
            info = rec["per_image"][stem]
            assert info["of"] == n and abs(info["kept"] / n - f) < 0.5 / GRID**2 + 0.03
            mine = kept[kept["stem"] == stem]
            assert len(mine) == info["kept"]
            inside = np.zeros(len(mine), dtype=bool)
            for x0, y0, x1, y1 in info["regions"]:
                inside |= ((mine["x"] >= x0) & (mine["x"] < x1) & (mine["y"] >= y0)
                           & (mine["y"] < y1)).to_numpy()
            assert inside.all()
            # every label inside a chosen rectangle is kept (a subregion is fully labelled)
            full = picks[picks["stem"] == stem]
            x0, y0, x1, y1 = info["regions"][0]
            n_in = ((full["x"] >= x0) & (full["x"] < x1) & (full["y"] >= y0)
                    & (full["y"] < y1)).sum()
            assert n_in == ((mine["x"] >= x0) & (mine["x"] < x1) & (mine["y"] >= y0)
                            & (mine["y"] < y1)).sum() > 0
    assert subregion_subset(picks, images, None, 0) == (picks, None)
    assert subregion_subset(picks, images, 1.0, 0)[1] is None
    for bad in (0.0, -0.2, 1.5):
        with pytest.raises(ValueError, match="label-fraction"):
            subregion_subset(picks, images, bad, 0)


def test_export_keeps_a_seeded_sparse_subset(tomo_db, tmp_path):
    fac, db = tomo_db
    full = ex.read_labels(_export(db, tmp_path / "full", val_fraction=0.0).out_dir)
    res = _export(db, tmp_path / "s1", val_fraction=0.0, label_fraction=0.3, seed=5)
    sparse = ex.read_labels(res.out_dir)
    rec = res.manifest["label_fraction"]
    assert rec["fraction"] == 0.3 and rec["seed"] == 5 and rec["of"] == len(full)
    assert len(sparse) == rec["kept"] == res.counts["train"]["positives"]
    per_mic = {m["stem"]: m["positives"] for m in res.manifest["micrographs"]}
    assert per_mic == sparse.groupby("stem").size().to_dict()
    assert 0.15 <= len(sparse) / len(full) <= 0.45
    # a subset of the full labels, at the same voxels (z kept)
    key = ["stem", "x", "y", "z"]
    merged = sparse[key].merge(full[key], how="left", indicator=True)
    assert (merged["_merge"] == "both").all()
    again = ex.read_labels(_export(db, tmp_path / "s2", val_fraction=0.0, label_fraction=0.3,
                                   seed=5).out_dir)
    assert again[key].equals(sparse[key])
    other = ex.read_labels(_export(db, tmp_path / "s3", val_fraction=0.0, label_fraction=0.3,
                                   seed=6).out_dir)
    assert not (len(other) == len(sparse) and other[key].equals(sparse[key]))


def test_validation_labels_stay_complete(tomo_db, tmp_path):
    fac, db = tomo_db
    res = _export(db, tmp_path / "out", val_fraction=0.5, label_fraction=0.2)
    val_stems = [m["stem"] for m in res.manifest["micrographs"] if m["split"] == "val"]
    assert len(val_stems) == 1
    n_val = sum(len(t.particles) for t in fac.tomograms if t.key == val_stems[0])
    assert res.counts["val"]["positives"] == n_val
    assert set(res.manifest["label_fraction"]["per_image"]) == {
        m["stem"] for m in res.manifest["micrographs"] if m["split"] == "train"}
    with pytest.raises(ex.ExportError, match="label-fraction"):
        _export(db, tmp_path / "bad", label_fraction=1.5)


def test_cli_option(tomo_db, tmp_path):
    from cryoglean.cli import cli

    _, db = tomo_db
    out = tmp_path / "cli"
    result = CliRunner().invoke(cli, ["export", "cetpick", "--db", str(db), "-o", str(out),
                                      "--val-fraction", "0", "--label-fraction", "0.5", "-q"])
    assert result.exit_code == 0, result.output
    import json

    man = json.loads((out / "manifest.json").read_text())
    assert man["label_fraction"]["fraction"] == 0.5
    assert man["command"]["label_fraction"] == 0.5
