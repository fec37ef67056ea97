"""Silent gaps (issue 10, item 6): a crawl of a folder without projects is not a plain success;
a Select job whose declared particles.star is missing records a problem."""

from __future__ import annotations

import shutil

from click.testing import CliRunner

from harvest.catalog import Catalog
from harvest.cli import EXIT_NO_PROJECTS, crawl_command
from harvest.crawl import crawl
from harvest.relion import parse_job, scan_project


def test_crawl_of_a_folder_without_projects_exits_66(tmp_path):
    (tmp_path / "empty" / "some" / "dir").mkdir(parents=True)
    res = CliRunner().invoke(crawl_command, [str(tmp_path / "empty"), "--db",
                                             str(tmp_path / "c.db")])
    assert res.exit_code == EXIT_NO_PROJECTS == 66, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1 and "no CryoSPARC or RELION project found" in lines[0]
    assert "66" in (crawl_command.help or "")


def test_missing_select_output_is_a_problem(facility, tmp_path):
    root = tmp_path / "relion40"
    shutil.copytree(facility.projects["relion40"], root, symlinks=True)
    (root / "Select/job008/particles.star").unlink()
    scan = scan_project(root)
    jobs = {j.key: j for j in scan.jobs}
    assert jobs["Select/job008"].kind == "select2d"  # a class selection after Class2D
    rec = parse_job(scan, "Select/job008")
    assert rec.particle_sets == []
    assert any("declares particles.star" in p.error and p.path.endswith("particles.star")
               for p in rec.problems), rec.problems
    db = tmp_path / "c.db"
    crawl([root], db, progress=False)
    with Catalog(db, readonly=True) as cat:
        assert cat.problems()["error"].str.contains("declares particles.star").any()
