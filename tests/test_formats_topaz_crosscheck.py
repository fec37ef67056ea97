"""Topaz's own ``convert`` reads cryoglean's Topaz table, EMAN box and STAR exports and writes
back the same coordinates (Topaz 0.3.x, installed without its dependencies; its console script
needs psutil, so the command runs through ``topaz.commands.convert`` in-process)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from converters import registry

convert = pytest.importorskip(
    "topaz.commands.convert", reason="topaz (topaz-em) not importable in this environment"
)


def _topaz(*argv):
    args = convert.add_arguments().parse_args([str(a) for a in argv])
    convert.main(args)


@pytest.fixture()
def picks():
    rng = np.random.default_rng(7)
    n = 300
    return pd.DataFrame({
        "micrograph": rng.choice(["mic_0001", "mic_0002", "grid3_sq4_hole5"], n),
        "x": rng.integers(100, 3900, n).astype(float),
        "y": rng.integers(100, 3900, n).astype(float),
        "score": rng.normal(size=n).round(3),
    })


def _same(a, b, cols=("x", "y")):
    a = a.sort_values(["micrograph", *cols]).reset_index(drop=True)
    b = b.sort_values(["micrograph", *cols]).reset_index(drop=True)
    assert a["micrograph"].tolist() == b["micrograph"].tolist()
    for c in cols:
        np.testing.assert_array_equal(a[c].to_numpy(float), b[c].to_numpy(float))


def test_topaz_reads_our_table_and_writes_boxes_we_read(tmp_path, picks):
    (table,) = registry.write_picks(picks, tmp_path / "particles.txt", "topaz")
    boxes = tmp_path / "boxes"
    boxes.mkdir()
    _topaz(table, "--boxsize", 64, "-o", f"{boxes}/")
    back = registry.read_picks(boxes, "box")
    _same(picks, back)
    assert (back["diameter"] == 64).all()


def test_topaz_reads_our_boxes(tmp_path, picks):
    files = registry.write_picks(picks, tmp_path / "box", "box", boxsize=64)
    out = tmp_path / "from_box.txt"
    _topaz(*files, "-o", out)
    _same(picks, registry.read_picks(out, "topaz"))


def test_topaz_downscale_equals_ours(tmp_path, picks):
    (full,) = registry.write_picks(picks, tmp_path / "full.txt", "topaz")
    theirs = tmp_path / "theirs.txt"
    _topaz(full, "-s", 8, "-o", theirs)
    (ours,) = registry.write_picks(picks, tmp_path / "ours.txt", "topaz", scale=8)
    a, b = registry.read_picks(theirs, "topaz"), registry.read_picks(ours, "topaz")
    np.testing.assert_array_equal(a[["x", "y"]].values, b[["x", "y"]].values)
    assert a["micrograph"].tolist() == b["micrograph"].tolist()


def test_topaz_reads_our_relion30_star(tmp_path, picks):
    (st,) = registry.write_picks(picks, tmp_path / "p.star", "star", flavor="relion30")
    out = tmp_path / "from_star.txt"
    _topaz(st, "-o", out)
    back = registry.read_picks(out, "topaz")
    _same(picks, back)
    np.testing.assert_allclose(
        back.sort_values(["micrograph", "x", "y"])["score"].to_numpy(),
        picks.sort_values(["micrograph", "x", "y"])["score"].to_numpy(),
    )
