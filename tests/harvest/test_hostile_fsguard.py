"""harvest.fsguard: non-regular files are refused without blocking, names and links that leave
the crawl roots are refused, reads stop at the per-file budget; a malformed job.json drops only
its job on a later crawl too; twin folder names stay two catalog texts."""

from __future__ import annotations

import json
import os
import threading

import pytest

from harvest import fsguard
from harvest.catalog.sqlvalues import db_text


def _returns_within(fn, seconds: float = 10.0):
    """fn() run in a thread; its result, or a failure when it blocks (a FIFO opened plainly)."""
    out: dict = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "blocked: the FIFO was opened"
    if "error" in out:
        raise out["error"]
    return out["value"]


def test_fifo_socket_device_folder_are_refused_unopened(tmp_path):
    os.mkfifo(tmp_path / "pipe.star")
    (tmp_path / "folder.star").mkdir()
    for name, words in (("pipe.star", "FIFO"), ("folder.star", "folder")):
        with pytest.raises(fsguard.NotARegularFile, match=words) as info:
            _returns_within(lambda n=name: fsguard.open_file(tmp_path / n))
        assert info.value.filename == str(tmp_path / name)
    with pytest.raises(fsguard.NotARegularFile, match="character device"):
        fsguard.open_file("/dev/null")
    with pytest.raises(FileNotFoundError):
        fsguard.open_file(tmp_path / "absent.star")


def test_star_and_json_readers_refuse_a_fifo(tmp_path):
    from harvest.cryosparc.jobjson import read_json
    from harvest.starread import read_star

    os.mkfifo(tmp_path / "particles.star")
    os.mkfifo(tmp_path / "job.json")
    with pytest.raises(FileNotFoundError, match="FIFO"):
        _returns_within(lambda: read_star(tmp_path / "particles.star"))
    with pytest.raises(OSError, match="FIFO"):
        _returns_within(lambda: read_json(str(tmp_path / "job.json")))


def test_open_file_reads_text_and_bytes(tmp_path):
    p = tmp_path / "run.job"
    p.write_bytes(b"a == 1\nb == \xff\n")
    with fsguard.open_file(p, "r", errors="replace") as fh:
        assert fh.read() == "a == 1\nb == \ufffd\n"
    with fsguard.open_file(p) as fh:
        assert fh.read(4) == b"a =="
        fh.seek(0)
        assert fh.read() == p.read_bytes()


def test_names_and_links_outside_the_roots(tmp_path):
    fac = tmp_path / "fac"
    (fac / "proj").mkdir(parents=True)
    (tmp_path / "secret").write_text("root:x:0:0")
    (fac / "proj" / "ok.star").write_text("data_\n")
    os.symlink(tmp_path / "secret", fac / "proj" / "link.star")
    proj = fac / "proj"
    # outside a crawl: no roots, names resolve and links are followed
    assert fsguard.resolve(proj, "../../secret") == str(tmp_path / "secret")
    with fsguard.confine([fac]):
        assert fsguard.roots() == (str(fac),)
        assert fsguard.resolve(proj, "ok.star") == str(proj / "ok.star")
        for name in ("../../secret", "/etc/passwd", "../../fac2/x"):
            with pytest.raises(fsguard.OutsideRoots, match="leaves the crawl roots"):
                fsguard.resolve(proj, name)
        with pytest.raises(fsguard.OutsideRoots) as info:
            fsguard.open_file(proj / ".." / ".." / "secret")
        assert "root:x" not in str(info.value)
        with pytest.raises(fsguard.OutsideRoots, match="links to"):
            fsguard.open_file(proj / "link.star")
        fsguard.open_file(proj / "ok.star").close()
    with fsguard.confine([fac], follow_symlinks="any"):
        fsguard.open_file(proj / "link.star").close()  # links are the admin's choice
        with pytest.raises(fsguard.OutsideRoots):
            fsguard.resolve(proj, "../../secret")  # names never
    assert fsguard.roots() == ()


def test_budget_stops_a_stalling_read(tmp_path, monkeypatch):
    p = tmp_path / "slow.star"
    p.write_text("data_\nloop_\n_rlnCoordinateX #1\n1\n")
    monkeypatch.setenv(fsguard.BUDGET_ENV, "0.2")
    monkeypatch.setenv(fsguard.STALL_ENV, "slow.star=0.3")
    with pytest.raises(fsguard.FileBudgetExceeded, match="per-file budget") as info:
        with fsguard.open_file(p) as fh:
            fh.read()
    assert info.value.filename == str(p)
    monkeypatch.setenv(fsguard.STALL_ENV, "other.star=0.3")
    with fsguard.open_file(p) as fh:
        assert fh.read().startswith(b"data_")
    monkeypatch.setenv(fsguard.BUDGET_ENV, "soon")
    with pytest.raises(ValueError, match="CRYOGLEAN_FILE_BUDGET"):
        fsguard.budget_seconds()


def test_db_text_keeps_twin_names_apart():
    raw = os.fsdecode(b"/f/caf\xe9/p")
    spelled = "/f/caf\\xe9/p"
    both = os.fsdecode(b"/f/caf\\\xe9/p")
    texts = [db_text(v) for v in (raw, spelled, both)]
    assert len(set(texts)) == 3, texts
    assert texts[0] == "/f/caf\\xe9/p"  # readable, as before
    for plain in ("/f/café/p", "/f/a\\b/p", "/f/x"):
        assert db_text(plain) == plain


def test_malformed_job_json_on_a_later_crawl_drops_only_that_job(tmp_path):
    """First crawl clean; then J5's job.json gets wrong types and J9 a new title: the project
    is still crawled (J9's title updated, not stale), J5 is one problem row and keeps its
    sets (present, unreadable this time)."""
    from harvest.catalog import Catalog
    from harvest.crawl import crawl
    from harvest.synth import FacilityConfig, make_facility

    fac = make_facility(tmp_path / "fac", FacilityConfig(n_micrographs=2,
                                                          versions=("cryosparc",)))
    cs = fac.projects["cryosparc"]
    db = tmp_path / "c.db"
    first = crawl([fac.root], db, progress=False)
    assert first.problems == 0
    doc = json.loads((cs / "J5" / "job.json").read_text())
    doc["output_results"] = {"not": "a list"}
    (cs / "J5" / "job.json").write_text(json.dumps(doc))
    doc = json.loads((cs / "J9" / "job.json").read_text())
    doc["title"] = "renamed since"
    (cs / "J9" / "job.json").write_text(json.dumps(doc))
    again = crawl([fac.root], db, progress=False)
    assert again.problems == 1
    with Catalog(db, readonly=True) as cat:
        jobs = cat.jobs().set_index("key")
        assert jobs.loc["J9", "title"] == "renamed since"
        assert jobs.loc["J5", "status"] != "missing"
        (row,) = cat.problems().itertuples()
        assert row.path.endswith("J5/job.json") and "'output_results' is dict" in row.error
