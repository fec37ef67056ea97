"""Unit tests of the export's pure parts: images, splits, atomic output, selection helpers."""

from __future__ import annotations

import os

import mrcfile
import numpy as np
import pandas as pd
import pytest

from converters import atomic, images, split
from converters import select as sel

# ---------------------------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------------------------


def _blob(ny, nx, x0, y0, sigma=3.0):
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    return np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * sigma**2)).astype(np.float32)


def _centroid(img, x0, y0, half=8):
    """Intensity centroid in a window around (x0, y0)."""
    xi, yi = int(round(x0)), int(round(y0))
    win = img[yi - half : yi + half + 1, xi - half : xi + half + 1].astype(float)
    win = np.clip(win, 0, None)
    yy, xx = np.mgrid[yi - half : yi + half + 1, xi - half : xi + half + 1]
    return (win * xx).sum() / win.sum(), (win * yy).sum() / win.sum()


def test_output_shape_scale_width_and_nondivisible():
    assert images.output_shape(200, 150, scale=3) == (50, 66)  # int(150/3), int(200/3)
    assert images.output_shape(4096, 4096, width=1024) == (1024, 1024)
    assert images.output_shape(3838, 3710, width=1024) == (round(3710 * 1024 / 3838), 1024)
    assert images.output_shape(100, 80) == (80, 100)
    with pytest.raises(ValueError, match="either"):
        images.output_shape(100, 80, scale=2, width=50)
    with pytest.raises(ValueError, match="> 0"):
        images.output_shape(100, 80, scale=0)


def test_fourier_crop_keeps_mean_and_maps_coordinates_by_size_ratio():
    # nx = 200 not divisible by 3: the new grid is 66 wide, coordinate scale 66/200 = 0.33,
    # not 1/3; a blob at x = 180 lands at 59.4, not 60.
    ny, nx = 150, 200
    x0, y0 = 180.0, 97.0
    img = _blob(ny, nx, x0, y0, sigma=4.0) + 5.0
    shape = images.output_shape(nx, ny, scale=3)
    out = images.fourier_crop(img, shape)
    assert out.shape == shape
    assert out.dtype == np.float32
    assert abs(out.mean() - img.mean()) < 1e-3
    cx, cy = _centroid(out - 5.0, x0 * shape[1] / nx, y0 * shape[0] / ny, half=5)
    assert abs(cx - x0 * shape[1] / nx) < 0.08
    assert abs(cy - y0 * shape[0] / ny) < 0.08
    assert abs(cx - x0 / 3) > 0.4  # the naive 1/S would be off by 0.6 px


@pytest.mark.parametrize("shape", [(77, 51), (64, 64), (1, 3), (150, 200)])
def test_fourier_crop_odd_even_shapes(shape):
    rng = np.random.default_rng(1)
    img = rng.normal(size=(150, 200)).astype(np.float32)
    out = images.fourier_crop(img, shape)
    assert out.shape == shape
    assert abs(out.mean() - img.mean()) < 1e-4


def test_fourier_crop_refuses_upsampling():
    with pytest.raises(ValueError, match="only downsampling"):
        images.fourier_crop(np.zeros((10, 10)), (20, 20))


def test_to_uint8_percentile_minmax_and_constant():
    img = np.linspace(0, 1, 1000).reshape(20, 50)
    img[0, 0] = 100.0  # a hot pixel
    mm = images.to_uint8(img, "minmax")
    pc = images.to_uint8(img, "percentile")
    assert mm.dtype == np.uint8 and mm.max() == 255 and mm.min() == 0
    # min-max is squashed by the hot pixel; percentile keeps the contrast
    assert np.median(mm) < 5 and 100 < np.median(pc) < 155
    assert images.to_uint8(np.ones((4, 4))).max() == 0
    with pytest.raises(ValueError, match="unknown normalisation"):
        images.to_uint8(img, "zscore")


def _write_mrc(path, data, px=1.5):
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(np.asarray(data, dtype=np.float32))
        m.voxel_size = px
    return path


