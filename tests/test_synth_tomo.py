"""The optional RELION 5 tomography project: picks relate to the truth by formats.md §5.3."""

from __future__ import annotations

from dataclasses import replace

import mrcfile
import numpy as np
import pytest
import starfile
from conftest import realfile

from harvest.synth import FacilityConfig, load_facility, make_facility


@pytest.fixture(scope="module")
def tomo_facility(tmp_path_factory):
    root = tmp_path_factory.mktemp("tomo") / "f"
    config = replace(FacilityConfig(), n_micrographs=1, versions=("relion50_tomo",))
    return make_facility(root, config)


def test_picks_relate_to_truth(tomo_facility):
    project = tomo_facility.projects["relion50_tomo"]
    tomos = starfile.read(project / "Tomograms/job002/tomograms.star", always_dict=True)["global"]
    picks = starfile.read(project / "Picks/job003/particles.star", always_dict=True)["particles"]
    exp = tomo_facility.expected_sets("relion50_tomo")
    assert len(exp) == 1 and exp[0]["is_3d"] and exp[0]["count"] == len(picks)
    truth = tomo_facility.expected_positions("relion50_tomo", "Picks/job003", "particles")
    t = tomos.set_index("rlnTomoName").loc[picks["rlnTomoName"]]
    coords = []
    for axis in "XYZ":
        unbinned = (picks[f"rlnCenteredCoordinate{axis}Angst"].to_numpy()
                    / t["rlnTomoTiltSeriesPixelSize"].to_numpy()
                    + t[f"rlnTomoSize{axis}"].to_numpy() / 2)
        coords.append(unbinned / t["rlnTomoTomogramBinning"].to_numpy())
    xyz = np.stack(coords, axis=1)
    true = truth[["x", "y", "z"]].to_numpy()
    diff = xyz[:, None, :] - true[None, :, :]
    nearest = np.linalg.norm(diff, axis=2).argmin(axis=1)
    assert len(set(nearest)) == len(nearest)
    err = np.abs(diff[np.arange(len(xyz)), nearest])
    assert 0.3 <= err.max() < 1.0
    # the tomogram file is the one tomograms.star names, with the size it gives (binned)
    rec = project / tomos["rlnTomoReconstructedTomogram"][0]
    with mrcfile.open(rec) as mrc:
        assert mrc.is_volume()
        nz, ny, nx = mrc.data.shape
        assert nx * tomos["rlnTomoTomogramBinning"][0] == tomos["rlnTomoSizeX"][0]
        assert nz * tomos["rlnTomoTomogramBinning"][0] == tomos["rlnTomoSizeZ"][0]
        assert float(mrc.voxel_size.x) == pytest.approx(tomo_facility.tomograms[0].pixel_size)
    assert rec.resolve() == tomo_facility.tomograms[0].path.resolve()


def test_round_trip_and_layout(tomo_facility, realdata):
    again = load_facility(tomo_facility.root)
    assert np.allclose(again.tomograms[0].particles, tomo_facility.tomograms[0].particles)
    assert again.expected_sets("relion50_tomo") == tomo_facility.expected_sets("relion50_tomo")
    project = tomo_facility.projects["relion50_tomo"]
    real = starfile.read(realfile(realdata, "3dem/relion", "src/tomography_python_programs/_tests/"
                                  "test_project_directory/tilt_series_metadata/tilt_series.star"),
                         always_dict=True)["global"]
    ours = starfile.read(project / "Tomograms/job002/tomograms.star", always_dict=True)["global"]
    # rlnEtomoDirectiveFile comes from IMOD tilt-series alignment, a job this project lacks.
    assert set(real.columns) - {"rlnEtomoDirectiveFile"} <= set(ours.columns)
    pipeline = starfile.read(project / "default_pipeline.star", always_dict=True)
    assert "rlnPipeLineNodeTypeLabelDepth" in pipeline["pipeline_nodes"]
    assert "# version 50001" in (project / "default_pipeline.star").read_text()
