"""A CryoSPARC set's stage follows provenance (DESIGN.md): a re-extraction of a Select 2D's
particles is ``selected2d``; it recentres only with alignments it wrote itself."""

from __future__ import annotations

import numpy as np
from test_cryosparc_parse import fields, make_particles, one_set, particle_group, proj  # noqa: F401

from harvest.cryosparc import parse_job, scan_project
from harvest.cryosparc.project import particle_stage


def _chain(proj):  # noqa: F811 - the fixture
    arr = make_particles(20)
    proj.job("J5", "class_2D", particle_group("J5", fields(arr, ("blob/", "alignments2D/")),
                                              fields(arr, ("location/",))), parents=["J4"])
    proj.job("J6", "select_2D", particle_group(
        "J6", fields(arr, ("blob/", "alignments2D/")), fields(arr, ("location/",)),
        name="particles_selected"), parents=["J5"])
    # J7 re-extracts J6's particles: new blob, its own location, alignments2D passed through
    proj.job("J7", "extract_micrographs_multi", particle_group(
        "J7", fields(arr, ("blob/", "location/")), fields(arr, ("alignments2D/",))),
        parents=["J6", "J3"])
    # J8 extracts picks (no curated parent)
    proj.job("J8", "extract_micrographs_multi", particle_group(
        "J8", fields(arr, ("blob/", "location/")), None), parents=["J3"])
    return arr


def test_reextraction_inherits_the_select_stage(proj):  # noqa: F811
    arr = _chain(proj)
    scan = scan_project(proj.root)
    assert particle_stage(scan, "J7") == "selected2d"
    assert particle_stage(scan, "J8") == "extracted"
    assert particle_stage(scan, "J5") == "classified2d"  # classifying is its own stage
    reex = one_set(parse_job(scan, "J7"))
    assert reex.stage == "selected2d"
    # the passed-through 2D shifts are not applied again: the extraction placed the particles
    np.testing.assert_allclose(reex.particles["x"], reex.particles["raw_x"])
    sel = one_set(parse_job(scan, "J6"))
    assert sel.stage == "selected2d"
    assert not np.allclose(sel.particles["x"], sel.particles["raw_x"])  # 2D shifts applied
    assert len(reex.particles) == len(arr)
    assert one_set(parse_job(scan, "J8")).stage == "extracted"