def test_write_image_modes(tmp_path):
    src = _write_mrc(tmp_path / "mic_0001.mrc", _blob(61, 83, 40, 30) * 10 + 1)
    png = images.ImageJob(str(src), str(tmp_path / "o" / "a.png"), "png", (30, 41))
    assert images.write_image(png) == "write"
    import cv2

    arr = cv2.imread(str(tmp_path / "o" / "a.png"), cv2.IMREAD_UNCHANGED)
    assert arr.shape == (30, 41) and arr.dtype == np.uint8
    mrcjob = images.ImageJob(str(src), str(tmp_path / "o" / "a.mrc"), "mrc", (30, 41))
    images.write_image(mrcjob)
    with mrcfile.open(tmp_path / "o" / "a.mrc") as m:
        assert m.data.shape == (30, 41) and m.data.dtype == np.float32
        assert m.voxel_size.x == pytest.approx(1.5 * 83 / 41)
    eq = images.ImageJob(str(src), str(tmp_path / "o" / "e.png"), "png", (61, 83),
                         normalize="minmax", equalize=True)
    images.write_image(eq)
    arr = cv2.imread(str(tmp_path / "o" / "e.png"), cv2.IMREAD_UNCHANGED)
    assert arr.max() == 255


def test_link_is_relative_to_final_location(tmp_path):
    (tmp_path / "data").mkdir()
    src = _write_mrc(tmp_path / "data" / "mic.mrc", np.zeros((4, 4)))
    tmpdir = tmp_path / ".out.tmp" / "train" / "images"
    final = tmp_path / "out" / "train" / "images" / "mic.mrc"
    job = images.ImageJob(str(src), str(tmpdir / "mic.mrc"), "link", (4, 4), final_dest=str(final))
    assert images.write_image(job) in {"link", "copy"}
    target = os.readlink(tmpdir / "mic.mrc")
    assert not os.path.isabs(target)
    os.rename(tmp_path / ".out.tmp", tmp_path / "out")
    assert final.resolve() == src.resolve()


def test_write_images_parallel_matches_serial(tmp_path):
    jobs = []
    for i in range(3):
        src = _write_mrc(tmp_path / f"m{i}.mrc", _blob(40, 50, 10 + i, 20))
        jobs.append(images.ImageJob(str(src), str(tmp_path / "out" / f"m{i}.png"), "png", (20, 25)))
    assert images.write_images(jobs, num_workers=2) == ["write"] * 3
    assert all((tmp_path / "out" / f"m{i}.png").exists() for i in range(3))


# ---------------------------------------------------------------------------------------------
# splits
# ---------------------------------------------------------------------------------------------


def test_split_micrographs_seeded_and_fraction():
    ids = [f"1:mic_{i:04d}" for i in range(20)]
    a = split.split_micrographs(ids, 0.2, seed=3)
    b = split.split_micrographs(list(reversed(ids)), 0.2, seed=3)
    c = split.split_micrographs(ids, 0.2, seed=4)
    assert a == b
    assert a != c
    assert sum(v == "val" for v in a.values()) == 4
    assert set(split.split_micrographs(ids[:2], 0.01).values()) == {"train", "val"}
    assert set(split.split_micrographs(ids, 0.0).values()) == {"train"}
    with pytest.raises(ValueError, match="between 0 and 1"):
        split.split_micrographs(ids, 1.5)


def test_split_projects_whole_projects():
    project_of = {f"{p}:mic_{i}": p for p in (1, 2, 3, 4, 5) for i in range(6)}
    s = split.assign_splits(project_of, by="project", val_fraction=0.4, seed=0)
    assert s == split.assign_splits(project_of, by="project", val_fraction=0.4, seed=0)
    val_projects = {project_of[m] for m, v in s.items() if v == "val"}
    train_projects = {project_of[m] for m, v in s.items() if v == "train"}
    assert len(val_projects) == 2 and not val_projects & train_projects
    with pytest.raises(ValueError, match="two or more projects"):
        split.assign_splits({"1:a": 1, "1:b": 1}, by="project")
    with pytest.raises(ValueError, match="unknown --split-by"):
        split.assign_splits(project_of, by="exposure")


# ---------------------------------------------------------------------------------------------
# atomic output
# ---------------------------------------------------------------------------------------------


