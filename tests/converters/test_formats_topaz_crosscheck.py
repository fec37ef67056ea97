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


# --- exports made through the CLI (issue 10, item 8) ------------------------------------------


@pytest.fixture(scope="module")
def catalog(facility, tmp_path_factory):
    from harvest.crawl import crawl

    path = tmp_path_factory.mktemp("topaz_cat") / "catalog.db"
    crawl([facility.projects["relion31"]], path, progress=False)
    return path


def _cli_export(catalog, fmt, out, *extra):
    from click.testing import CliRunner

    from cryoglean.cli import cli

    r = CliRunner().invoke(cli, ["export", fmt, "--db", str(catalog), "-o", str(out),
                                 "--images", "none", "--val-fraction", "0", "-q", *extra])
    assert r.exit_code == 0, r.output
    from converters.dataset import read_labels

    return read_labels(out)


def _nearest(a, b):
    from scipy.spatial import cKDTree

    d = []
    for stem, grp in a.groupby("micrograph"):
        other = b[b["micrograph"] == stem][["x", "y"]].to_numpy(float)
        d.append(cKDTree(other).query(grp[["x", "y"]].to_numpy(float))[0])
    return np.concatenate(d)


def test_topaz_reads_the_cli_box_export(catalog, tmp_path):
    labels = _cli_export(catalog, "box", tmp_path / "box")
    files = sorted((tmp_path / "box" / "train" / "labels").glob("*.box"))
    assert files
    out = tmp_path / "from_box.txt"
    _topaz(*files, "-o", out)  # Topaz parses int(): the CLI's box has integer corners
    theirs = registry.read_picks(out, "topaz")
    # Topaz's centre = corner + w // 2: within half a pixel of ours (corner + w / 2)
    ours = labels.assign(micrograph=labels["stem"])
    assert len(theirs) == len(ours)
    assert _nearest(theirs, ours).max() <= 0.5 * 2**0.5 + 1e-9


@pytest.mark.parametrize("flavour", ["topaz", "relion30"])
def test_topaz_reads_the_cli_star_export(catalog, tmp_path, flavour):
    labels = _cli_export(catalog, "star", tmp_path / "st", "--star-flavour", flavour)
    star_file = tmp_path / "st" / "train" / "labels" / "particles.star"
    out = tmp_path / "from_star.txt"
    _topaz(star_file, "-o", out)  # first data_ block, rlnMicrographName, int(float(x))
    theirs = registry.read_picks(out, "topaz")
    ours = labels.assign(micrograph=labels["stem"])
    assert len(theirs) == len(ours) and set(theirs["micrograph"]) == set(ours["micrograph"])
    # the topaz flavour writes rounded integers (Topaz truncates floats): at most half a pixel
    limit = 0.5 * 2**0.5 if flavour == "topaz" else 2**0.5
    assert _nearest(theirs, ours).max() <= limit + 1e-9
