"""Micrographs may be gone (DESIGN.md): a facility whose micrograph files were deleted after
processing still has every micrograph's size in the catalog, from metadata (RELION's motion
metadata ``rlnImageSizeX/Y``, CryoSPARC's ``micrograph_shape``), and says where it came from."""

from __future__ import annotations

import shutil

from harvest.catalog import Catalog
from harvest.crawl import crawl


def _sizes(db) -> dict:
    with Catalog(db, readonly=True) as cat:
        projects = cat.projects().set_index("id")["root"]
        mics = cat.micrographs()
    mics = mics[~mics["is_tomogram"]]
    return {(projects[r.project_id].rsplit("/", 1)[-1], r.key): (r.nx, r.ny, r.size_source)
            for r in mics.itertuples()}


def test_sizes_survive_deleted_micrographs(facility, tmp_path):
    intact = tmp_path / "intact.db"
    crawl([facility.root], intact, progress=False)
    root = tmp_path / "facility"
    shutil.copytree(facility.root, root, symlinks=True)
    shutil.rmtree(root / "micrographs")  # the archive purged the motion-corrected micrographs
    purged = tmp_path / "purged.db"
    crawl([root], purged, progress=False)

    before, after = _sizes(intact), _sizes(purged)
    truth = {m.key: (m.nx, m.ny) for m in facility.micrographs}
    assert set(before) == set(after) and len(after) >= len(truth) * len(facility.projects)
    for (project, key), (nx, ny, source) in after.items():
        assert (nx, ny) == truth[key], (project, key)
        assert source == "metadata", (project, key)
        assert before[(project, key)][:2] == (nx, ny)
    # with the files there, RELION reads the headers; CryoSPARC only ever has metadata
    assert {s for (p, _), (*_, s) in before.items() if p.startswith("relion")} == {"header"}
    assert {s for (p, _), (*_, s) in before.items() if not p.startswith("relion")} == {"metadata"}
    # the crawl says the files are gone, and that their sizes come from metadata
    with Catalog(purged, readonly=True) as cat:
        errors = cat.problems()["error"].tolist()
    assert any("their sizes come from metadata" in e for e in errors)
    assert not any("is unknown" in e for e in errors)
