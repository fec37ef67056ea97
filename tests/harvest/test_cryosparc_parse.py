"""harvest.cryosparc on hand-built projects: job.json shapes, statuses, coordinates, recentring."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import realfile

from harvest.conventions import micrograph_key
from harvest.cryosparc import JOB_TYPES, NotACryosparcProject, parse_job, scan_project
from harvest.records import PARTICLE_COLUMNS

# ---------------------------------------------------------------------------------------------
# a tiny CryoSPARC project writer (job.json ≤ v4 shape unless told otherwise; formats.md §1.3)
# ---------------------------------------------------------------------------------------------

LOC_DTYPE = [
    ("uid", "<u8"),
    ("location/micrograph_uid", "<u8"),
    ("location/exp_group_id", "<u4"),
    ("location/micrograph_path", "S100"),
    ("location/micrograph_shape", "<u4", (2,)),
    ("location/micrograph_psize_A", "<f4"),
    ("location/center_x_frac", "<f4"),
    ("location/center_y_frac", "<f4"),
    ("location/min_dist_A", "<f4"),
]
PICK_DTYPE = [("pick_stats/ncc_score", "<f4"), ("pick_stats/power", "<f4")]
BLOB_DTYPE = [
    ("uid", "<u8"),
    ("blob/path", "S64"),
    ("blob/idx", "<u4"),
    ("blob/shape", "<u4", (2,)),
    ("blob/psize_A", "<f4"),
    ("ctf/accel_kv", "<f4"),
    ("ctf/cs_mm", "<f4"),
    ("ctf/amp_contrast", "<f4"),
]
A3D = [("alignments3D/shift", "<f4", (2,)), ("alignments3D/psize_A", "<f4"),
       ("alignments3D/class", "<u4")]
A2D = [("alignments2D/shift", "<f4", (2,)), ("alignments2D/psize_A", "<f4"),
       ("alignments2D/class", "<u4")]

# Non-square micrographs (ny != nx) so a swapped shape is caught.
MICS = [
    ("J2/motioncorrected/011111111111111111111_mic_0001_patch_aligned_doseweighted.mrc",
     11111111111111111111, (300, 500)),
    ("J2/motioncorrected/012222222222222222222_mic_0002_patch_aligned_doseweighted.mrc",
     12222222222222222222, (300, 500)),
]
MIC_PSIZE = 1.0


def save_cs(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        np.save(fh, arr, allow_pickle=False)


def make_particles(n: int, seed: int = 0) -> np.ndarray:
    """Location + pick stats + blob + ctf + 3D/2D alignments for n particles on MICS."""
    rng = np.random.default_rng(seed)
    arr = np.zeros(n, dtype=LOC_DTYPE + PICK_DTYPE + BLOB_DTYPE[1:] + A3D + A2D)
    arr["uid"] = np.unique(rng.integers(1, 2**64 - 1, size=2 * n, dtype=np.uint64))[:n]
    arr["uid"] = rng.permutation(arr["uid"])
    mic = np.arange(n) % len(MICS)
    arr["location/micrograph_path"] = [MICS[i][0].encode() for i in mic]
    arr["location/micrograph_uid"] = [MICS[i][1] for i in mic]
    arr["location/micrograph_shape"] = [MICS[i][2] for i in mic]
    arr["location/micrograph_psize_A"] = MIC_PSIZE
    arr["location/center_x_frac"] = rng.uniform(0.05, 0.95, n)
    arr["location/center_y_frac"] = rng.uniform(0.05, 0.95, n)
    arr["pick_stats/ncc_score"] = rng.uniform(0, 1, n)
    arr["blob/path"] = b"J4/extract/particles.mrc"
    arr["blob/idx"] = np.arange(n)
    arr["blob/shape"] = (64, 64)
    arr["blob/psize_A"] = 2.0
    arr["ctf/accel_kv"] = 300.0
    arr["ctf/cs_mm"] = 2.7
    arr["ctf/amp_contrast"] = 0.1
    arr["alignments3D/shift"] = rng.normal(0, 3, (n, 2))
    arr["alignments3D/psize_A"] = 2.0  # alignment pixels twice the micrograph's: scale matters
    arr["alignments2D/shift"] = rng.normal(0, 3, (n, 2))
    arr["alignments2D/psize_A"] = 2.0
    arr["alignments2D/class"] = rng.integers(0, 5, n)
    return arr


def fields(arr: np.ndarray, prefixes: tuple[str, ...]) -> np.ndarray:
    names = ["uid"] + [n for n in arr.dtype.names if n.startswith(prefixes)]
    out = np.zeros(len(arr), dtype=[(n, arr.dtype.fields[n][0]) for n in names])
    for n in names:
        out[n] = arr[n]
    return out


def shuffled(arr: np.ndarray, seed: int = 1) -> np.ndarray:
    return arr[np.random.default_rng(seed).permutation(len(arr))]


class Project:
    def __init__(self, root: Path, project: dict | None = None, manifest: bool = True):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.jobs: list[str] = []
        self.manifest = manifest
        if project is not None:
            (root / "project.json").write_text(json.dumps(project))

    def job(self, uid: str, job_type: str, groups: dict | None = None, *, status="completed",
            type_key="job_type", parents=(), extra: dict | None = None, v5=False) -> Path:
        """groups: {name: (group type, [(result name, [metafiles], passthrough, array|None)])}."""
        d = self.root / uid
        d.mkdir(parents=True, exist_ok=True)
        job: dict = {"uid": uid, "project_uid": "P1", "status": status, "parents": list(parents),
                     "title": f"{job_type} job"}
        if type_key == "spec.type":
            job["spec"] = {"type": job_type}
        else:
            job[type_key] = job_type
        results, rgroups, outputs = [], [], {}
        for gname, (gtype, items) in (groups or {}).items():
            rgroups.append({"uid": f"{uid}-G", "type": gtype, "name": gname, "title": gname})
            outputs[gname] = {"type": gtype, "results": []}
            for rname, metafiles, passthrough, arr in items:
                if arr is not None:
                    save_cs(self.root / metafiles[-1 if not passthrough else 0], arr)
                entry = {"type": f"{gtype}.{rname}", "group_name": gname, "name": rname,
                         "metafiles": list(metafiles), "passthrough": passthrough,
                         "versions": list(range(len(metafiles)))}
                results.append(entry)
                outputs[gname]["results"].append(
                    {"name": rname, "dtype": gtype, "metafiles": list(metafiles),
                     "passthrough": passthrough})
        if v5:
            job.setdefault("spec", {"type": job_type})["outputs"] = outputs
        else:
            job["output_result_groups"] = rgroups
            job["output_results"] = results
        job.update(extra or {})
        (d / "job.json").write_text(json.dumps(job))
        self.jobs.append(uid)
        if self.manifest:
            (self.root / "job_manifest.json").write_text(json.dumps({"jobs": self.jobs}))
        return d

    def touch_micrographs(self, which=range(len(MICS))):
        for i in which:
            p = self.root / MICS[i][0]
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"")


def particle_group(uid: str, main: np.ndarray, passthrough: np.ndarray | None, name="particles",
                   main_name="picked_particles.cs", versions=1):
    metas = [f"{uid}/{uid}_{v:03d}_{main_name}" for v in range(versions - 1)]
    metas.append(f"{uid}/{main_name}")
    items = [("blob", metas, False, main)]
    if passthrough is not None:
        items.append(("location", [f"{uid}/{uid}_passthrough_{name}.cs"], True, passthrough))
    return {name: ("particle", items)}


@pytest.fixture
def proj(tmp_path):
    p = Project(tmp_path / "CS-test", {"uid": "P1", "title": "test project", "version": "v4.4.1"})
    p.touch_micrographs()
    return p


def one_set(rec, name=None):
    sets = [s for s in rec.particle_sets if name is None or s.name == name]
    assert len(sets) == 1, [s.name for s in rec.particle_sets]
    return sets[0]


# ---------------------------------------------------------------------------------------------
# project and job bookkeeping
# ---------------------------------------------------------------------------------------------


def test_project_json_and_manifest(proj):
    proj.job("J1", "import_movies", status="completed")
    scan = scan_project(proj.root)
    assert scan.software == "cryosparc"
    assert (scan.uid, scan.title, scan.version) == ("P1", "test project", "v4.4.1")
    assert scan.root == str(proj.root.resolve())
    assert {Path(f.path).name for f in scan.files} >= {"project.json", "job_manifest.json",
                                                        "job.json"}
    assert [j.key for j in scan.jobs] == ["J1"]


def test_missing_project_keys_and_version_from_jobs(tmp_path):
    p = Project(tmp_path / "P9", {})
    p.job("J1", "import_movies", extra={"version": "v4.6.0"})
    scan = scan_project(p.root)
    assert (scan.uid, scan.title, scan.version) == ("", "", "v4.6.0")
    q = Project(tmp_path / "P10", {"cryosparc_version": "v5.0.1"})
    q.job("J1", "import_movies")
    assert scan_project(q.root).version == "v5.0.1"
    r = Project(tmp_path / "P11", {"title": "x"})
    r.job("J1", "import_movies")
    assert scan_project(r.root).version == "unknown"


def test_not_a_project(tmp_path):
    with pytest.raises(NotACryosparcProject, match="no project.json"):
        scan_project(tmp_path)


def test_broken_job_json_is_a_problem(proj):
    proj.job("J1", "import_movies")
    (proj.root / "J12").mkdir()
    (proj.root / "J12" / "job.json").write_text("{not json")
    proj.jobs.append("J13")  # listed in the manifest but absent
    (proj.root / "job_manifest.json").write_text(json.dumps({"jobs": proj.jobs}))
    scan = scan_project(proj.root)
    assert [j.key for j in scan.jobs] == ["J1"]
    errors = "\n".join(str(p) for p in scan.problems)
    assert "J12/job.json: cannot read job.json" in errors
    assert "J13/job.json" in errors


@pytest.mark.parametrize("type_key", ["job_type", "type", "spec.type"])
def test_job_type_sources(proj, type_key):
    proj.job("J7", "class_2D_new", type_key=type_key)
    (job,) = scan_project(proj.root).jobs
    assert (job.raw_type, job.kind) == ("class_2D_new", "class2d")


def test_job_type_precedence(proj):
    proj.job("J7", "select_2D", type_key="job_type",
             extra={"type": "class_2D", "spec": {"type": "homo_refine"}})
    assert scan_project(proj.root).jobs[0].raw_type == "select_2D"


def test_timestamps_ms_and_iso(proj):
    ms = 1700000000123  # 2023-11-14T22:13:20.123Z
    proj.job("J1", "import_movies", extra={
        "created_at": {"$date": ms}, "completed_at": {"$date": "2023-11-15T01:02:03.5+01:00"}})
    proj.job("J2", "import_movies", extra={"created_at": "2023-11-15T00:00:00",
                                           "completed_at": None})
    j1, j2 = scan_project(proj.root).jobs
    assert j1.created_at == "2023-11-14T22:13:20.123Z"
    assert j1.completed_at == "2023-11-15T00:02:03.500Z"
    assert j2.created_at == "2023-11-15T00:00:00.000Z" and j2.completed_at is None


def test_parents_status_and_unknown_types(proj):
    arr = make_particles(10)
    for uid, status in (("J3", "failed"), ("J4", "running"), ("J5", "completed"),
                        ("J6", "killed"), ("J8", "building")):
        proj.job(uid, "blob_picker_gpu", particle_group(uid, arr, None), status=status,
                 parents=["J2"])
    proj.job("J9", "volume_tools", particle_group("J9", arr, None), parents=["J5"])
    scan = scan_project(proj.root)
    jobs = {j.key: j for j in scan.jobs}
    assert [j.key for j in scan.jobs] == ["J3", "J4", "J5", "J6", "J8", "J9"]
    assert {k: j.status for k, j in jobs.items()} == {
        "J3": "failed", "J4": "running", "J5": "completed", "J6": "killed", "J8": "queued",
        "J9": "completed"}
    assert jobs["J5"].parents == ["J2"]
    for key in ("J3", "J4", "J6", "J8"):
        rec = parse_job(scan, key)
        assert rec.particle_sets == [] and rec.status == jobs[key].status
    assert len(parse_job(scan, "J5").particle_sets) == 1
    other = parse_job(scan, "J9")
    assert (other.kind, other.particle_sets) == ("other", [])
    with pytest.raises(KeyError):
        parse_job(scan, "J99")


def test_job_types_table_kinds_are_known():
    from harvest.conventions import STAGES
    from harvest.records import JOB_KINDS

    for raw, jt in JOB_TYPES.items():
        assert jt.kind in JOB_KINDS, raw
        assert jt.stage is None or jt.stage in STAGES, raw


def test_files_are_job_json_last_version_and_passthrough(proj):
    arr = make_particles(20)
    proj.job("J5", "homo_refine_new", particle_group(
        "J5", fields(arr, ("blob/", "ctf/", "alignments3D/")),
        fields(arr, ("location/",)), main_name="particles.cs", versions=3))
    save_cs(proj.root / "J5" / "J5_001_particles.cs", arr)  # an earlier version: not needed
    (job,) = scan_project(proj.root).jobs
    names = sorted(os.path.relpath(f.path, proj.root) for f in job.files)
    assert names == sorted(["J5/job.json", "J5/J5_passthrough_particles.cs", "J5/particles.cs"])
    assert all(f.size > 0 and f.mtime_ns > 0 for f in job.files)


# ---------------------------------------------------------------------------------------------
# coordinates
# ---------------------------------------------------------------------------------------------


def test_picked_coordinates_non_square(proj):
    arr = make_particles(40)
    proj.job("J3", "blob_picker_gpu", particle_group("J3", arr, None))
    scan = scan_project(proj.root)
    rec = parse_job(scan, "J3")
    pset = one_set(rec)
    assert (pset.stage, pset.name, pset.sparse, pset.class_id) == ("picked", "particles", False,
                                                                    None)
    df = pset.particles
    assert tuple(df.columns) == PARTICLE_COLUMNS
    assert len(df) == 40
    # x = x_frac * nx (500), y = y_frac * ny (300): shape is [ny, nx]
    np.testing.assert_allclose(df["raw_x"], arr["location/center_x_frac"] * 500, rtol=1e-6)
    np.testing.assert_allclose(df["raw_y"], arr["location/center_y_frac"] * 300, rtol=1e-6)
    assert (df["x"] == df["raw_x"]).all() and (df["y"] == df["raw_y"]).all()
    np.testing.assert_allclose(df["score"], arr["pick_stats/ncc_score"], rtol=1e-6)
    np.testing.assert_array_equal(df["uid"].to_numpy(), arr["uid"].view(np.int64))
    assert df["uid"].dtype == np.int64 and df["class_id"].dtype == np.int64
    assert df["micrograph"].tolist() == [MICS[i % 2][0] for i in range(40)]
    mics = {m.path: m for m in rec.micrographs}
    assert set(mics) == {m[0] for m in MICS}
    m = mics[MICS[0][0]]
    assert (m.nx, m.ny, m.pixel_size, m.key) == (500, 300, MIC_PSIZE, "mic_0001")
    assert m.exposure_uid == str(MICS[0][1])
    assert m.abs_path == str(proj.root / MICS[0][0])
    assert rec.problems == []
    assert pset.source_file == str(proj.root / "J3" / "picked_particles.cs")
    assert (pset.box_size, pset.image_pixel_size, pset.voltage, pset.cs) == (64, 2.0, 300.0,
                                                                             pytest.approx(2.7))


def test_manual_picks_are_sparse(proj):
    proj.job("J3", "manual_picker_v2", particle_group("J3", make_particles(5), None))
    assert one_set(parse_job(scan_project(proj.root), "J3")).sparse


def test_refined_recentring_scale_and_sign(proj):
    arr = make_particles(60)
    arr["alignments3D/shift"][0] = (3.0, -2.0)
    stale = fields(arr, ("blob/", "ctf/", "alignments3D/"))
    stale["alignments3D/shift"] = 99.0  # an earlier iteration: must not be read
    final = fields(arr, ("blob/", "ctf/", "alignments3D/"))
    groups = particle_group("J5", final, shuffled(fields(arr, ("location/", "pick_stats/"))),
                            main_name="particles.cs", versions=3)
    meta = groups["particles"][1][0][1]
    save_cs(proj.root / meta[0], stale)
    proj.job("J5", "nonuniform_refine_new", groups)
    rec = parse_job(scan_project(proj.root), "J5")
    df = one_set(rec).particles
    assert one_set(rec).stage == "refined"
    order = np.argsort(arr["uid"])
    got = df.set_index("uid").loc[arr["uid"].view(np.int64)]
    raw_x = arr["location/center_x_frac"].astype(np.float64) * 500
    raw_y = arr["location/center_y_frac"].astype(np.float64) * 300
    scale = 2.0 / MIC_PSIZE
    shift = arr["alignments3D/shift"].astype(np.float64)
    np.testing.assert_allclose(got["raw_x"], raw_x, atol=1e-3)
    np.testing.assert_allclose(got["x"], raw_x - shift[:, 0] * scale, atol=1e-3)
    np.testing.assert_allclose(got["y"], raw_y - shift[:, 1] * scale, atol=1e-3)
    # the hand-checked particle: shift (3, -2) px at 2 Å/px on a 1 Å/px micrograph
    assert got["x"].iloc[0] == pytest.approx(raw_x[0] - 6.0, abs=1e-3)
    assert got["y"].iloc[0] == pytest.approx(raw_y[0] + 4.0, abs=1e-3)
    assert len(order) == len(df) and rec.problems == []


def test_alignment_psize_falls_back_to_blob(proj):
    arr = make_particles(10)
    main = fields(arr, ("blob/", "alignments3D/shift"))
    main["blob/psize_A"] = 4.0
    proj.job("J5", "homo_refine", particle_group("J5", main, fields(arr, ("location/",))))
    df = one_set(parse_job(scan_project(proj.root), "J5")).particles.set_index("uid")
    df = df.loc[arr["uid"].view(np.int64)]
    np.testing.assert_allclose(df["raw_x"] - df["x"], arr["alignments3D/shift"][:, 0] * 4.0,
                               atol=1e-3)


def test_2d_stages_are_recentred_and_select_2d_stages(proj):
    arr = make_particles(30)
    sel, exc = arr[:20], arr[20:]
    groups = {}
    for name, part in (("particles_selected", sel), ("particles_excluded", exc)):
        groups.update(particle_group("J6", fields(part, ("blob/", "alignments2D/")),
                                     shuffled(fields(part, ("location/", "ctf/"))), name=name,
                                     main_name=f"{name}.cs"))
    groups["templates_selected"] = ("template", [("blob", ["J6/templates.cs"], False,
                                                  fields(arr[:3], ("blob/",)))])
    proj.job("J6", "select_2D", groups)
    rec = parse_job(scan_project(proj.root), "J6")
    stages = {s.name: (s.stage, len(s.particles)) for s in rec.particle_sets}
    assert stages == {"particles_selected": ("selected2d", 20),
                      "particles_excluded": ("rejected2d", 10)}
    df = one_set(rec, "particles_selected").particles.set_index("uid").loc[
        sel["uid"].view(np.int64)]
    # 2D shifts recentre (DESIGN.md): x − shift × alignments2D/psize_A / micrograph psize
    scale = 2.0 / sel["location/micrograph_psize_A"]
    np.testing.assert_allclose(df["x"], df["raw_x"] - sel["alignments2D/shift"][:, 0] * scale)
    np.testing.assert_allclose(df["y"], df["raw_y"] - sel["alignments2D/shift"][:, 1] * scale)
    np.testing.assert_array_equal(df["class_id"], sel["alignments2D/class"])


def test_class2d_stage(proj):
    arr = make_particles(12)
    proj.job("J5", "class_2D", particle_group("J5", fields(arr, ("blob/", "alignments2D/")),
                                              fields(arr, ("location/",)), versions=2))
    pset = one_set(parse_job(scan_project(proj.root), "J5"))
    assert pset.stage == "classified2d" and len(pset.particles) == 12


def _hetero_groups(uid, arr, layout):
    n = len(arr)
    groups = {}
    k = 2
    cls = np.arange(n) % k
    for c in range(k):
        part = arr[cls == c]
        if layout == "alignments3D":
            main = fields(part, ("blob/", "alignments3D/"))
        elif layout == "alignments_class":
            names = [("uid", "<u8"), ("blob/psize_A", "<f4")]
            for j in range(k):
                names += [(f"alignments_class_{j}/shift", "<f4", (2,)),
                          (f"alignments_class_{j}/psize_A", "<f4")]
            main = np.zeros(len(part), dtype=names)
            main["uid"] = part["uid"]
            main["blob/psize_A"] = 7.0  # wrong psize: must use the class alignment's
            for j in range(k):
                main[f"alignments_class_{j}/shift"] = (part["alignments3D/shift"] if j == c
                                                       else 50.0)
                main[f"alignments_class_{j}/psize_A"] = 2.0
        else:  # alignments3D_multi, v4.5+
            main = np.zeros(len(part), dtype=[
                ("uid", "<u8"), ("alignments3D_multi/shift", "<f4", (k, 2)),
                ("alignments3D_multi/psize_A", "<f4"),
                ("alignments3D_multi/class_posterior", "<f4", (k,))])
            main["uid"] = part["uid"]
            multi = np.full((len(part), k, 2), 50.0)
            multi[:, c] = part["alignments3D/shift"]
            main["alignments3D_multi/shift"] = multi
            main["alignments3D_multi/psize_A"] = 2.0
            main["alignments3D_multi/class_posterior"][:, c] = 1.0
        pt = fields(part, ("location/", "alignments3D/"))
        pt["alignments3D/shift"] = 50.0  # passed through from the upstream refinement: stale
        groups.update(particle_group(uid, main, shuffled(pt),
                                     name=f"particles_class_{c}",
                                     main_name=f"class_{c:02d}_particles.cs"))
    groups.update(particle_group(uid, fields(arr, ("blob/", "alignments3D/")),
                                 fields(arr, ("location/",)), name="particles_all_classes",
                                 main_name="all_particles.cs"))
    return groups, cls


@pytest.mark.parametrize("layout", ["alignments3D", "alignments_class", "alignments3D_multi"])
@pytest.mark.parametrize("job_type", ["hetero_refine", "class_3D", "homo_abinit"])
def test_per_class_sets(proj, layout, job_type):
    arr = make_particles(40)
    groups, cls = _hetero_groups("J8", arr, layout)
    proj.job("J8", job_type, groups)
    rec = parse_job(scan_project(proj.root), "J8")
    assert sorted(s.name for s in rec.particle_sets) == ["particles_class_0", "particles_class_1"]
    assert rec.problems == []
    for s in rec.particle_sets:
        c = s.class_id
        assert s.stage == "classified3d" and s.name == f"particles_class_{c}"
        part = arr[cls == c]
        df = s.particles.set_index("uid").loc[part["uid"].view(np.int64)]
        assert (df["class_id"] == c).all()
        shift = part["alignments3D/shift"].astype(np.float64)
        np.testing.assert_allclose(df["raw_x"] - df["x"], shift[:, 0] * 2.0, atol=1e-3)
        np.testing.assert_allclose(df["raw_y"] - df["y"], shift[:, 1] * 2.0, atol=1e-3)


def test_missing_passthrough_rows_and_micrographs(proj, tmp_path):
    arr = make_particles(30)
    loc = fields(arr, ("location/",))[:25]
    for p in (proj.root / MICS[1][0],):
        p.unlink()
    proj.job("J4", "extract_micrographs_multi", particle_group(
        "J4", fields(arr, ("blob/", "ctf/")), loc, main_name="extracted_particles.cs"))
    rec = parse_job(scan_project(proj.root), "J4")
    pset = one_set(rec)
    assert pset.stage == "extracted" and len(pset.particles) == 25
    text = "\n".join(str(p) for p in rec.problems)
    assert "5 of 30 particles" in text
    assert "J4_passthrough_particles.cs" in text
    missing = [p for p in rec.problems if "micrograph files not found" in p.error]
    assert len(missing) == 1 and "1 of 2" in missing[0].error
    assert MICS[1][0] in missing[0].error


def test_missing_or_bad_metafile_is_a_problem(proj):
    arr = make_particles(5)
    groups = particle_group("J4", fields(arr, ("blob/",)), fields(arr, ("location/",)))
    proj.job("J4", "extract_micrographs_multi", groups)
    (proj.root / "J4" / "J4_passthrough_particles.cs").unlink()
    rec = parse_job(scan_project(proj.root), "J4")
    assert rec.particle_sets == [] and "metafile(s) missing" in rec.problems[0].error
    (proj.root / "J4" / "J4_passthrough_particles.cs").write_bytes(b"garbage!")
    rec = parse_job(scan_project(proj.root), "J4")
    assert rec.particle_sets == [] and "unknown magic" in rec.problems[0].error


def test_v5_spec_outputs(proj):
    arr = make_particles(8)
    proj.job("J5", "homo_refine_new", particle_group("J5", fields(arr, ("blob/", "alignments3D/")),
                                                     fields(arr, ("location/",))),
             type_key="spec.type", v5=True)
    scan = scan_project(proj.root)
    assert len(scan.jobs[0].files) == 3
    pset = one_set(parse_job(scan, "J5"))
    assert pset.stage == "refined" and len(pset.particles) == 8


def test_import_particles_picked_or_extracted(proj):
    arr = make_particles(6)
    proj.job("J2", "import_particles", particle_group("J2", fields(arr, ("location/",)), None,
                                                      main_name="imported_particles.cs"))
    proj.job("J3", "import_particles", particle_group("J3", fields(arr, ("location/", "blob/")),
                                                      None, main_name="imported_particles.cs"))
    scan = scan_project(proj.root)
    assert one_set(parse_job(scan, "J2")).stage == "picked"
    assert one_set(parse_job(scan, "J3")).stage == "extracted"


@pytest.mark.parametrize("name", ["cryosparc_J2_particles_exported.cs",
                                  "cryosparc_P12_J24_001_particles.cs", "empiar_10076_7.cs"])
def test_real_files_without_location_are_problems(proj, realdata, name):
    real = realfile(realdata, "ml-struct-bio/cryodrgn", f"tests/data/{name}")
    (proj.root / "J5").mkdir()
    os.symlink(real, proj.root / "J5" / "particles.cs")  # read in place (GPL: never copied)
    proj.job("J5", "homo_refine", {"particles": ("particle", [
        ("blob", ["J5/particles.cs"], False, None)])})
    rec = parse_job(scan_project(proj.root), "J5")
    assert rec.particle_sets == []
    (problem,) = rec.problems
    assert problem.path.endswith("J5/particles.cs")
    assert "no location/* fields: particles cannot be placed on micrographs" in problem.error


def test_ctf_job_micrographs(proj):
    n = len(MICS)
    exp = np.zeros(n, dtype=[
        ("uid", "<u8"), ("micrograph_blob/path", "S100"), ("micrograph_blob/shape", "<u4", (2,)),
        ("micrograph_blob/psize_A", "<f4"), ("ctf/df1_A", "<f4"), ("ctf/df2_A", "<f4"),
        ("ctf/df_angle_rad", "<f4"), ("ctf/ctf_fit_to_A", "<f4"),
        ("ctf/cross_corr_ctffind4", "<f4")])
    exp["uid"] = [m[1] for m in MICS]
    exp["micrograph_blob/path"] = [m[0].encode() for m in MICS]
    exp["micrograph_blob/shape"] = [m[2] for m in MICS]
    exp["micrograph_blob/psize_A"] = 0.83
    exp["ctf/df1_A"] = [15000, 16000]
    exp["ctf/df2_A"] = [14000, 15500]
    exp["ctf/df_angle_rad"] = [np.pi / 4, -np.pi / 2]
    exp["ctf/ctf_fit_to_A"] = [3.5, 4.5]
    exp["ctf/cross_corr_ctffind4"] = [0.2, np.nan]
    main = fields(exp, ("ctf/",))
    pt = fields(exp, ("micrograph_blob/",))
    proj.job("J3", "patch_ctf_estimation_multi", {"exposures": ("exposure", [
        ("ctf", ["J3/exposures_ctf_estimated.cs"], False, main),
        ("micrograph_blob", ["J3/J3_passthrough_exposures.cs"], True, shuffled(pt))])})
    rec = parse_job(scan_project(proj.root), "J3")
    assert rec.particle_sets == [] and rec.problems == []
    mics = {m.path: m for m in rec.micrographs}
    m0, m1 = mics[MICS[0][0]], mics[MICS[1][0]]
    assert (m0.nx, m0.ny) == (500, 300)
    assert m0.pixel_size == pytest.approx(0.83)
    assert (m0.defocus_u, m0.defocus_v) == (15000.0, 14000.0)
    assert m0.defocus_angle == pytest.approx(45.0) and m1.defocus_angle == pytest.approx(-90.0)
    assert (m0.ctf_max_res, m0.ctf_fom) == (3.5, pytest.approx(0.2))
    assert m1.ctf_fom is None and m0.total_motion is None
    assert m0.exposure_uid == str(MICS[0][1]) and m0.key == micrograph_key(MICS[0][0])


def test_fingerprint_follows_files(proj):
    arr = make_particles(5)
    proj.job("J3", "blob_picker_gpu", particle_group("J3", arr, None))
    fp1 = one_set(parse_job(scan_project(proj.root), "J3")).fingerprint
    fp2 = one_set(parse_job(scan_project(proj.root), "J3")).fingerprint
    assert fp1 == fp2 and fp1
    save_cs(proj.root / "J3" / "picked_particles.cs", make_particles(6))
    assert one_set(parse_job(scan_project(proj.root), "J3")).fingerprint != fp1


def test_motion_job_total_motion_from_trajectories(proj):
    n = len(MICS)
    exp = np.zeros(n, dtype=[
        ("uid", "<u8"), ("micrograph_blob/path", "S100"), ("micrograph_blob/shape", "<u4", (2,)),
        ("micrograph_blob/psize_A", "<f4"), ("rigid_motion/path", "S40"),
        ("rigid_motion/psize_A", "<f4")])
    exp["uid"] = [m[1] for m in MICS]
    exp["micrograph_blob/path"] = [m[0].encode() for m in MICS]
    exp["micrograph_blob/shape"] = [m[2] for m in MICS]
    exp["micrograph_blob/psize_A"] = 1.0
    exp["rigid_motion/psize_A"] = 2.0  # trajectory in pixels twice the micrograph's
    exp["rigid_motion/path"] = [b"J2/motion/a_traj.npy", b"J2/motion/b_traj.npy"]
    (proj.root / "J2" / "motion").mkdir(parents=True)
    # 3-4-5 steps: length 5 + 5 = 10 trajectory px = 20 micrograph px
    np.save(proj.root / "J2/motion/a_traj.npy", np.array([[[0, 0], [3, 4], [6, 8]]], "f4"))
    (proj.root / "J2/motion/b_traj.npy").write_bytes(b"not an npy")
    proj.job("J2", "patch_motion_correction_multi", {"micrographs": ("exposure", [
        ("micrograph_blob", ["J2/J2_micrographs.cs"], False, exp)])})
    rec = parse_job(scan_project(proj.root), "J2")
    mics = {m.path: m for m in rec.micrographs}
    # 20 micrograph px x 1.0 Å/px: the catalog keeps Å
    assert mics[MICS[0][0]].total_motion == pytest.approx(20.0)
    assert mics[MICS[1][0]].total_motion is None
    (problem,) = rec.problems
    assert problem.path.endswith("b_traj.npy") and "1 of 2 motion trajectories" in problem.error


def test_import_movies_only_gives_no_micrographs(proj):
    movies = np.zeros(2, dtype=[("uid", "<u8"), ("movie_blob/path", "S30"),
                                ("movie_blob/shape", "<u4", (3,))])
    movies["uid"] = [1, 2]
    movies["movie_blob/path"] = [b"J1/imported/a.tif", b"J1/imported/b.tif"]
    proj.job("J1", "import_movies", {"imported_movies": ("exposure", [
        ("movie_blob", ["J1/imported_movies.cs"], False, movies)])})
    rec = parse_job(scan_project(proj.root), "J1")
    assert (rec.kind, rec.micrographs, rec.particle_sets, rec.problems) == (
        "import_movies", [], [], [])


def test_alignments3d_multi_posterior_argmax_without_class_groups(proj):
    arr = make_particles(12)
    k = 3
    best = np.arange(12) % k
    main = np.zeros(12, dtype=[("uid", "<u8"), ("alignments3D_multi/shift", "<f4", (k, 2)),
                               ("alignments3D_multi/psize_A", "<f4", (k,)),
                               ("alignments3D_multi/class_posterior", "<f4", (k,))])
    main["uid"] = arr["uid"]
    multi = np.full((12, k, 2), 40.0)
    multi[np.arange(12), best] = arr["alignments3D/shift"]
    main["alignments3D_multi/shift"] = multi
    main["alignments3D_multi/psize_A"] = 2.0
    post = np.full((12, k), 0.1)
    post[np.arange(12), best] = 0.8
    main["alignments3D_multi/class_posterior"] = post
    proj.job("J8", "homo_refine_new", particle_group("J8", main, fields(arr, ("location/",))))
    rec = parse_job(scan_project(proj.root), "J8")
    df = one_set(rec).particles.set_index("uid").loc[arr["uid"].view(np.int64)]
    np.testing.assert_allclose(df["raw_x"] - df["x"], arr["alignments3D/shift"][:, 0] * 2.0,
                               atol=1e-3)
    assert rec.problems == []


def test_real_header_only_dataset_gives_an_empty_set(proj, realdata):
    real = realfile(realdata, "cryoem-uoft/cryosparc-tools", "tests/data/4k_dataset.cs")
    (proj.root / "J5").mkdir()
    os.symlink(real, proj.root / "J5" / "particles.cs")
    proj.job("J5", "homo_refine", {"particles": ("particle", [
        ("blob", ["J5/particles.cs"], False, None)])})
    rec = parse_job(scan_project(proj.root), "J5")
    pset = one_set(rec)
    assert rec.problems == []
    assert len(pset.particles) == 0 and tuple(pset.particles.columns) == PARTICLE_COLUMNS
    assert pset.stage == "refined" and pset.box_size is None


def test_csdat_outputs_through_the_parser(proj):
    dataset = pytest.importorskip("cryosparc.dataset", reason="cryosparc-tools not installed")
    arr = make_particles(9)
    main = fields(arr, ("blob/", "alignments3D/"))
    loc = shuffled(fields(arr, ("location/",)))
    (proj.root / "J5").mkdir()
    for name, a in (("J5/particles.cs", main), ("J5/J5_passthrough_particles.cs", loc)):
        dataset.Dataset(a).save(str(proj.root / name), format=dataset.CSDAT_FORMAT)
        assert (proj.root / name).read_bytes()[:6] == b"\x95CSDAT"
    proj.job("J5", "homo_refine_new", {"particles": ("particle", [
        ("blob", ["J5/particles.cs"], False, None),
        ("location", ["J5/J5_passthrough_particles.cs"], True, None)])})
    rec = parse_job(scan_project(proj.root), "J5")
    assert rec.problems == []
    df = one_set(rec).particles.set_index("uid").loc[arr["uid"].view(np.int64)]
    raw_x = arr["location/center_x_frac"].astype(np.float64) * 500
    np.testing.assert_allclose(df["raw_x"], raw_x, atol=1e-3)
    np.testing.assert_allclose(df["x"], raw_x - arr["alignments3D/shift"][:, 0] * 2.0, atol=1e-3)
    assert df["micrograph"].tolist() == [m.decode() for m in arr["location/micrograph_path"]]
