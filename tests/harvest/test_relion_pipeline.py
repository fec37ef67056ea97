"""harvest.relion.scan_project: pipeline versions 3.0/3.1/4/5, status, markers, parents, errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import realfile

from harvest.relion import RelionProjectError, parse_job, scan_project
from harvest.relion.context import Context
from harvest.relion.jobs import job_row
from harvest.relion.particles import particle_stage


def write_pipeline(root: Path, processes, nodes=(), inputs=(), outputs=(), *, version=None,
                   labels=False, depth=False) -> Path:
    """A default_pipeline.star: processes = (name, alias, type, status) rows."""
    vline = f"\n# version {version}\n\n" if version else "\n"
    ptype, pstatus = (("rlnPipeLineProcessTypeLabel", "rlnPipeLineProcessStatusLabel") if labels
                      else ("rlnPipeLineProcessType", "rlnPipeLineProcessStatus"))
    ntype = "rlnPipeLineNodeTypeLabel" if labels else "rlnPipeLineNodeType"
    text = [vline, "data_pipeline_general\n\n_rlnPipeLineJobCounter 9\n", vline,
            "data_pipeline_processes\n\nloop_\n_rlnPipeLineProcessName #1\n",
            "_rlnPipeLineProcessAlias #2\n", f"_{ptype} #3\n", f"_{pstatus} #4\n"]
    text += [" ".join(str(v) for v in row) + "\n" for row in processes]
    text += [vline, "data_pipeline_nodes\n\nloop_\n_rlnPipeLineNodeName #1\n", f"_{ntype} #2\n"]
    if depth:
        text.append("_rlnPipeLineNodeTypeLabelDepth #3\n")
    text += [" ".join(str(v) for v in row) + (" 1" if depth else "") + "\n" for row in nodes]
    text += [vline, "data_pipeline_input_edges\n\nloop_\n_rlnPipeLineEdgeFromNode #1\n",
             "_rlnPipeLineEdgeProcess #2\n"]
    text += [f"{a} {b}\n" for a, b in inputs]
    text += [vline, "data_pipeline_output_edges\n\nloop_\n_rlnPipeLineEdgeProcess #1\n",
             "_rlnPipeLineEdgeToNode #2\n"]
    text += [f"{a} {b}\n" for a, b in outputs]
    root.mkdir(parents=True, exist_ok=True)
    (root / "default_pipeline.star").write_text("".join(text))
    return root


def test_real_31_pipeline(realdata, tmp_path):
    src = realfile(realdata, "teamtomo/starfile", "tests/data/default_pipeline.star")
    shutil.copy(src, tmp_path / "default_pipeline.star")
    scan = scan_project(tmp_path)
    assert scan.software == "relion" and scan.version == "3.1"
    assert len(scan.jobs) == 31
    jobs = {j.key: j for j in scan.jobs}
    kinds = [j.kind for j in scan.jobs]
    assert kinds.count("auto_pick") == 3 and kinds.count("extract") == 3
    assert kinds.count("class2d") == 2 and kinds.count("refine3d") == 3
    assert kinds.count("class3d") == 1
    # Select jobs are labelled by what they did: a micrograph selection, two class selections
    # after Class2D, one after Class3D
    assert {k: jobs[k].kind for k in jobs if k.startswith("Select/")} == {
        "Select/job005": "select_micrographs", "Select/job009": "select2d",
        "Select/job014": "select2d", "Select/job017": "select3d"}
    # a set's stage follows provenance: Extract/job018 re-extracts Select/job017's particles
    # (selected after Class3D), Extract/job007 extracts picks on Select/job005's micrographs
    ctx = Context(scan, scan.root)
    procs = scan.extra["processes"]
    stage = {k: particle_stage(ctx, procs[k], job_row(procs[k]))
             for k in ("Extract/job007", "Extract/job018", "Select/job017", "Select/job014")}
    assert stage == {"Extract/job007": "extracted", "Extract/job018": "classified3d",
                     "Select/job017": "classified3d", "Select/job014": "selected2d"}
    assert jobs["InitialModel/job015"].kind == "abinitio"
    assert jobs["Import/job001"].kind == "import_movies"
    # status 2 in a 3.1 pipeline = Succeeded; no job dirs, so no markers override it
    assert {j.status for j in scan.jobs} == {"completed"}
    assert jobs["Class2D/job008"].parents == ["Extract/job007"]
    assert sorted(jobs["Extract/job007"].parents) == ["AutoPick/job006", "CtfFind/job003",
                                                       "Select/job005"]
    assert jobs["Refine3D/job019"].title == "first3dref"
    assert jobs["Import/job001"].parents == []


def _jobs_31(root: Path, statuses: dict[str, int], version=30001):
    procs = [("Import/job001/", "None", 0, statuses.get("Import/job001", 2)),
             ("Class2D/job002/", "Class2D/first/", 8, statuses.get("Class2D/job002", 2)),
             ("Refine3D/job003/", "None", 10, statuses.get("Refine3D/job003", 2)),
             ("AutoPick/job004/", "None", 4, statuses.get("AutoPick/job004", 2))]
    nodes = [("Import/job001/particles.star", 3), ("Class2D/job002/run_it025_data.star", 3)]
    write_pipeline(root, procs, nodes,
                   inputs=[("Import/job001/particles.star", "Class2D/job002/"),
                           ("Class2D/job002/run_it025_data.star", "Refine3D/job003/")],
                   outputs=[("Import/job001/", "Import/job001/particles.star"),
                            ("Class2D/job002/", "Class2D/job002/run_it025_data.star")],
                   version=version)
    for p in procs:
        (root / p[0]).mkdir(parents=True, exist_ok=True)


def test_31_status_codes_and_markers_override(tmp_path):
    _jobs_31(tmp_path, {"Class2D/job002": 0, "Refine3D/job003": 2, "AutoPick/job004": 1})
    (tmp_path / "Class2D/job002/RELION_JOB_EXIT_SUCCESS").touch()  # running -> completed
    (tmp_path / "Refine3D/job003/RELION_JOB_EXIT_FAILURE").touch()  # succeeded -> failed
    scan = scan_project(tmp_path)
    status = {j.key: j.status for j in scan.jobs}
    assert scan.version == "3.1"
    assert status == {"Import/job001": "completed", "Class2D/job002": "completed",
                      "Refine3D/job003": "failed", "AutoPick/job004": "queued"}
    job = {j.key: j for j in scan.jobs}
    assert job["Class2D/job002"].completed_at.endswith("Z")
    assert job["Import/job001"].kind == "import_particles"
    assert job["Class2D/job002"].title == "first"
    assert job["Refine3D/job003"].parents == ["Class2D/job002"]
    (tmp_path / "Refine3D/job003/RELION_JOB_EXIT_FAILURE").unlink()
    (tmp_path / "Refine3D/job003/RELION_JOB_EXIT_ABORTED").touch()
    assert {j.key: j.status for j in scan_project(tmp_path).jobs}["Refine3D/job003"] == "aborted"


def test_31_failed_and_aborted_codes(tmp_path):
    _jobs_31(tmp_path, {"Class2D/job002": 3, "Refine3D/job003": 4})
    status = {j.key: j.status for j in scan_project(tmp_path).jobs}
    assert status["Class2D/job002"] == "failed" and status["Refine3D/job003"] == "aborted"


def test_30_codes_and_finished_when_outputs_exist(tmp_path):
    _jobs_31(tmp_path, {"Import/job001": 0, "Class2D/job002": 0, "Refine3D/job003": 1},
             version=None)
    (tmp_path / "Import/job001/particles.star").write_text("data_\nloop_\n_rlnCoordinateX\n1\n")
    scan = scan_project(tmp_path)
    assert scan.version == "3.0"
    status = {j.key: j.status for j in scan.jobs}
    # 3.0: 0 running (finished once all output nodes exist), 1 scheduled, 2 finished
    assert status == {"Import/job001": "completed", "Class2D/job002": "running",
                      "Refine3D/job003": "queued", "AutoPick/job004": "completed"}


@pytest.mark.parametrize("depth,version,expect", [(False, 30001, "4.0"), (True, 30001, "5.0"),
                                                  (False, 50001, "5.0")])
def test_label_pipelines_40_50(tmp_path, depth, version, expect):
    procs = [("AutoPick/job004/", "None", "relion.autopick.log", "Succeeded"),
             ("Select/job009/", "None", "relion.select.class2dauto", "Failed"),
             ("Class3D/job010/", "None", "relion.class3d", "Running"),
             ("Picks/job011/", "None", "relion.picktomo", "Aborted"),
             ("Refine3D/job012/", "None", "relion.refine3d.tomo", "Scheduled")]
    nodes = [("AutoPick/job004/autopick.star", "MicrographsCoords.star.relion.autopick")]
    write_pipeline(tmp_path, procs, nodes, version=version, labels=True, depth=depth)
    scan = scan_project(tmp_path)
    assert scan.version == expect
    got = {j.key: (j.kind, j.status, j.raw_type) for j in scan.jobs}
    assert got == {
        "AutoPick/job004": ("auto_pick", "completed", "relion.autopick.log"),
        "Select/job009": ("select2d", "failed", "relion.select.class2dauto"),
        "Class3D/job010": ("class3d", "running", "relion.class3d"),
        "Picks/job011": ("tomo_pick", "aborted", "relion.picktomo"),
        "Refine3D/job012": ("refine3d", "queued", "relion.refine3d.tomo"),
    }


def test_bad_pipelines(tmp_path):
    with pytest.raises(FileNotFoundError, match="default_pipeline.star"):
        scan_project(tmp_path)
    write_pipeline(tmp_path, [], version=30001)
    with pytest.raises(RelionProjectError, match=r"default_pipeline\.star: pipeline without"):
        scan_project(tmp_path)
    (tmp_path / "default_pipeline.star").write_text(
        "data_pipeline_processes\nloop_\n_rlnPipeLineProcessName #1\n"
        "_rlnPipeLineProcessAlias #2\n_rlnPipeLineProcessType #3\n"
        "_rlnPipeLineProcessStatus #4\nImport/job001/ None 0\n")
    with pytest.raises(ValueError, match=r"default_pipeline\.star:7: row has 3 fields"):
        scan_project(tmp_path)


def test_malformed_job_output_is_a_problem_not_a_crash(tmp_path):
    _jobs_31(tmp_path, {})
    for d in ("Class2D/job002", "Refine3D/job003", "Import/job001", "AutoPick/job004"):
        (tmp_path / d / "RELION_JOB_EXIT_SUCCESS").touch()
    (tmp_path / "Class2D/job002/run_it025_data.star").write_text(
        "data_particles\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n_rlnMicrographName\n"
        "1 2 a.mrc\n3 4\n")
    (tmp_path / "Refine3D/job003/run_data.star").write_text(
        "data_particles\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n_rlnMicrographName\n"
        "1 2 a.mrc\n3 4 b.mrc\n")
    scan = scan_project(tmp_path)
    bad = parse_job(scan, "Class2D/job002")
    assert bad.particle_sets == []
    assert len(bad.problems) == 1
    assert "run_it025_data.star:7: row has 2 fields" in bad.problems[0].error
    good = parse_job(scan, "Refine3D/job003")
    assert [len(s.particles) for s in good.particle_sets] == [2]
    # the referenced micrographs do not exist: one problem for the job, sizes unknown
    assert len(good.problems) == 1 and "2 of 2 micrographs" in good.problems[0].error
    assert {m.path for m in good.micrographs} == {"a.mrc", "b.mrc"}
    assert all(m.nx is None for m in good.micrographs)
    pick = parse_job(scan, "AutoPick/job004")  # no coordinate files at all
    assert pick.particle_sets == [] and len(pick.problems) == 1
    with pytest.raises(KeyError):
        parse_job(scan, "Nope/job999")


def _particles_star(rows) -> str:
    body = "".join(f"{m} {x} {y} {c}\n" for m, x, y, c in rows)
    return ("data_particles\nloop_\n_rlnMicrographName #1\n_rlnCoordinateX #2\n"
            "_rlnCoordinateY #3\n_rlnClassNumber #4\n" + body)


def test_select_rejected_by_coordinates_without_image_names(tmp_path):
    procs = [("Class2D/job001/", "None", 8, 2), ("Select/job002/", "None", 7, 2)]
    node = "Class2D/job001/run_it025_data.star"
    write_pipeline(tmp_path, procs, [(node, 3)], inputs=[(node, "Select/job002/")],
                   outputs=[("Class2D/job001/", node)], version=30001)
    for d in ("Class2D/job001", "Select/job002"):
        (tmp_path / d).mkdir(parents=True)
        (tmp_path / d / "RELION_JOB_EXIT_SUCCESS").touch()
    everything = [("m1.mrc", 10.5, 20.25, 1), ("m1.mrc", 30.0, 40.0, 2),
                  ("m2.mrc", 10.5, 20.25, 1), ("m2.mrc", 50.0, 60.0, 3)]
    (tmp_path / "Class2D/job001/run_it020_data.star").write_text(_particles_star(everything[:1]))
    (tmp_path / node).write_text(_particles_star(everything))
    (tmp_path / "Select/job002/particles.star").write_text(
        _particles_star([everything[0], everything[3]]))
    scan = scan_project(tmp_path)
    select = {j.key: j for j in scan.jobs}["Select/job002"]
    assert [f.path for f in select.files] == [
        str(tmp_path / "Select/job002/particles.star"), str(tmp_path / node)]  # last iteration
    rec = parse_job(scan, "Select/job002")
    sets = {s.name: s for s in rec.particle_sets}
    assert (sets["particles"].stage, sets["rejected"].stage) == ("selected2d", "rejected2d")
    rejected = sets["rejected"].particles
    assert list(zip(rejected["micrograph"], rejected["x"], rejected["y"])) == [
        ("m1.mrc", 30.0, 40.0), ("m2.mrc", 10.5, 20.25)]
    assert rejected["class_id"].tolist() == [2, 1]  # rlnClassNumber, as RELION numbers it
    c2 = parse_job(scan, "Class2D/job001").particle_sets
    assert [s.name for s in c2] == ["run_it025_data"] and len(c2[0].particles) == 4


def test_file_stamps_change_only_for_the_changed_job(tmp_path):
    import os

    _jobs_31(tmp_path, {})
    for d in ("Class2D/job002", "Refine3D/job003"):
        (tmp_path / d / "RELION_JOB_EXIT_SUCCESS").touch()
    for it in ("run_it020_data.star", "run_it025_data.star"):
        (tmp_path / "Class2D/job002" / it).write_text(_particles_star([("a.mrc", 1, 2, 1)]))
    (tmp_path / "Refine3D/job003/run_data.star").write_text(_particles_star([("a.mrc", 1, 2, 1)]))
    first = {j.key: j.files for j in scan_project(tmp_path).jobs}
    assert [os.path.basename(f.path) for f in first["Class2D/job002"]] == ["run_it025_data.star"]
    target = tmp_path / "Refine3D/job003/run_data.star"
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    second = {j.key: j.files for j in scan_project(tmp_path).jobs}
    assert [k for k in first if first[k] != second[k]] == ["Refine3D/job003"]
