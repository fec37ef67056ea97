"""select_labels over a small in-memory catalog with the Catalog API's read methods.

The in-memory catalog below implements only the read side of ``harvest.catalog.Catalog`` that
selection uses (projects, find_project, jobs, particle_sets, micrographs, particles,
stage_counts), with the documented columns, so the selection rules are tested on hand-made
cases; the end-to-end tests (test_export_e2e.py) run the same code on a real crawled catalog.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from converters import select as sel
from converters.select import SelectionOptions, select_labels


class MemoryCatalog:
    def __init__(self, projects, jobs, sets, mics, particles):
        self._projects = pd.DataFrame(projects)
        self._jobs = pd.DataFrame(jobs)
        self._sets = pd.DataFrame(sets)
        self._mics = pd.DataFrame(mics)
        self._parts = pd.DataFrame(particles)

    def projects(self):
        return self._projects.copy()

    def find_project(self, spec):
        p = self._projects
        hit = p[(p["id"].astype(str) == str(spec)) | (p["root"] == spec) | (p["title"] == spec)]
        if len(hit) != 1:
            raise ValueError(f"project {spec!r} not found")
        return int(hit["id"].iloc[0])

    def jobs(self, project_ids=None):
        j = self._jobs
        return j[j["project_id"].isin(project_ids)] if project_ids is not None else j.copy()

    def particle_sets(self, project_ids=None, job_ids=None, set_ids=None, stages=None):
        s = self._sets
        if project_ids is not None:
            s = s[s["project_id"].isin(project_ids)]
        if job_ids is not None:
            s = s[s["job_id"].isin(job_ids)]
        if set_ids is not None:
            s = s[s["id"].isin(set_ids)]
        if stages is not None:
            s = s[s["stage"].isin(stages)]
        return s.copy()

    def micrographs(self, project_ids=None, ids=None):
        m = self._mics
        if project_ids is not None:
            m = m[m["project_id"].isin(project_ids)]
        return m.copy()

    def particles(self, set_ids):
        p = self._parts
        return p[p["set_id"].isin(set_ids)].copy()

    def stage_counts(self, project_id):
        p = self._parts.merge(self._sets[["id", "stage", "project_id"]], left_on="set_id",
                              right_on="id")
        p = p[p["project_id"] == project_id]
        return p.groupby(["micrograph_id", "stage"]).size().rename("count").reset_index()


def _set(id, job_id, project_id, stage, class_id=None, box=64, psize=2.0):
    return dict(id=id, job_id=job_id, project_id=project_id, job_key=f"J{job_id}",
                name=f"s{id}", stage=stage, class_id=class_id, count=0, box_size=box,
                image_pixel_size=psize, voltage=300.0, cs=2.7, amp_contrast=0.1, is_3d=False,
                sparse=False, source_file="x")


def _mic(id, project_id, key, ctf=4.0, motion=10.0, nx=200, ny=100):
    return dict(id=id, project_id=project_id, key=key, path=f"{key}.mrc",
                abs_path=f"/nonexistent/{key}.mrc", nx=nx, ny=ny, nz=None, pixel_size=1.0,
                defocus_u=1e4, defocus_v=1e4, defocus_angle=0.0, ctf_max_res=ctf, ctf_fom=0.1,
                total_motion=motion, exposure_uid=None, is_tomogram=False)


def _p(set_id, mic_id, x, y, score=np.nan, class_id=-1):
    return dict(set_id=set_id, micrograph_id=mic_id, x=float(x), y=float(y), raw_x=float(x),
                raw_y=float(y), z=np.nan, raw_z=np.nan, score=score, class_id=class_id, uid=0)


@pytest.fixture
def cat(tmp_path):
    (tmp_path / "p1").mkdir()
    (tmp_path / "p2").mkdir()
    projects = [
        dict(id=1, root=str(tmp_path / "p1"), software="cryosparc", version="4", title="A",
             uid="P1", status="ok", last_crawl="2026-01-01"),
        dict(id=2, root=str(tmp_path / "p2"), software="relion", version="5", title="B",
             uid="", status="ok", last_crawl="2026-01-02"),
    ]
    jobs = [dict(id=j, project_id=1 if j < 10 else 2, key=f"J{j}", raw_type="t", kind="other",
                 status="completed", title="", created_at=None, completed_at=None)
            for j in (1, 2, 3, 4, 11)]
    sets = [
        _set(1, 1, 1, "picked"),
        _set(2, 2, 1, "refined"),
        _set(3, 3, 1, "refined"),        # a second refinement of the same particles
        _set(4, 4, 1, "rejected2d"),
        _set(11, 11, 2, "picked", box=None, psize=None),
    ]
    mics = [
        _mic(1, 1, "m1"),                # refined particles
        _mic(2, 1, "m2"),                # only picked
        _mic(3, 1, "m3", ctf=15.0),      # bad CTF
        _mic(4, 1, "m4", ctf=np.nan, motion=np.nan),  # unknown CTF/motion
        _mic(5, 2, "m1"),                # the same key in another project
    ]
    parts = [
        # m1: picked at 3 positions, refined (two sets, slightly different recentring)
        _p(1, 1, 10, 10, 0.5), _p(1, 1, 50, 50, 0.6), _p(1, 1, 90, 20, 0.4),
        _p(2, 1, 10.4, 10.2, 0.9, class_id=0), _p(2, 1, 50.2, 50.1, 0.2, class_id=1),
        _p(3, 1, 10.5, 10.0, 0.95), _p(3, 1, 50.0, 50.3, 0.1),
        _p(4, 1, 90.3, 20.2, 0.3), _p(4, 1, 150, 80, 0.3),
        # m2 only picked
        _p(1, 2, 30, 30, 0.7), _p(1, 2, 31, 30, 0.2),
        # m3 refined but bad CTF
        _p(2, 3, 30, 30, 0.7),
        # m4 refined, unknown CTF
        _p(2, 4, 40, 40, 0.7),
        # project 2
        _p(11, 5, 60, 60, 0.5),
    ]
    return MemoryCatalog(projects, jobs, sets, mics, parts)


def test_default_picks_most_curated_per_micrograph_and_dedups(cat):
    s = select_labels(cat, SelectionOptions(projects=(1,)))
    t = s.micrographs.set_index("key")
    assert sorted(t.index) == ["m1", "m2", "m4"]  # m3 dropped by the CTF filter
    assert t.loc["m1", "stage"] == "refined" and t.loc["m2", "stage"] == "picked"
    m1 = s.positives[s.positives["mic"] == "1:m1"].sort_values("x")
    # sets 2 and 3 merged: 2 particles; the higher score wins each pair
    assert len(m1) == 2
    assert m1["x"].tolist() == [10.5, 50.2]
    assert set(m1["stage"]) == {"refined"}
    # m2: two picks 1 px apart: diameter = 0.6*64*2 = 76.8 Å, separation 38.4 px: merged
    assert t.loc["m2", "n_positive"] == 1
    assert t.loc["m1", "diameter_A"] == pytest.approx(76.8)
    assert t.loc["m1", "sparse_fraction"] == pytest.approx(4 / 3)  # refined rows / picked
    rep = s.record["filters"]["max_ctf_res"]
    assert rep["dropped_micrographs"] == ["1:m3"] and rep["unknown_passed"] == 1
    assert s.record["dropped_as_duplicates"] == 3
    assert s.negatives.empty


def test_forced_stage_min_score_and_classes(cat):
    s = select_labels(cat, SelectionOptions(projects=(1,), stage="picked", min_separation=0.0))
    assert sorted(s.micrographs["key"]) == ["m1", "m2"]
    assert len(s.positives) == 5
    s = select_labels(cat, SelectionOptions(projects=(1,), stage="picked", min_score=0.5,
                                            min_separation=0.0))
    assert sorted(s.positives["score"]) == [0.5, 0.6, 0.7]
    s = select_labels(cat, SelectionOptions(projects=(1,), stage="refined", classes=(1,),
                                            max_ctf_res=None))
    assert s.positives["x"].tolist() == [50.2]
    with pytest.raises(sel.SelectionError, match="--negatives"):
        select_labels(cat, SelectionOptions(stage="rejected2d"))
    with pytest.raises(sel.SelectionError, match="unknown --stage"):
        select_labels(cat, SelectionOptions(stage="polished"))


def test_negatives_drop_those_on_positives(cat):
    s = select_labels(cat, SelectionOptions(projects=(1,), negatives=True))
    # (90.3, 20.2) is rejected but m1's positives are refined ones only at 10,50 -> kept;
    # (150, 80) kept too
    assert sorted(s.negatives["x"].tolist()) == [90.3, 150.0]
    s = select_labels(cat, SelectionOptions(projects=(1,), negatives=True, stage="picked"))
    # now (90, 20) is a positive (picked) and the rejected (90.3, 20.2) coincides with it
    assert s.negatives["x"].tolist() == [150.0]
    assert s.record["negatives_dropped_near_positives"] == 1


def test_flip_y_and_stems_across_projects(cat):
    s = select_labels(cat, SelectionOptions(flip_y=True, stage="picked", min_separation=0.0))
    p2 = s.positives[s.positives["mic"] == "2:m1"]
    assert p2["y"].tolist() == [100 - 60.0]
    stems = dict(zip(s.micrographs["mic"], s.micrographs["stem"]))
    assert stems["1:m1"] == "p1_m1" and stems["2:m1"] == "p2_m1" and stems["1:m2"] == "m2"
    # project 2 has no box size: its diameter is unknown
    assert np.isnan(s.micrographs.set_index("mic").loc["2:m1", "diameter_A"])


def test_jobs_and_sets_selection(cat):
    s = select_labels(cat, SelectionOptions(jobs=("J3",)))
    assert set(s.positives["set_id"]) == {3}
    s = select_labels(cat, SelectionOptions(sets=(2,), max_ctf_res=None))
    assert sorted(s.micrographs["key"]) == ["m1", "m3", "m4"]
    with pytest.raises(sel.SelectionError, match="not found"):
        select_labels(cat, SelectionOptions(jobs=("J99",)))


def test_unreadable_projects_skipped_or_error(cat, monkeypatch):
    # Tests run as root (everything readable): os.access is monkeypatched to deny project 2.
    root2 = cat.projects().set_index("id").loc[2, "root"]
    monkeypatch.setattr(sel.os, "access", lambda p, m: str(p) != root2)
    s = select_labels(cat, SelectionOptions(stage="picked"))
    assert set(s.micrographs["project_id"]) == {1}
    assert s.record["skipped_unreadable_projects"][0]["id"] == 2
    with pytest.raises(sel.UnreadableProjectsError, match="none of the selected projects"):
        select_labels(cat, SelectionOptions(projects=(2,)))
    assert issubclass(sel.UnreadableProjectsError, PermissionError)
