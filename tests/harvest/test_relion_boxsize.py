"""RELION 3.0 particle stars carry no rlnImageSize: the box comes from the stack header."""

from __future__ import annotations

from harvest import relion


def _boxes(root):
    scan = relion.scan_project(root)
    out = {}
    for job in scan.jobs:
        if job.harvestable:
            for s in relion.parse_job(scan, job.key).particle_sets:
                out[(job.key, s.name)] = s.box_size
    return out


def test_relion30_box_size_from_stack_equals_relion31(facility):
    b30 = _boxes(facility.projects["relion30"])
    b31 = _boxes(facility.projects["relion31"])
    particle_sets = {k: v for k, v in b31.items() if not k[0].startswith(("ManualPick", "AutoPick"))}
    assert particle_sets and all(v for v in particle_sets.values())
    for key, box in particle_sets.items():
        assert b30[key] == box, key
