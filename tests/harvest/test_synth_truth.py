"""The generated projects record the truth by DESIGN.md's conventions.

Files are read with numpy/starfile (not with cryoglean's parsers) and transformed with
``harvest.conventions``; every expected set of every project must land on the true positions:
recentred sets within 0.01 px, raw picks within 1 px per axis. A recentring with the wrong sign
or a missing scale factor must miss (so a sign error in the writer or in conventions fails).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile

from harvest.conventions import (
    cryosparc_frac_to_pixels,
    micrograph_key,
    recentre_cryosparc,
    recentre_relion30,
    recentre_relion31,
    relion30_pixel_size,
)

RELION = ("relion30", "relion31", "relion40", "relion50")


# --------------------------------------------------------------------------------------------
# Readers (test-side, deliberately simple)
# --------------------------------------------------------------------------------------------


def _cs_group(project: Path, job: str, group: str) -> pd.DataFrame:
    """Main + passthrough files of one output group, joined on uid, as a flat DataFrame."""
    doc = json.loads((project / job / "job.json").read_text())
    files = []
    for r in doc["output_results"]:
        if r["group_name"] == group:
            f = r["metafiles"][0 if r["passthrough"] else -1]
            if f not in files:
                files.append(f)
    merged = None
    for f in files:
        arr = np.load(project / f, allow_pickle=False)
        cols = {}
        for name in arr.dtype.names:
            v = arr[name]
            if v.ndim == 2:
                for i in range(v.shape[1]):
                    cols[f"{name}[{i}]"] = v[:, i]
            else:
                cols[name] = v
        df = pd.DataFrame(cols)
        merged = df if merged is None else merged.merge(df, on="uid", how="inner",
                                                         suffixes=("", "_pt"))
    return merged


def _cryosparc_positions(project: Path, job: str, group: str, recentred: bool):
    d = _cs_group(project, job, group)
    shape = d[["location/micrograph_shape[0]", "location/micrograph_shape[1]"]].to_numpy()
    x, y = cryosparc_frac_to_pixels(d["location/center_x_frac"], d["location/center_y_frac"],
                                    shape)
    wrong = None
    if recentred:
        a = "alignments3D" if "alignments3D/psize_A" in d else "alignments2D"
        args = (d[f"{a}/shift[0]"], d[f"{a}/shift[1]"], d[f"{a}/psize_A"],
                d["location/micrograph_psize_A"])
        rx, ry = recentre_cryosparc(x, y, *args)
        # Wrong sign: x + shift*scale
        wrong = (2 * x - rx, 2 * y - ry)
        x, y = rx, ry
    mics = [micrograph_key(p) for p in d["location/micrograph_path"]]
    out = pd.DataFrame({"micrograph": mics, "x": x, "y": y, "uid": d["uid"].to_numpy()})
    return out, wrong


def _blocks(path: Path) -> dict:
    data = starfile.read(path, always_dict=True)
    return data


def _particles_block(path: Path) -> pd.DataFrame:
    b = _blocks(path)
    return b["particles"] if "particles" in b else b["images"]


def _mic_pixel_size(project: Path, flavour: str) -> float:
    b = _blocks(project / "CtfFind/job003/micrographs_ctf.star")
    if flavour == "relion30":
        t = next(iter(b.values()))
        return float(relion30_pixel_size(t["rlnDetectorPixelSize"], t["rlnMagnification"])[0])
    return float(b["optics"]["rlnMicrographPixelSize"][0])


def _relion_recentre(project: Path, flavour: str, star: Path, t: pd.DataFrame):
    mic_px = _mic_pixel_size(project, flavour)
    x, y = t["rlnCoordinateX"].to_numpy(), t["rlnCoordinateY"].to_numpy()
    if flavour == "relion30":
        part_px = relion30_pixel_size(t["rlnDetectorPixelSize"], t["rlnMagnification"])
        rx, ry = recentre_relion30(x, y, t["rlnOriginX"], t["rlnOriginY"], part_px, mic_px)
    else:
        rx, ry = recentre_relion31(x, y, t["rlnOriginXAngst"], t["rlnOriginYAngst"], mic_px)
    return rx, ry, (2 * x - rx, 2 * y - ry)


def _relion_positions(project: Path, flavour: str, job: str, name: str, recentred: bool):
    if name == "coords":
        suffix = "manualpick" if job.startswith("ManualPick") else "autopick"
        frames = []
        for f in sorted((project / job / "Movies").glob(f"*_{suffix}.star")):
            t = next(iter(_blocks(f).values()))
            if len(t):
                frames.append(pd.DataFrame({"micrograph": micrograph_key(f.name[: -len(
                    f"_{suffix}.star")]), "x": t["rlnCoordinateX"], "y": t["rlnCoordinateY"]}))
        return pd.concat(frames, ignore_index=True), None
    if name == "rejected":
        parent = _particles_block(project / "Class2D/job007/run_it025_data.star")
        kept = set(_particles_block(project / job / "particles.star")["rlnImageName"])
        t = parent[~parent["rlnImageName"].isin(kept)]
        star = project / "Class2D/job007/run_it025_data.star"
    else:
        star_name = {"class_1": "run_it025_data.star", "class_2": "run_it025_data.star"}.get(
            name, f"{name}.star")
        star = project / job / star_name
        t = _particles_block(star)
        if name.startswith("class_"):
            t = t[t["rlnClassNumber"] == int(name.split("_")[1])]
    wrong = None
    if recentred:
        x, y, wrong = _relion_recentre(project, flavour, star, t)
    else:
        x, y = t["rlnCoordinateX"].to_numpy(), t["rlnCoordinateY"].to_numpy()
    return pd.DataFrame({"micrograph": [micrograph_key(m) for m in t["rlnMicrographName"]],
                         "x": np.asarray(x, float), "y": np.asarray(y, float)}), wrong


def _match(found: pd.DataFrame, truth: pd.DataFrame) -> np.ndarray:
    """Per found row, (dx, dy) to the nearest true item of the same micrograph; each true
    item may be matched once."""
    out = np.full((len(found), 2), np.inf)
    fm = found["micrograph"].to_numpy()
    tm = truth["micrograph"].to_numpy()
    fxy = found[["x", "y"]].to_numpy(dtype=float)
    txy = truth[["x", "y"]].to_numpy(dtype=float)
    for m in np.unique(fm):
        fi, ti = np.flatnonzero(fm == m), np.flatnonzero(tm == m)
        assert len(ti), f"no true items on micrograph {m}"
        diff = fxy[fi, None, :] - txy[None, ti, :]
        nearest = np.argmin(np.hypot(diff[..., 0], diff[..., 1]), axis=1)
        assert len(set(nearest)) == len(nearest), f"two found rows match one true item on {m}"
        out[fi] = diff[np.arange(len(fi)), nearest]
    return out


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


def _has_shifts(expected) -> bool:
    """2D classification onwards the files carry shifts onto the truth (whether or not the
    harvester applies them: ``expected["recentred"]``)."""
    return expected["stage"] not in ("picked", "extracted")


def _check_set(facility, project_name, expected, found, wrong):
    truth = facility.expected_positions(project_name, expected["job"], expected["name"])
    label = f"{project_name} {expected['job']}:{expected['name']}"
    assert len(found) == expected["count"], label
    counts = found.groupby("micrograph").size().to_dict()
    assert counts == expected["per_micrograph"], label
    err = _match(found, truth)
    if _has_shifts(expected):
        assert np.abs(err).max() < 0.01, f"{label}: recentred centres off by {np.abs(err).max()}"
        wrong_found = found.assign(x=np.asarray(wrong[0]), y=np.asarray(wrong[1]))
        wrong_err = np.abs(_match(wrong_found, truth))
        assert wrong_err.max(axis=1).min() > 0.1, f"{label}: a sign error would go unnoticed"
    else:
        assert np.abs(err).max() < 1.0, f"{label}: raw picks off by {np.abs(err).max()}"
        assert np.abs(err).max() > 0.3, f"{label}: raw picks carry no pick error"


def test_cryosparc_sets_match_truth(facility):
    project = facility.projects["cryosparc"]
    assert {e["stage"] for e in facility.expected_sets("cryosparc") if e["recentred"]} == {
        "classified2d", "selected2d", "rejected2d", "refined", "classified3d"}
    for exp in facility.expected_sets("cryosparc"):
        found, wrong = _cryosparc_positions(project, exp["job"], exp["name"], _has_shifts(exp))
        _check_set(facility, "cryosparc", exp, found, wrong)
        truth = facility.expected_positions("cryosparc", exp["job"], exp["name"])
        assert set(found["uid"]) == set(truth["uid"].astype(np.uint64))


@pytest.mark.parametrize("flavour", RELION)
def test_relion_sets_match_truth(facility, flavour):
    project = facility.projects[flavour]
    for exp in facility.expected_sets(flavour):
        found, wrong = _relion_positions(project, flavour, exp["job"], exp["name"],
                                         _has_shifts(exp))
        _check_set(facility, flavour, exp, found, wrong)


def test_cryosparc_passthrough_row_order_differs(facility):
    """Joining main and passthrough files by row would mix particles up."""
    project = facility.projects["cryosparc"]
    main = np.load(project / "J8/particles_selected.cs")
    pt = np.load(project / "J8/J8_passthrough_particles_selected.cs")
    assert set(main["uid"]) == set(pt["uid"])
    assert (main["uid"] != pt["uid"]).any()


def test_scale_factor_is_exercised(facility):
    """Particles are binned by 2, so forgetting the psize ratio misses the truth."""
    project = facility.projects["cryosparc"]
    d = _cs_group(project, "J9", "particles")
    assert np.allclose(d["alignments3D/psize_A"], 2 * d["location/micrograph_psize_A"])
    exp = [e for e in facility.expected_sets("cryosparc") if e["job"] == "J9"][0]
    shape = d[["location/micrograph_shape[0]", "location/micrograph_shape[1]"]].to_numpy()
    x, y = cryosparc_frac_to_pixels(d["location/center_x_frac"], d["location/center_y_frac"],
                                    shape)
    unscaled = pd.DataFrame({
        "micrograph": [micrograph_key(p) for p in d["location/micrograph_path"]],
        "x": x - d["alignments3D/shift[0]"], "y": y - d["alignments3D/shift[1]"]})
    truth = facility.expected_positions("cryosparc", "J9", "particles")
    assert len(unscaled) == exp["count"]
    assert np.abs(_match(unscaled, truth)).max(axis=1).min() > 0.1
