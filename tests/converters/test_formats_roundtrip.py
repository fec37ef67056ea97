"""write -> read gives the same particles, within each format's rounding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from converters import registry
from converters.formats import _common

MICS = ["mic_0001", "mic_0002", "FoilHole_1_Data_2", "a-b.c"]


@st.composite
def picks_frames(draw, grid: bool = False, three_d: bool = False, min_size: int = 1):
    n = draw(st.integers(min_value=min_size, max_value=25))
    if grid:  # quarter pixels: exactly representable in every decimal format
        coord = st.integers(min_value=0, max_value=4 * 8000).map(lambda v: v / 4)
    else:
        coord = st.floats(min_value=0, max_value=8000, allow_nan=False, allow_infinity=False)
    data = {
        "micrograph": [draw(st.sampled_from(MICS)) for _ in range(n)],
        "x": [draw(coord) for _ in range(n)],
        "y": [draw(coord) for _ in range(n)],
        "score": [draw(st.floats(0, 1, allow_nan=False)) for _ in range(n)],
    }
    if three_d:
        data["z"] = [draw(coord) for _ in range(n)]
    return pd.DataFrame(data)


def _match(a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Order both frames by micrograph stem; every format keeps the order of the picks within
    a micrograph, so rows then correspond one to one."""
    a = a.assign(_m=[_common.mic_stem(m) for m in a["micrograph"]])
    b = b.assign(_m=[_common.mic_stem(m) for m in b["micrograph"]])
    a = a.sort_values("_m", kind="stable").reset_index(drop=True)
    b = b.sort_values("_m", kind="stable").reset_index(drop=True)
    assert a["_m"].tolist() == b["_m"].tolist()
    return a, b


def _roundtrip(tmp_path, picks, fmt, wopts=None, ropts=None, sub="out"):
    dest = tmp_path / sub
    files = registry.write_picks(picks, dest, fmt, **(wopts or {}))
    assert files and all(f.exists() for f in files)
    back = registry.read_picks(dest if dest.is_dir() else files[0], fmt, **(ropts or {}))
    assert len(back) == len(picks)
    return _match(picks, back)


HS = dict(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])


def _fresh(tmp_path):
    import uuid

    return tmp_path / uuid.uuid4().hex[:8]


@settings(**HS)
@given(picks_frames(grid=True), st.sampled_from([64, 65, 220]))
def test_box_corner_centre_exact(tmp_path, picks, boxsize):
    # the float flavour (integer=False): corners = centre - size/2, exactly
    a, b = _roundtrip(_fresh(tmp_path), picks, "box", {"boxsize": boxsize, "integer": False})
    np.testing.assert_array_equal(a["x"], b["x"])
    np.testing.assert_array_equal(a["y"], b["y"])
    assert (b["diameter"] == boxsize).all()


@settings(**HS)
@given(picks_frames(), st.sampled_from([64, 65, 220.4]))
def test_box_integer_corners_by_default(tmp_path, picks, boxsize):
    # the default: integer sides and corners (Topaz's reader parses int()); a centre read back
    # is within half a pixel per axis
    dest = _fresh(tmp_path) / "out"
    files = registry.write_picks(picks, dest, "box", boxsize=boxsize)
    for f in files:
        for line in f.read_text().splitlines():
            assert all(tok.lstrip("-").isdigit() for tok in line.split())
    a, b = _roundtrip(_fresh(tmp_path), picks, "box", {"boxsize": boxsize})
    assert np.abs(a["x"] - b["x"]).max() <= 0.5 + 1e-9
    assert np.abs(a["y"] - b["y"]).max() <= 0.5 + 1e-9
    assert (b["diameter"] == round(boxsize)).all()


