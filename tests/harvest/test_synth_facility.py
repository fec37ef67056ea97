"""make_facility / load_facility: layout, ground truth, expected sets, determinism, refusal."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import mrcfile
import numpy as np
import pytest

from harvest.synth import FacilityConfig, load_facility, make_facility
from harvest.synth.config import VERSIONS

TINY = FacilityConfig(n_micrographs=2, nx=256, ny=256, pixel_size=2.0, diameter_A=60.0,
                      particles_per_micrograph=8, junk_per_micrograph=2)


def test_default_facility_layout(facility):
    assert set(facility.projects) == set(VERSIONS)
    assert facility.config == FacilityConfig()
    assert (facility.root / "facility.json").is_file()
    for name, root in facility.projects.items():
        assert root.is_dir() and facility.root in root.parents, name
    assert len(facility.micrographs) == 6
    for m in facility.micrographs:
        assert m.path == facility.root / "micrographs" / f"{m.key}.mrc"
        with mrcfile.open(m.path, permissive=False) as mrc:
            assert mrc.data.dtype == np.float32 and mrc.data.shape == (m.ny, m.nx)
            assert float(mrc.voxel_size.x) == pytest.approx(m.pixel_size)
        assert m.diameter_px == pytest.approx(80.0 / 1.5)
        assert len(m.particles) == 20


def test_truth_frame(facility):
    truth = facility.truth_frame()
    assert list(truth.columns) == ["micrograph", "x", "y", "kind", "index"]
    assert set(truth["kind"]) == {"particle", "junk"}
    for m in facility.micrographs:
        rows = truth[(truth["micrograph"] == m.key) & (truth["kind"] == "particle")]
        assert np.allclose(rows[["x", "y"]].to_numpy(), m.particles[rows["index"]])


def test_expected_sets_are_consistent(facility):
    for project in facility.projects:
        sets = {(s["job"], s["name"]): s for s in facility.expected_sets(project)}
        assert len(sets) == 9
        for s in sets.values():
            assert sum(s["per_micrograph"].values()) == s["count"] > 0
            assert s["recentred"] == (s["stage"] not in ("picked", "extracted"))
        by_stage: dict[str, list] = {}
        for s in sets.values():
            by_stage.setdefault(s["stage"], []).append(s)
        classified2d = by_stage["classified2d"][0]["count"]
        extracted = by_stage["extracted"][0]["count"]
        assert classified2d == extracted
        assert by_stage["selected2d"][0]["count"] + by_stage["rejected2d"][0]["count"] == extracted
        per_class = by_stage["classified3d"]
        # class numbers as each package numbers them: CryoSPARC 0-based, RELION 1-based
        first = 0 if project == "cryosparc" else 1
        assert sorted(s["class_id"] for s in per_class) == [first, first + 1]
        assert sum(s["count"] for s in per_class) == by_stage["refined"][0]["count"]
        picks = sorted(s["count"] for s in by_stage["picked"])
        n_particles = sum(len(m.particles) for m in facility.micrographs)
        assert picks[0] < 0.5 * n_particles  # manual picks are sparse
        assert picks[1] >= n_particles  # auto picks: every particle and most junk
    # The same true particles in every package
    ref = facility.expected_positions("cryosparc", "J9", "particles")
    for flavour in ("relion30", "relion31", "relion40", "relion50"):
        other = facility.expected_positions(flavour, "Refine3D/job010", "run_data")
        assert other.equals(ref)
    with pytest.raises(ValueError, match="not in this facility"):
        facility.expected_sets("relion99")


def test_load_round_trip(facility):
    again = load_facility(facility.root)
    assert again.config == facility.config
    assert again.projects == facility.projects
    assert again.truth_frame().equals(facility.truth_frame())
    assert again.expected_sets("relion31") == facility.expected_sets("relion31")
    assert again.scenario.items["uid"].dtype == np.uint64
    assert np.array_equal(again.scenario.items["uid"], facility.scenario.items["uid"])
    for a, b in zip(again.micrographs, facility.micrographs):
        assert a.to_dict() == b.to_dict()


def test_refuses_non_empty_directory(tmp_path):
    target = tmp_path / "fac"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty") as err:
        make_facility(target, TINY)
    assert "\n" not in str(err.value)
    config = replace(TINY, versions=("relion31",))
    fac = make_facility(target, config, force=True)
    assert (target / "notes.txt").read_text() == "mine"  # force replaces only a facility
    fac2 = make_facility(target, config, force=True)
    assert fac2.truth_frame().equals(fac.truth_frame())


def test_invalid_config_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown version 'relion99'"):
        make_facility(tmp_path / "a", FacilityConfig(versions=("relion99",)))
    with pytest.raises(ValueError, match="nx must be a positive integer"):
        make_facility(tmp_path / "b", FacilityConfig(nx=-3))
    assert not (tmp_path / "a").exists()


def test_load_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="facility.json"):
        load_facility(tmp_path)


def test_deterministic_files(tmp_path):
    config = replace(TINY, versions=("cryosparc", "relion30", "relion50"))
    a = make_facility(tmp_path / "a", config)
    b = make_facility(tmp_path / "b", config)
    c = make_facility(tmp_path / "c", replace(TINY, seed=1, versions=("relion31",)))
    for rel in ("micrographs/mic_0001.mrc",
                "cryosparc/CS-cryoglean-demo/J10/J10_class_01_final_particles.cs",
                "relion30/Refine3D/job010/run_data.star",
                "relion50/default_pipeline.star"):
        assert (a.root / rel).read_bytes() == (b.root / rel).read_bytes(), rel
    assert (a.root / "micrographs/mic_0001.mrc").read_bytes() != (
        c.root / "micrographs/mic_0001.mrc").read_bytes()
    doc = json.loads((a.root / "facility.json").read_text())
    assert doc["config"]["seed"] == 0 and len(doc["micrographs"]) == 2


def test_copied_facility_still_resolves(tmp_path):
    import shutil

    fac = make_facility(tmp_path / "orig", replace(TINY, versions=("cryosparc", "relion31")))
    shutil.copytree(fac.root, tmp_path / "copy", symlinks=True)
    shutil.rmtree(fac.root)
    copy = load_facility(tmp_path / "copy")
    links = list(copy.projects["cryosparc"].rglob("*.mrc")) + list(
        copy.projects["relion31"].rglob("*.mrc"))
    assert links
    for link in links:
        if link.is_symlink():
            assert link.resolve().is_file(), link
            assert link.resolve().parent == (tmp_path / "copy" / "micrographs").resolve()


def test_versions_subset_and_shape(tmp_path):
    fac = make_facility(tmp_path / "f", replace(TINY, versions=("relion40",), shape="ring"))
    assert list(fac.projects) == ["relion40"]
    assert not (tmp_path / "f" / "cryosparc").exists()


@pytest.mark.slow
def test_default_facility_is_fast(tmp_path):
    start = time.perf_counter()
    make_facility(tmp_path / "f")
    assert time.perf_counter() - start < 30.0


def test_tiny_facility_with_empty_sets(tmp_path):
    """A facility so small that some sets are empty is still written (empty .cs keep dtypes)."""
    from harvest.synth import FacilityConfig, make_facility

    fac = make_facility(tmp_path / "tiny", FacilityConfig(n_micrographs=2, nx=256, ny=256))
    counts = {(e["job"], e["name"]): e["count"] for e in fac.expected_sets("cryosparc")}
    assert 0 in counts.values()
