"""Tomograms in the frame of a file that exists (issue 10, item 5): a RELION 5 tomograms.star
that names only the half or denoised reconstructions places picks in that file's voxels, with
its binning and size; Warp's ``.tomostar`` names match their tomograms."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from harvest.conventions import micrograph_key
from harvest.relion import parse_job, particle_set_from_star, scan_project
from harvest.starread import read_star
from harvest.starwrite import write_star

TOMOS = "Tomograms/job002/tomograms.star"


@pytest.fixture(scope="module")
def tomo(tmp_path_factory):
    from harvest.synth import FacilityConfig, make_facility

    root = tmp_path_factory.mktemp("tomo_rec")
    return make_facility(root / "f", FacilityConfig(n_micrographs=1,
                                                    versions=("relion50_tomo",)), force=True)


def _variant(tomo, tmp_path, columns: dict[str, str | None], keep_full: bool):
    """A copy of the tomography project whose tomograms.star names ``columns`` (label → file
    suffix, the file written beside the original; None: named but absent)."""
    root = tmp_path / "proj"
    shutil.copytree(tomo.projects["relion50_tomo"], root, symlinks=True)
    star = root / TOMOS
    data = read_star(star, parse_as_string=("rlnTomoReconstructedTomogram",))
    table = data["global"]
    full = str(table["rlnTomoReconstructedTomogram"].iloc[0])
    src = (root / full).resolve()
    for label, suffix in columns.items():
        tag = label.removeprefix("rlnTomoReconstructedTomogram").lower()
        name = full.replace(".mrc", f"_{tag}.mrc")
        table[label] = name
        if suffix is not None:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, root / name)
    if not keep_full:
        table = table.drop(columns=["rlnTomoReconstructedTomogram"])
    else:
        (root / full).unlink()  # named, but gone
    data["global"] = table
    write_star(star, list(data.items()), 50001)
    return root


def _picks(root):
    scan = scan_project(root)
    rec = parse_job(scan, "Picks/job003")
    (pset,) = rec.particle_sets
    (mic,) = rec.micrographs
    return pset.particles, mic, rec


@pytest.mark.parametrize("columns,keep_full,used", [
    ({"rlnTomoReconstructedTomogramHalf1": "", "rlnTomoReconstructedTomogramHalf2": ""},
     False, "half1"),
    ({"rlnTomoReconstructedTomogramDenoised": ""}, False, "denoised"),
    ({"rlnTomoReconstructedTomogramHalf1": ""}, True, "half1"),  # full named but deleted
])
def test_the_reconstruction_that_exists_gives_the_frame(tomo, tmp_path, columns, keep_full,
                                                        used):
    want, want_mic, _ = _picks(tomo.projects["relion50_tomo"])
    got, mic, rec = _picks(_variant(tomo, tmp_path, columns, keep_full))
    for axis in ("x", "y", "z"):  # voxels of the (binned) reconstruction, as with the full one
        np.testing.assert_allclose(got[axis], want[axis])
    t = tomo.tomograms[0]
    assert (mic.nx, mic.ny, mic.nz) == (t.nx, t.ny, t.nz) and mic.size_source == "header"
    assert mic.abs_path.endswith(f"_{used}.mrc")  # the record names the reconstruction used
    assert mic.pixel_size == pytest.approx(want_mic.pixel_size)


def test_a_named_reconstruction_that_is_gone_keeps_its_binning(tomo, tmp_path):
    want, _, _ = _picks(tomo.projects["relion50_tomo"])
    root = _variant(tomo, tmp_path, {"rlnTomoReconstructedTomogramHalf1": None}, False)
    got, mic, _ = _picks(root)
    np.testing.assert_allclose(got["x"], want["x"])
    t = tomo.tomograms[0]
    assert (mic.nx, mic.ny, mic.nz) == (t.nx, t.ny, t.nz) and mic.size_source == "metadata"


def test_warp_tomostar_names_match_their_tomograms(realdata, tmp_path):
    base = realdata / "bpowell122__tomodrgn/testing/data"
    star = base / "warptools_test_4-tomos_10-ptcls_box-32_angpix-12.star"
    tomos = base / "warptools_test_4-tomos_10-ptcls_box-32_angpix-12_tomograms.star"
    if not star.is_file():
        pytest.skip("WarpTools files not in realdata")
    pset, mics = particle_set_from_star(star, "particles", "picked", tmp_path,
                                        tomograms_star=tomos)
    keys = {m.key for m in mics}
    assert keys and not any(k.endswith(".tomostar") for k in keys)
    assert {micrograph_key(n) for n in pset.particles["micrograph"]} == keys
    assert micrograph_key("Unt_083.tomostar") == micrograph_key("Tomograms/Unt_083.mrc")