def test_atomic_directory_success_failure_force(tmp_path):
    out = tmp_path / "ds"
    with atomic.atomic_directory(out) as tmp:
        assert tmp.parent == tmp_path and not out.exists()
        (tmp / "a.txt").write_text("1")
    assert (out / "a.txt").read_text() == "1"
    with pytest.raises(atomic.OutputExistsError, match="--force"):
        with atomic.atomic_directory(out):
            pass
    with pytest.raises(RuntimeError):
        with atomic.atomic_directory(out, force=True) as tmp:
            (tmp / "b.txt").write_text("2")
            raise RuntimeError("boom")
    assert (out / "a.txt").exists() and not (out / "b.txt").exists()
    with atomic.atomic_directory(out, force=True) as tmp:
        (tmp / "b.txt").write_text("2")
        assert (out / "a.txt").exists()  # old one still there while the new one is written
    assert (out / "b.txt").exists() and not (out / "a.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no leftovers


def test_atomic_refuses_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(atomic.OutputExistsError, match="not a directory"):
        atomic.check_output(tmp_path / "f", force=True)


# ---------------------------------------------------------------------------------------------
# selection helpers
# ---------------------------------------------------------------------------------------------


def test_most_curated_mask_excludes_rejected():
    df = pd.DataFrame(
        {
            "mic": ["a", "a", "a", "b", "b", "c"],
            "stage": ["picked", "refined", "refined", "picked", "rejected2d", "rejected2d"],
        }
    )
    assert sel.most_curated_mask(df).tolist() == [False, True, True, True, False, False]


def test_filter_micrographs_unknown_passes():
    # total motion is in Å in the catalog; the limit is in pixels: e moves 150 Å = 75 px (kept),
    # d moves 240 Å = 120 px (dropped)
    mics = pd.DataFrame(
        {
            "mic": ["a", "b", "c", "d", "e"],
            "ctf_max_res": [4.0, 12.0, np.nan, 9.9, 5.0],
            "total_motion": [10.0, 5.0, 20.0, 240.0, 150.0],
            "pixel_size": [1.0, 1.0, 1.0, 2.0, 2.0],
        }
    )
    keep, rep = sel.filter_micrographs(mics, 10.0, 100.0)
    assert keep.tolist() == [True, False, True, False, True]
    assert rep["max_ctf_res"]["dropped_micrographs"] == ["b"]
    assert rep["max_ctf_res"]["unknown_passed"] == 1
    assert rep["max_motion"]["dropped_micrographs"] == ["d"]
    keep, rep = sel.filter_micrographs(mics, None, None)
    assert keep.all() and rep["max_motion"]["dropped"] == 0


def test_deduplicate_keeps_higher_stage_then_score():
    df = pd.DataFrame(
        {
            "mic": ["a"] * 5 + ["b"],
            "x": [10.0, 12.0, 50.0, 51.0, 100.0, 10.5],
            "y": [10.0, 10.0, 50.0, 50.0, 100.0, 10.0],
            "stage": ["picked", "refined", "refined", "refined", "picked", "picked"],
            "score": [0.9, 0.1, 0.2, 0.8, np.nan, 0.5],
            "set_id": [1, 2, 2, 3, 1, 1],
        }
    )
    keep = sel.deduplicate(df, 5.0)
    # (10,10) picked loses to (12,10) refined; (50,50) s=.2 loses to (51,50) s=.8; b is alone
    assert keep.tolist() == [False, True, False, True, True, True]
    radius = pd.Series({"a": 1.5, "b": 1.0})
    assert sel.deduplicate(df, radius).tolist() == [True, True, False, True, True, True]
    assert sel.deduplicate(df, 0.0).all()


def test_deduplicate_chain_is_greedy():
    # A-B-C on a line 4 px apart, radius 5: A kept, B dropped (near A), C kept (B was dropped).
    df = pd.DataFrame({"mic": ["m"] * 3, "x": [0.0, 4.0, 8.0], "y": [0.0] * 3,
                       "stage": ["refined"] * 3, "score": [3.0, 2.0, 1.0], "set_id": [1, 1, 1]})
    assert sel.deduplicate(df, 5.0).tolist() == [True, False, True]


def test_drop_near_and_unique_stems():
    neg = pd.DataFrame({"mic": ["a", "a", "b"], "x": [0.0, 20.0, 0.0], "y": [0.0, 0.0, 0.0]})
    pos = pd.DataFrame({"mic": ["a"], "x": [1.0], "y": [1.0]})
    assert sel.drop_near(neg, pos, 3.0).tolist() == [False, True, True]
    mics = pd.DataFrame({"key": ["m1", "m1", "m2"], "project_id": [1, 2, 2]})
    assert sel.unique_stems(mics).tolist() == ["p1_m1", "p2_m1", "m2"]


def test_readable_projects_uses_os_access(monkeypatch, tmp_path):
    # Tests run as root, for whom every directory is readable: os.access is monkeypatched.
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    real = os.access
    monkeypatch.setattr(sel.os, "access", lambda p, m: False if str(p) == str(b) else real(p, m))
    projects = pd.DataFrame({"id": [1, 2], "root": [str(a), str(b)], "title": ["A", "B"]})
    ok, skipped = sel.readable_projects(projects)
    assert ok["id"].tolist() == [1]
    assert skipped == [{"id": 2, "root": str(b), "title": "B"}]


def _reference_dedup(df, radius):
    """Sequential greedy, one micrograph at a time (the definition)."""
    keep = pd.Series(True, index=df.index)
    order = sel._priority_order(df)
    for mic, grp in order.groupby("mic", sort=False):
        r = radius[mic] if isinstance(radius, dict) else radius
        cols = ["x", "y", "z"] if "z" in grp and np.isfinite(grp["z"]).all() else ["x", "y"]
        pts = grp[cols].to_numpy(float)
        kept: list[int] = []
        for i in range(len(grp)):
            if kept and (np.linalg.norm(pts[kept] - pts[i], axis=1) < r).any():
                keep[grp.index[i]] = False
            else:
                kept.append(i)
    return keep


@pytest.mark.parametrize("seed", range(6))
def test_deduplicate_matches_sequential_greedy(seed):
    rng = np.random.default_rng(seed)
    n = 120
    df = pd.DataFrame({
        "mic": rng.choice(["a", "b", "c"], size=n),
        "x": rng.uniform(0, 60, n), "y": rng.uniform(0, 60, n),
        "stage": rng.choice(["picked", "refined", "classified3d"], size=n),
        "score": np.where(rng.uniform(size=n) < 0.2, np.nan, rng.uniform(size=n)),
        "set_id": rng.integers(1, 4, n),
    })
    radius = {"a": 6.0, "b": 3.0, "c": 9.0}
    got = sel.deduplicate(df, pd.Series(radius))
    assert got.tolist() == _reference_dedup(df, radius).tolist()
    assert 0 < (~got).sum() < n  # the case exercises both outcomes
    df3 = df.assign(z=rng.uniform(0, 30, n))
    assert sel.deduplicate(df3, 6.0).tolist() == _reference_dedup(df3, 6.0).tolist()
    # 3D separates what 2D would merge
    assert sel.deduplicate(df3, 6.0).sum() > sel.deduplicate(df, 6.0).sum()


def test_format_image_defaults_epicker_view():
    from converters import export as ex

    img = ex._image_settings("thi", ex.ExportOptions())
    assert (img["images"], img["width"], img["normalize"], img["equalize"]) == (
        "png", 1024, "minmax", True)
    assert ex._out_shape(4096, 4096, img, "m.mrc") == (1024, 1024)
    assert ex._out_shape(3838, 3710, img, "m.mrc") == (990, 1024)
    assert ex._out_shape(576, 448, img, "m.mrc") == (448, 576)  # never upsampled
    assert ex._image_settings("yolo", ex.ExportOptions())["images"] == "png"
    assert ex._image_settings("topaz", ex.ExportOptions())["images"] == "mrc"
    assert ex._image_settings("cryolo", ex.ExportOptions())["images"] == "link"
    own = ex._image_settings("thi", ex.ExportOptions(scale=2.0))
    assert own["width"] is None and own["scale"] == 2.0
    with pytest.raises(ex.ExportError, match="cannot rescale"):
        ex._image_settings("star", ex.ExportOptions(scale=2.0))
    with pytest.raises(ex.ExportError, match="wider"):
        ex._out_shape(500, 500, ex._image_settings("thi", ex.ExportOptions(width=800)), "m")