@settings(**HS)
@given(picks_frames())
def test_box_any_float_within_1e6(tmp_path, picks):
    a, b = _roundtrip(_fresh(tmp_path), picks, "box", {"boxsize": 100, "integer": False})
    np.testing.assert_allclose(a["x"], b["x"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(a["y"], b["y"], atol=1e-6, rtol=0)


@settings(**HS)
@given(picks_frames(grid=True), st.booleans())
def test_cbox_exact_with_score_and_z(tmp_path, picks, three_d):
    if three_d:
        picks = picks.assign(z=picks["x"] / 2)
    a, b = _roundtrip(_fresh(tmp_path), picks.assign(diameter=37.0), "cbox")
    for c in ("x", "y") + (("z",) if three_d else ()):
        np.testing.assert_array_equal(a[c], b[c])
    np.testing.assert_allclose(a["score"], b["score"], atol=1e-6)
    assert ("z" in b.columns) == three_d


@settings(**HS)
@given(picks_frames(), st.sampled_from(["coords", "relion31", "relion30"]))
def test_star_flavours_6_decimals(tmp_path, picks, flavor):
    a, b = _roundtrip(_fresh(tmp_path), picks, "star", {"flavor": flavor})
    np.testing.assert_allclose(a["x"], b["x"], atol=5.1e-7, rtol=0)
    np.testing.assert_allclose(a["y"], b["y"], atol=5.1e-7, rtol=0)
    np.testing.assert_allclose(a["score"], b["score"], atol=5.1e-7, rtol=0)


@settings(**HS)
@given(picks_frames())
def test_star_partinet_integers(tmp_path, picks):
    a, b = _roundtrip(_fresh(tmp_path), picks, "star", {"flavor": "partinet", "diameter": 150})
    assert (np.abs(a["x"] - b["x"]) <= 0.5).all() and (np.abs(a["y"] - b["y"]) <= 0.5).all()
    assert (b["diameter"] == 150).all()
    assert all(m.endswith(".mrc") for m in b["micrograph"])


@settings(**HS)
@given(picks_frames())
def test_topaz_integers(tmp_path, picks):
    a, b = _roundtrip(_fresh(tmp_path), picks, "topaz")
    assert (np.abs(a["x"] - b["x"]) <= 0.5).all() and (np.abs(a["y"] - b["y"]) <= 0.5).all()


@settings(**HS)
@given(picks_frames(), st.sampled_from([2, 4, 8]))
def test_topaz_scale(tmp_path, picks, scale):
    dest = _fresh(tmp_path) / "p.txt"
    registry.write_picks(picks, dest, "topaz", scale=scale)
    small = registry.read_picks(dest, "topaz")
    a, b = _match(picks.assign(x=np.round(picks["x"] / scale), y=np.round(picks["y"] / scale)),
                  small)
    np.testing.assert_array_equal(a["x"], b["x"])
    up = registry.read_picks(dest, "topaz", scale=scale)  # back to original pixels
    a, b = _match(picks, up)
    assert (np.abs(a["x"] - b["x"]) <= scale / 2).all()


@settings(**HS)
@given(picks_frames(), st.sampled_from(["particle", "vesicle"]))
def test_thi_integers(tmp_path, picks, mode):
    if mode == "vesicle":
        picks = picks.assign(radius=np.round(picks["x"] % 50) + 10)
    a, b = _roundtrip(_fresh(tmp_path), picks, "thi", {"mode": mode})
    assert (np.abs(a["x"] - b["x"]) <= 0.5).all() and (np.abs(a["y"] - b["y"]) <= 0.5).all()
    np.testing.assert_allclose(a["score"], b["score"], atol=5.1e-7)
    if mode == "vesicle":
        np.testing.assert_array_equal(a["radius"], b["radius"])


@settings(**HS)
@given(picks_frames(), st.integers(min_value=256, max_value=8192),
       st.integers(min_value=256, max_value=8192))
def test_yolo_normalised(tmp_path, picks, nx, ny):
    # centres on the image (0..8000 scaled to it); off-image centres are cut to their visible
    # box on purpose (test_formats_registry::test_yolo_centres_off_the_image_...)
    picks = picks.assign(diameter=120.0, x=picks["x"] * (nx / 8000), y=picks["y"] * (ny / 8000))
    a, b = _roundtrip(_fresh(tmp_path), picks, "yolo", {"image_size": (nx, ny)},
                      {"image_size": (nx, ny)})
    # 6 decimals of a fraction of the image size
    np.testing.assert_allclose(a["x"], b["x"], atol=5.1e-7 * nx, rtol=0)
    np.testing.assert_allclose(a["y"], b["y"], atol=5.1e-7 * ny, rtol=0)
    np.testing.assert_allclose(b["diameter"], 120.0, atol=5.1e-7 * max(nx, ny))
    assert (b["class_id"] == 0).all()


@settings(**HS)
@given(picks_frames())
def test_csv_and_coord_integers(tmp_path, picks):
    for fmt in ("csv", "coord"):
        a, b = _roundtrip(_fresh(tmp_path), picks.assign(diameter=108.0), fmt)
        assert (np.abs(a["x"] - b["x"]) <= 0.5).all() and (np.abs(a["y"] - b["y"]) <= 0.5).all()
        assert (b["diameter"] == 108).all()


@settings(**HS)
@given(picks_frames(three_d=True))
def test_tomogram_formats(tmp_path, picks):
    a, b = _roundtrip(_fresh(tmp_path), picks, "cetpick")
    for c in "xyz":
        assert (np.abs(a[c] - b[c]) <= 0.5).all()
    a, b = _roundtrip(_fresh(tmp_path), picks, "imod")
    for c in "xyz":
        assert (np.abs(a[c] - b[c]) <= 0.005 + 1e-9).all()
    a, b = _roundtrip(_fresh(tmp_path), picks, "copick", {"voxel_spacing": 7.84})
    for c in "xyz":
        np.testing.assert_allclose(a[c], b[c], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(a["score"], b["score"])


def test_yolo_reads_partinet_detections(tmp_path):
    label = tmp_path / "mic_0001.txt"
    label.write_text("0 0.5 0.25 0.05 0.05 0.87\n0 0.1 0.2 0.03 0.04 0.12\n")
    got = registry.read_picks(label, "yolo", image_size=(4096, 2048))
    assert got["x"].tolist() == [2048.0, 409.6]
    assert got["y"].tolist() == [512.0, 409.6]
    assert got["score"].tolist() == [0.87, 0.12]
    assert got["diameter"].tolist() == pytest.approx([204.8, 122.88])
    assert registry.guess_format(label) == "yolo"


def test_helix_exact_strings(tmp_path):
    picks = pd.DataFrame({"micrograph": "m", "x": [10.2, 20.7], "y": [5.0, 6.0],
                          "filament": [0, 0]})
    (f,) = registry.write_picks(picks, tmp_path, "thi", mode="fiber")
    assert f.read_text() == "[Helix Coordinates: X Y Group Value]\n10 5 0 1.0\n21 6 0 1.0\n[End]"
    back = registry.read_picks(f)
    assert back["filament"].tolist() == [0, 0] and back["x"].tolist() == [10.0, 21.0]


def test_particle_thi_exact_strings(tmp_path):
    picks = pd.DataFrame({"micrograph": "Movies/m.mrc", "x": [10.4, 20.6], "y": [5.0, 6.0],
                          "score": [0.5, 0.25]})
    (f,) = registry.write_picks(picks, tmp_path, "thi")
    assert f.name == "m.thi"
    assert f.read_text() == (
        "[Particle Coordinates: X Y Value]\n10\t5\t0.500000\n21\t6\t0.250000\n[End]\n"
    )


def test_empty_label_files_for_listed_micrographs(tmp_path):
    picks = pd.DataFrame({"micrograph": ["a"], "x": [1.0], "y": [2.0], "diameter": [10.0]})
    files = registry.write_picks(picks, tmp_path / "labels", "box", micrographs=["a", "b"])
    assert [f.name for f in files] == ["a.box", "b.box"]
    assert files[1].read_text() == ""
    back = registry.read_picks(tmp_path / "labels", "box")
    assert back["micrograph"].tolist() == ["a"]
