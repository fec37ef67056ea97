"""Generated files have the layout of real files of the same kind (../shared/realdata).

Every .cs loads with cryosparc-tools and its fields have the dtypes of the same fields in real
CryoSPARC files; every STAR file reads with ``starfile`` and uses block names and columns that
real RELION files use (labels no real file in realdata carries are listed with their source).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import starfile
from conftest import realfile

CS_REAL = [
    ("cryoem-uoft/cryosparc-tools", "tests/data/4k_dataset.cs"),
    ("ml-struct-bio/cryodrgn", "tests/data/cryosparc_J2_particles_exported.cs"),
    ("ml-struct-bio/cryodrgn", "tests/data/cryosparc_P12_J24_001_particles.cs"),
]
PIPELINE_REAL = ("teamtomo/starfile", "tests/data/default_pipeline.star")
PARTICLES_REAL = {
    "relion30": [
        ("ComputationalCryoEM/ASPIRE-Python",
         "tests/saved_test_data/sample_particles_relion30.star"),
        ("ml-struct-bio/cryodrgn", "tests/data/FinalRefinement-OriginalParticles-PfCRT.star"),
        ("tbepler/topaz", "test/test_data/EMPIAR-10025/rawdata/particles.star"),
    ],
    "relion31": [
        ("ComputationalCryoEM/ASPIRE-Python",
         "tests/saved_test_data/sample_particles_relion31.star"),
        ("ml-struct-bio/cryodrgn", "tests/data/relion31.star"),
        ("ml-struct-bio/cryodrgn", "tests/data/relion31.6opticsgroups.star"),
    ],
    "relion50": [("ml-struct-bio/cryodrgn", "tests/data/relion5.star")],
}
PARTICLES_REAL["relion40"] = PARTICLES_REAL["relion31"] + PARTICLES_REAL["relion50"]
PARTICLES_REAL["relion50"] = PARTICLES_REAL["relion40"]

# Labels RELION writes that no file in realdata carries (source: reference/formats.md §4).
DOCUMENTED_ONLY = {
    "rlnMicrographCoordinates",  # 4.x manualpick.star/autopick.star (§4.2)
    "rlnParticleSelectionType",  # 4.x per-micrograph manual picks (§4.2)
    "rlnPipeLineProcessTypeLabel", "rlnPipeLineProcessStatusLabel",  # 4.x/5.x (§4.1)
    "rlnPipeLineNodeTypeLabel", "rlnPipeLineNodeTypeLabelDepth",  # 4.x/5.x (§4.1)
    "rlnJobType", "rlnJobIsTomo",  # job.star 3.1 / 4.x-5.x (§4.1)
    "rlnSelected",  # Select backup_selection.star
    # per-micrograph motion metadata (rlnMicrographMetadata), [relion] micrograph_model.cpp
    # Micrograph::write: data_general + data_global_shift
    "rlnImageSizeX", "rlnImageSizeY", "rlnImageSizeZ", "rlnMicrographBinning",
    "rlnMicrographDoseRate", "rlnMicrographStartFrame", "rlnMotionModelVersion",
    "rlnMicrographFrameNumber", "rlnMicrographShiftX", "rlnMicrographShiftY",
}


def _columns(blocks: dict) -> set[str]:
    out: set[str] = set()
    for table in blocks.values():
        out |= set(table.columns) if hasattr(table, "columns") else set(table)
    return out


def _all_real_columns(realdata: Path) -> set[str]:
    cols: set[str] = set()
    for p in realdata.rglob("*.star"):
        try:
            cols |= _columns(starfile.read(p, always_dict=True))
        except Exception:  # a real file starfile cannot read says nothing about ours
            continue
    return cols


def _generated_stars(project: Path) -> list[Path]:
    # RELION 3.x coords_suffix_*.star files hold a path, not STAR (as RELION writes them).
    return [p for p in sorted(project.rglob("*.star")) if not p.name.startswith("coords_suffix")]


def test_every_cs_loads_with_cryosparc_tools(facility):
    dataset = pytest.importorskip("cryosparc.dataset", reason="cryosparc-tools not installed")
    files = sorted(facility.projects["cryosparc"].rglob("*.cs"))
    assert len(files) > 20
    for f in files:
        ds = dataset.Dataset.load(f)
        arr = np.load(f, allow_pickle=False)
        assert len(ds) == len(arr), f
        assert set(ds.fields()) == set(arr.dtype.names), f


def test_cs_dtypes_match_real_files(facility, realdata):
    real: dict[str, np.dtype] = {}
    for repo, path in CS_REAL:
        arr = np.load(realfile(realdata, repo, path), allow_pickle=False)
        for name in arr.dtype.names:
            real.setdefault(name, arr.dtype[name])
    checked = set()
    for f in sorted(facility.projects["cryosparc"].rglob("*.cs")):
        arr = np.load(f, allow_pickle=False)
        for name in arr.dtype.names:
            if name not in real:
                continue
            ours, theirs = arr.dtype[name], real[name]
            if theirs.kind == "S":
                assert ours.kind == "S" and ours.shape == theirs.shape, (f, name, ours)
            else:
                assert (ours.base.str, ours.shape) == (theirs.base.str, theirs.shape), (
                    f, name, ours, theirs)
            checked.add(name)
    # The fields the harvester relies on were all compared.
    for must in ("uid", "location/micrograph_shape", "location/center_x_frac",
                 "location/micrograph_psize_A", "location/micrograph_uid",
                 "location/micrograph_path", "blob/path", "blob/psize_A", "ctf/df1_A",
                 "pick_stats/ncc_score", "alignments2D/shift", "alignments3D/shift",
                 "alignments3D/psize_A", "alignments3D/class", "alignments_class_0/shift"):
        assert must in checked, must


@pytest.mark.parametrize("flavour", ["relion30", "relion31", "relion40", "relion50"])
def test_star_files_read_and_use_real_labels(facility, realdata, flavour):
    known = _all_real_columns(realdata) | DOCUMENTED_ONLY
    project = facility.projects[flavour]
    stars = _generated_stars(project)
    assert len(stars) > 20
    for p in stars:
        cols = _columns(starfile.read(p, always_dict=True))
        assert cols, p
        assert cols <= known, f"{p}: labels no real file uses: {sorted(cols - known)}"
        text = p.read_text()
        header = {"relion30": None, "relion31": "# version 30001",
                  "relion40": "# version 30001", "relion50": "# version 50001"}[flavour]
        if header is None:
            assert "# version" not in text, p
        else:
            assert header in text, p


@pytest.mark.parametrize("flavour", ["relion30", "relion31", "relion40", "relion50"])
def test_particle_stars_like_real_ones(facility, realdata, flavour):
    real_blocks: set[str] = set()
    real_cols: set[str] = set()
    for repo, path in PARTICLES_REAL[flavour]:
        blocks = starfile.read(realfile(realdata, repo, path), always_dict=True)
        real_blocks |= set(blocks)
        real_cols |= _columns(blocks)
    project = facility.projects[flavour]
    for rel in ("Extract/job006/particles.star", "Class2D/job007/run_it025_data.star",
                "Select/job008/particles.star", "Class3D/job009/run_it025_data.star",
                "Refine3D/job010/run_data.star"):
        blocks = starfile.read(project / rel, always_dict=True)
        expected = {"images"} if flavour == "relion30" else {"optics", "particles"}
        assert set(blocks) == expected, rel
        assert set(blocks) <= real_blocks, rel
        assert _columns(blocks) <= real_cols, (rel, sorted(_columns(blocks) - real_cols))
    origin = "rlnOriginX" if flavour == "relion30" else "rlnOriginXAngst"
    assert origin in _columns(starfile.read(project / "Refine3D/job010/run_data.star",
                                            always_dict=True))


@pytest.mark.parametrize("flavour", ["relion30", "relion31", "relion40", "relion50"])
def test_pipeline_like_real_one(facility, realdata, flavour):
    real = starfile.read(realfile(realdata, *PIPELINE_REAL), always_dict=True)
    ours = starfile.read(facility.projects[flavour] / "default_pipeline.star", always_dict=True)
    assert list(ours) == list(real)
    for block in ("pipeline_input_edges", "pipeline_output_edges"):
        assert list(ours[block].columns) == list(real[block].columns)
    processes = list(ours["pipeline_processes"].columns)
    nodes = list(ours["pipeline_nodes"].columns)
    if flavour in ("relion30", "relion31"):
        assert processes == list(real["pipeline_processes"].columns)
        assert nodes == list(real["pipeline_nodes"].columns)
        assert ours["pipeline_processes"]["rlnPipeLineProcessType"].dtype.kind == "i"
    else:
        assert processes[2:] == ["rlnPipeLineProcessTypeLabel", "rlnPipeLineProcessStatusLabel"]
        depth = ["rlnPipeLineNodeTypeLabelDepth"] if flavour == "relion50" else []
        assert nodes == ["rlnPipeLineNodeName", "rlnPipeLineNodeTypeLabel", *depth]


@pytest.mark.parametrize("flavour", ["relion30", "relion31", "relion40", "relion50"])
def test_relion_job_folders(facility, flavour):
    project = facility.projects[flavour]
    ok = project / "Refine3D/job010/RELION_JOB_EXIT_SUCCESS"
    failed = project / "Class2D/job011/RELION_JOB_EXIT_FAILURE"
    if flavour == "relion30":
        assert not ok.exists() and not failed.exists()
        assert (project / "Refine3D/job010/run.job").is_file()
    else:
        assert ok.exists() and failed.exists()
        assert (project / "Refine3D/job010/job.star").is_file()
    assert (project / "Refine3D/job010/note.txt").is_file()
    assert not (project / "Class2D/job011/run_it025_data.star").exists()
    coords = ("ManualPick/job004/manualpick.star" if flavour in ("relion40", "relion50")
              else "ManualPick/job004/coords_suffix_manualpick.star")
    assert (project / coords).is_file()
    link = project / "MotionCorr/job002/Movies/mic_0001.mrc"
    assert link.is_symlink() and not Path(link.readlink()).is_absolute()
    assert link.resolve() == facility.micrographs[0].path.resolve()


def test_cryosparc_job_documents(facility):
    import json

    project = facility.projects["cryosparc"]
    for name in ("project.json", "workspaces.json", "job_manifest.json"):
        assert (project / name).is_file()
    jobs = json.loads((project / "job_manifest.json").read_text())["jobs"]
    statuses = {}
    for uid in jobs:
        doc = json.loads((project / uid / "job.json").read_text())
        assert doc["uid"] == uid and doc["type"] == doc["job_type"]
        assert isinstance(doc["created_at"]["$date"], int)
        statuses[uid] = doc["status"]
        for r in doc["output_results"]:
            for mf in r["metafiles"]:
                assert (project / mf).is_file(), (uid, mf)
        for child in doc["children"]:
            assert uid in json.loads((project / child / "job.json").read_text())["parents"]
    assert statuses["J11"] == "failed" and statuses["J12"] == "running"
    assert list(statuses.values()).count("completed") == 10
    j7 = json.loads((project / "J7/job.json").read_text())
    blob = [r for r in j7["output_results"] if r["name"] == "alignments2D"][0]
    assert blob["metafiles"][-1] == "J7/J7_020_particles.cs" and len(blob["metafiles"]) == 3
    link = next((project / "J2/motioncorrected").iterdir())
    assert link.name[:21].isdigit() and link.name[21] == "_"
    assert link.name.endswith("_patch_aligned_doseweighted.mrc")
    assert link.is_symlink() and not Path(link.readlink()).is_absolute()
    assert link.resolve().parent == (facility.root / "micrographs").resolve()


def test_particle_stacks_exist_and_hold_the_boxes(facility):
    """Extracted particles point at real image stacks (ispg 0), binned by 2."""
    import mrcfile

    project = facility.projects["cryosparc"]
    arr = np.load(project / "J6/extracted_particles.cs", allow_pickle=False)
    box = facility.scenario.box_px // 2
    assert (arr["blob/shape"] == box).all()
    for path in set(arr["blob/path"]):
        with mrcfile.open(project / path.decode()) as mrc:
            assert mrc.is_image_stack() and mrc.data.shape[1:] == (box, box)
            on_stack = arr["blob/idx"][arr["blob/path"] == path]
            assert sorted(on_stack) == list(range(mrc.data.shape[0]))
    relion = facility.projects["relion31"]
    t = starfile.read(relion / "Extract/job006/particles.star", always_dict=True)["particles"]
    for name in t["rlnImageName"]:
        index, stack = name.split("@")
        with mrcfile.open(relion / stack, header_only=True) as mrc:
            assert 1 <= int(index) <= int(mrc.header.nz)


def test_cryosparc_csg_descriptors(facility):
    """Each output group has a .csg (YAML) whose '>' metafiles exist beside it."""
    import yaml

    project = facility.projects["cryosparc"]
    csgs = sorted(project.rglob("*.csg"))
    assert any(p.name == "J8_particles_selected.csg" for p in csgs)
    for csg in csgs:
        doc = yaml.safe_load(csg.read_text())
        assert doc["group"]["name"] in csg.name
        for result in doc["results"].values():
            assert result["metafile"].startswith(">")
            assert (csg.parent / result["metafile"][1:]).is_file(), (csg, result)
