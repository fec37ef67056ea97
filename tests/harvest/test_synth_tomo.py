"""The optional RELION 5 tomography project: picks relate to the truth by formats.md §5.3 and
RELION 5's picking program; the tomograms carry a missing wedge, the configured SNR and
unlabelled junk."""

from __future__ import annotations

from dataclasses import replace

import mrcfile
import numpy as np
import pytest
import starfile
from conftest import realfile
from scipy.ndimage import uniform_filter

from harvest.synth import FacilityConfig, load_facility, make_facility
from harvest.synth.tomo import PICKS_JOBS
from harvest.synth.tomo_volume import particle_voxels, simulate_tomogram, wedge_mask


@pytest.fixture(scope="module")
def tomo_facility(tmp_path_factory):
    root = tmp_path_factory.mktemp("tomo") / "f"
    config = replace(FacilityConfig(), n_micrographs=1, versions=("relion50_tomo",),
                     tomograms=2)
    return make_facility(root, config)


def _harvest_frame(project, picks_star):
    """Voxels of the tomogram file from a Picks job, as RELION's C++ code reads them."""
    tomos = starfile.read(project / "Tomograms/job002/tomograms.star", always_dict=True)["global"]
    picks = starfile.read(picks_star, always_dict=True)["particles"]
    t = tomos.set_index("rlnTomoName").loc[picks["rlnTomoName"]]
    coords = []
    for axis in "XYZ":
        unbinned = (picks[f"rlnCenteredCoordinate{axis}Angst"].to_numpy()
                    / t["rlnTomoTiltSeriesPixelSize"].to_numpy()
                    + t[f"rlnTomoSize{axis}"].to_numpy() / 2)
        coords.append(unbinned / t["rlnTomoTomogramBinning"].to_numpy())
    return picks["rlnTomoName"].to_numpy(), np.stack(coords, axis=1)


