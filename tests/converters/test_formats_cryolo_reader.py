"""crYOLO's reading of cbox and EMAN box files, re-implemented from its documented rules
(formats.md §6.1; crYOLO 1.9.9 ``CoordsIO``: ``read_eman1_boxfile`` = ``np.genfromtxt`` rows
``x y w h``, lower-left corner, centre = corner + size/2; the ≥ 1.8 cbox = the ``data_cryolo``
loop, centre = ``_CoordinateX + _Width/2``). crYOLO itself is not installable here: THIS IS A
RE-IMPLEMENTATION of its reader logic, kept apart from ours (numpy only, no converters code), run
on napari-boxmanager's real files and on what ``cryoglean convert`` and ``export`` write."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import realfile

from converters import registry

BOXM = "MPI-Dortmund/napari-boxmanager"


def cryolo_read_box(path) -> np.ndarray:
    """(n, 2) centres as crYOLO reads an EMAN1 box file (re-implementation)."""
    rows = np.atleast_2d(np.genfromtxt(path))
    return np.column_stack([rows[:, 0] + rows[:, 2] / 2, rows[:, 1] + rows[:, 3] / 2])


def cryolo_read_cbox(path) -> np.ndarray:
    """(n, 2) centres as crYOLO ≥ 1.8 reads a cbox file (re-implementation)."""
    labels, rows, block = [], [], None
    for line in open(path):
        s = line.strip()
        if s.startswith("data_"):
            block = s[5:]
        elif block == "cryolo" and s.startswith("_"):
            labels.append(s.split()[0][1:])
        elif block == "cryolo" and s and s != "loop_":
            rows.append([float("nan") if t in ("<NA>", "None") else float(t) for t in s.split()])
    t = np.array(rows, dtype=float).reshape(-1, len(labels))
    c = {name: t[:, i] for i, name in enumerate(labels)}
    return np.column_stack([c["CoordinateX"] + c["Width"] / 2, c["CoordinateY"] + c["Height"] / 2])


def _convert(*argv):
    from cryoglean.cli import cli

    r = CliRunner().invoke(cli, ["convert", *map(str, argv)])
    assert r.exit_code == 0, r.output
    return r


def test_real_cbox_to_box_read_by_cryolo_rules(realdata, tmp_path):
    src = realfile(realdata, BOXM, "test_data/particle_cbox_2d")
    _convert("cbox", "box", src, "-o", tmp_path / "box")
    for cbox in sorted(src.glob("*.cbox")):
        theirs_in = cryolo_read_cbox(cbox)
        box = tmp_path / "box" / f"{cbox.stem}.box"
        theirs_out = cryolo_read_box(box)
        assert len(theirs_out) == len(theirs_in)
        # integer corners by default: each centre within half a pixel per axis
        assert np.abs(theirs_out - theirs_in).max() <= 0.5 + 1e-9
        assert all(float(v).is_integer() for v in np.genfromtxt(box).ravel())
    # the float flavour keeps the centres exactly
    _convert("cbox", "box", src, "-o", tmp_path / "boxf", "--flavour", "float")
    for cbox in sorted(src.glob("*.cbox")):
        np.testing.assert_allclose(cryolo_read_box(tmp_path / "boxf" / f"{cbox.stem}.box"),
                                   cryolo_read_cbox(cbox), atol=1e-6)


def test_real_box_and_our_cbox_read_by_cryolo_rules(realdata, tmp_path):
    src = realfile(realdata, BOXM, "test_data/box_data/test_0.box")
    _convert("box", "cbox", src, "-o", tmp_path / "cb")
    ours = cryolo_read_cbox(tmp_path / "cb" / "test_0.cbox")
    np.testing.assert_allclose(ours, cryolo_read_box(src), atol=1e-6)
    np.testing.assert_allclose(ours, registry.read_picks(src)[["x", "y"]].to_numpy(), atol=1e-6)


@pytest.mark.parametrize("fmt,reader,ext", [("box", cryolo_read_box, ".box"),
                                            ("cbox", cryolo_read_cbox, ".cbox")])
def test_cli_exports_read_by_cryolo_rules(facility, tmp_path, fmt, reader, ext):
    from converters.dataset import read_labels
    from cryoglean.cli import cli
    from harvest.crawl import crawl

    db = tmp_path / "c.db"
    crawl([facility.projects["relion40"]], db, progress=False)
    out = tmp_path / fmt
    r = CliRunner().invoke(cli, ["export", fmt, "--db", str(db), "-o", str(out), "--images",
                                 "none", "--val-fraction", "0", "-q"])
    assert r.exit_code == 0, r.output
    labels = read_labels(out)
    for f in sorted((out / "train" / "labels").glob(f"*{ext}")):
        ours = labels[labels["stem"] == f.stem][["x", "y"]].to_numpy(float)
        np.testing.assert_allclose(np.sort(reader(f), axis=0), np.sort(ours, axis=0), atol=1e-5)
