"""What the CLI prints cannot be forged by what facility users write, and says when nothing
matched (issue 14, item 7): a project title with a newline or a terminal escape stays on its
own row of ``cryoglean ls`` (escaped), and ``evaluate`` with picks whose micrographs match
none of the reference's says so and exits non-zero instead of printing zero scores."""

from __future__ import annotations

import json
import shutil

from cryoglean.cli import main
from harvest.show import printable


def test_printable_escapes_control_characters():
    assert printable("plain title") == "plain title"
    assert printable("a\nb") == "a\\nb"
    assert printable("\x1b[31mred\x1b[0m") == "\\x1b[31mred\\x1b[0m"
    assert printable("left\u202eright") == "left\\u202eright"
    assert printable(None) == ""
    assert printable("tab\there") == "tab\\there"


def test_title_with_a_newline_does_not_forge_an_ls_row(facility, tmp_path, capsys):
    root = tmp_path / "facility"
    shutil.copytree(facility.root, root, symlinks=True)
    project_json = next(root.rglob("project.json"))
    meta = json.loads(project_json.read_text())
    forged = "99  relion     5.0      ok      0     1  forged  /etc"
    meta["title"] = f"nice title\n{forged}\x1b[2J"
    project_json.write_text(json.dumps(meta))
    db = tmp_path / "c.db"
    assert main(["crawl", str(root), "--db", str(db), "-q"]) == 0
    capsys.readouterr()
    assert main(["ls", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    projects = len(facility.projects)
    assert len(lines) == 2 + projects  # header, rule, one line per project
    assert not any(line.startswith("99 ") for line in lines)
    assert "nice title\\n99  relion" in out and "\\x1b[2J" in out and "\x1b" not in out
    assert main(["show", "1", "--db", str(db)]) == 0
    shown = capsys.readouterr().out
    assert shown.splitlines()[0].startswith("project 1: nice title\\n99")
    assert main(["ls", "--db", str(db), "--json"]) == 0  # JSON keeps the title as it is
    data = json.loads(capsys.readouterr().out)
    assert any(p["title"] == meta["title"] for p in data)


def test_evaluate_with_no_matching_micrograph_fails(tmp_path, capsys):
    truth = tmp_path / "truth"
    picks = tmp_path / "picks"
    truth.mkdir()
    picks.mkdir()
    for i in range(3):
        (truth / f"mic_{i}.box").write_text("10\t10\t20\t20\n50\t50\t20\t20\n")
        (picks / f"other_{i}.box").write_text("10\t10\t20\t20\n")
    code = main(["evaluate", "--picks", str(picks), "--truth", str(truth), "--radius", "5",
                 "--micrographs", "union"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("Error: nothing matched") and len(err.strip().splitlines()) == 1
    assert "other_0" in err and "mic_0" in err
    # the same picks on the reference's micrographs score
    for i in range(3):
        shutil.copy(picks / f"other_{i}.box", picks / f"mic_{i}.box")
        (picks / f"other_{i}.box").unlink()
    assert main(["evaluate", "--picks", str(picks), "--truth", str(truth), "--radius", "5"]) == 0
    assert "precision 1.0000" in capsys.readouterr().out