def test_picks_relate_to_truth(tomo_facility):
    project = tomo_facility.projects["relion50_tomo"]
    exp = tomo_facility.expected_sets("relion50_tomo")
    assert [e["job"] for e in exp] == list(PICKS_JOBS)
    for size_class, e in enumerate(exp):
        names, xyz = _harvest_frame(project, project / e["job"] / "particles.star")
        assert e["is_3d"] and e["count"] == len(xyz)
        truth = tomo_facility.expected_positions("relion50_tomo", e["job"], "particles")
        assert (truth["size_class"] == size_class).all()
        for name in set(names):
            got, true = xyz[names == name], truth.loc[truth["micrograph"] == name,
                                                      ["x", "y", "z"]].to_numpy()
            diff = got[:, None, :] - true[None, :, :]
            nearest = np.linalg.norm(diff, axis=2).argmin(axis=1)
            assert len(set(nearest)) == len(nearest) == len(true)
            err = np.abs(diff[np.arange(len(got)), nearest])
            # clicked 0.3-0.6 voxel off, plus RELION's Python/C++ centre offset of 1/binning
            assert err.max() < 0.6 + 1 / 8 + 1e-6 and err.max() > 0.3
    t = tomo_facility.tomograms[0]
    assert set(np.unique(t.classes)) == {0, 1}
    assert t.diameters_px[0] > t.diameters_px[1]
    # the annotations hold the clicked voxels (the picks less the 1/binning offset)
    ann = starfile.read(project / PICKS_JOBS[0] / "annotations" / f"{t.key}_particles.star")
    clicked = ann[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy()
    assert np.allclose(clicked, t.picks[t.classes == 0] - 1 / t.binning, atol=1e-5)


def test_tomogram_files_match_tomograms_star(tomo_facility):
    project = tomo_facility.projects["relion50_tomo"]
    tomos = starfile.read(project / "Tomograms/job002/tomograms.star", always_dict=True)["global"]
    assert list(tomos["rlnTomoName"]) == [t.key for t in tomo_facility.tomograms]
    for row, t in zip(tomos.itertuples(), tomo_facility.tomograms):
        rec = project / row.rlnTomoReconstructedTomogram
        assert rec.resolve() == t.path.resolve()
        with mrcfile.open(rec) as mrc:
            assert mrc.is_volume()
            nz, ny, nx = mrc.data.shape
            assert (nx * row.rlnTomoTomogramBinning, nz * row.rlnTomoTomogramBinning) == (
                row.rlnTomoSizeX, row.rlnTomoSizeZ)
            assert float(mrc.voxel_size.x) == pytest.approx(t.pixel_size)


def test_crawl_harvests_truth_within_one_voxel(tomo_facility, tmp_path):
    from harvest.catalog import Catalog
    from harvest.crawl import crawl

    db = tmp_path / "c.db"
    assert crawl([tomo_facility.root], db, progress=False).problems == 0
    with Catalog(db, readonly=True) as cat:
        mics = cat.micrographs().set_index("id")
        sets = cat.particle_sets()
        for e in tomo_facility.expected_sets("relion50_tomo"):
            s = sets[(sets["job_key"] == e["job"]) & (sets["name"] == "particles")]
            assert len(s) == 1 and int(s["count"].iloc[0]) == e["count"]
            parts = cat.particles(s["id"])
            truth = tomo_facility.expected_positions("relion50_tomo", e["job"], "particles")
            keys = mics.loc[parts["micrograph_id"], "key"].to_numpy()
            for key in set(keys):
                got = parts.loc[keys == key, ["x", "y", "z"]].to_numpy(float)
                true = truth.loc[truth["micrograph"] == key, ["x", "y", "z"]].to_numpy()
                d = np.abs(got[:, None, :] - true[None, :, :]).max(axis=2)
                assert d.min(axis=1).max() <= 1.0 and len(set(d.argmin(axis=1))) == len(got)


def test_missing_wedge_in_fourier_space(tomo_facility):
    t = tomo_facility.tomograms[0]
    vol = mrcfile.read(t.path).astype(np.float64)
    power = np.abs(np.fft.rfftn(vol - vol.mean())) ** 2
    measured = wedge_mask(vol.shape, 60.0)
    inside = wedge_mask(vol.shape, 55.0)  # a margin either side of the wedge's edge
    missing = ~wedge_mask(vol.shape, 65.0)
    assert power[missing].mean() < 1e-8 * power[inside].mean()
    assert measured.mean() < 0.75  # a wedge, not a sliver: ~1/3 of Fourier space is gone


def test_snr_as_configured(tmp_path):
    # Components: the volume is signal + noise at the configured ratio over particle voxels.
    config = replace(FacilityConfig(), tomo_size=(96, 96, 48), tomo_snr=0.1).validate()
    vol, truth = simulate_tomogram(config, np.random.default_rng(3), keep_components=True)
    comp = truth.components
    assert np.allclose(vol, comp["signal"] + comp["noise"], atol=1e-4)
    mask = particle_voxels(vol.shape, truth.particles, truth.classes, truth.diameters_px)
    ratio = comp["particle_signal"][mask].var() / comp["noise"].var()
    assert ratio == pytest.approx(0.1, rel=1e-6)
    # From the volume alone (no components), at an SNR high enough to measure: particle
    # voxels carry signal + noise variance, voxels far from every item noise only.
    config = replace(config, tomo_snr=2.0, tomo_gold=0, tomo_membranes=0)
    vol, truth = simulate_tomogram(config, np.random.default_rng(4))
    mask = particle_voxels(vol.shape, truth.particles, truth.classes, truth.diameters_px)
    far = ~particle_voxels(vol.shape, truth.particles, truth.classes,
                           [3 * d for d in truth.diameters_px])
    assert far.sum() > 5000
    noise = vol[far].var()
    assert (vol[mask].var() - noise) / noise == pytest.approx(2.0, rel=0.25)


def test_junk_is_present_and_unlabelled(tomo_facility):
    for t in tomo_facility.tomograms:
        assert {"gold", "membrane"} <= set(t.junk_kinds)
        smooth = uniform_filter(mrcfile.read(t.path).astype(np.float64), 3)  # 3³ means
        for c, kind, r in zip(t.junk, t.junk_kinds, t.junk_radius):
            if kind == "gold":  # dense beads: their centres are among the darkest places
                x, y, z = np.rint(c).astype(int)
                assert smooth[z, y, x] < np.percentile(smooth, 0.5)
                near = np.linalg.norm(t.picks - c, axis=1)
                assert near.min() > r + min(t.diameters_px) / 2
            else:  # no pick on the membrane shell
                shell = np.abs(np.linalg.norm(t.picks - c, axis=1) - r)
                assert shell.min() > min(t.diameters_px) / 2


def test_round_trip_and_layout(tomo_facility, realdata):
    again = load_facility(tomo_facility.root)
    for a, b in zip(again.tomograms, tomo_facility.tomograms):
        assert np.allclose(a.particles, b.particles) and (a.classes == b.classes).all()
        assert a.junk_kinds == b.junk_kinds and np.allclose(a.junk, b.junk)
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
    opt = starfile.read(project / PICKS_JOBS[1] / "optimisation_set.star", always_dict=True)
    assert list(opt["optimisation_set"]["rlnTomoParticlesFile"]) == [
        f"{PICKS_JOBS[1]}/particles.star"]


def test_big_tomograms_on_request(tmp_path):
    config = replace(FacilityConfig(), tomo_size=(160, 144, 64), tomo_particles=(20, 12),
                     tomograms=1).validate()
    vol, truth = simulate_tomogram(config, np.random.default_rng(0))
    assert vol.shape == (64, 144, 160) and vol.dtype == np.float32
    assert np.bincount(truth.classes).tolist() == [20, 12]
    with pytest.raises(ValueError, match="tomo_size"):
        replace(FacilityConfig(), tomo_size=(128, 128)).validate()
    with pytest.raises(ValueError, match="tilt_range"):
        replace(FacilityConfig(), tilt_range=95.0).validate()


def test_demo_data_options(tmp_path):
    from click.testing import CliRunner

    from harvest.synth.cli import demo_data_command

    run = CliRunner().invoke
    res = run(demo_data_command, [str(tmp_path / "a"), "--tomograms", "2"])
    assert res.exit_code == 2 and "add it to --versions" in res.output
    res = run(demo_data_command, [str(tmp_path / "b"), "--versions", "relion50_tomo",
                                  "--tomo-size", "64x64"])
    assert res.exit_code == 2 and "3 positive whole numbers" in res.output
    res = run(demo_data_command, [str(tmp_path / "c"), "--versions", "relion50_tomo",
                                  "--micrographs", "1", "--tomograms", "2", "--tomo-size",
                                  "96x80x40", "--tomo-particles", "5,3", "--tomo-snr", "0.5",
                                  "--tilt-range", "45", "--quiet"])
    assert res.exit_code == 0, res.output
    fac = load_facility(tmp_path / "c")
    assert fac.config.tomo_size == (96, 80, 40) and fac.config.tilt_range == 45.0
    assert [t.key for t in fac.tomograms] == ["TS_01", "TS_02"]
    assert all((t.nx, t.ny, t.nz) == (96, 80, 40) and np.bincount(t.classes).tolist() == [5, 3]
               and t.snr == 0.5 for t in fac.tomograms)


def test_optimisation_set_names_the_tomograms(tomo_facility, tmp_path):
    """RELION 5's Python picker writes optimisation_set.star as a one-row loop; it alone
    (no pipeline input edge to Tomograms/) leads the crawl to tomograms.star."""
    import shutil

    from harvest.catalog import Catalog
    from harvest.crawl import crawl

    root = tmp_path / "copy"
    shutil.copytree(tomo_facility.projects["relion50_tomo"], root / "relion50_tomo")
    pipeline = root / "relion50_tomo" / "default_pipeline.star"
    text = pipeline.read_text()
    start = text.index("data_pipeline_input_edges")
    end = text.index("data_pipeline_output_edges")
    pipeline.write_text(text[:start] + text[end:])
    db = tmp_path / "c.db"
    assert crawl([root], db, progress=False).problems == 0
    with Catalog(db, readonly=True) as cat:
        sets = cat.particle_sets()
        assert sorted(sets["job_key"]) == sorted(PICKS_JOBS) and sets["is_3d"].all()
        assert cat.micrographs()["nz"].notna().all()
