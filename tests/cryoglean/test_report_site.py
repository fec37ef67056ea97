"""``cryoglean report`` in a real browser: every page of the site for a generated facility
(one project whose micrographs are gone, one with problems, imported picks, a training run)
opens in headless Chromium without a console error, every link and image resolves, and the
funnel numbers are the catalog's. Screenshots of the facility and a project page are kept
(tmp_path, and benchmarks/out/report-screenshots/ when the checkout has benchmarks/)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
import pytest

from cryoglean.cli import main
from harvest.catalog import Catalog

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
DRIVER = ("/usr/bin/chromedriver",)
ARTIFACTS = Path(__file__).resolve().parents[2] / "benchmarks" / "out" / "report-screenshots"


def _browser():
    """A headless Chromium driven by selenium, or a skip naming what is missing."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[test]')")
    binary = next((p for p in CHROMIUM if os.path.exists(p)), None)
    driver = next((p for p in DRIVER if os.path.exists(p)), shutil.which("chromedriver"))
    if binary is None or driver is None:
        pytest.skip("Debian's chromium and chromium-driver are not installed "
                    "(make install-test installs them)")
    opts = Options()
    opts.binary_location = binary
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1300,1600"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        return webdriver.Chrome(service=Service(driver), options=opts)
    except Exception as exc:  # noqa: BLE001 - any start failure is a skip with its reason
        pytest.skip(f"headless chromium does not start: {str(exc).splitlines()[0]}")


def _training_run(root: Path) -> Path:
    """A run folder as `cryoglean train` writes it (options, metrics, validation, plots)."""
    from trainers.plots import plot_f1, plot_losses, plot_picks, plot_pr

    run = root / "runs" / "run1"
    run.mkdir(parents=True)
    (run / "options.yaml").write_text("mode: particle\ndata: /data/mics\nnum_epoch: 2\n")
    metrics = pd.DataFrame({"epoch": [0, 1], "train/loss_epoch": [2.0, 1.0],
                            "val/loss": [2.5, 1.5]})
    metrics.to_csv(run / "metrics.csv", index=False)
    curve = pd.DataFrame({"threshold": [0.9, 0.5, 0.1], "precision": [1.0, 0.8, 0.5],
                          "recall": [0.2, 0.6, 0.9], "f1": [0.33, 0.69, 0.64]})
    plot_losses(metrics, run / "loss.png")
    plot_pr(curve, run / "pr.png")
    plot_f1(curve, run / "f1.png")
    (run / "val_metrics.json").write_text(json.dumps(
        {"summary": {"precision": 0.8, "recall": 0.6, "f1": 0.69, "best_f1": 0.69,
                     "auprc": 0.55}}))
    (run / "picks").mkdir()
    plot_picks(np.random.default_rng(0).normal(size=(200, 300)), [[50, 60]], run / "picks" /
               "mic_0001.png", 10)
    return root / "runs"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from harvest.synth import FacilityConfig, make_facility

    tmp = tmp_path_factory.mktemp("report")
    fac = make_facility(tmp / "fac", FacilityConfig(versions=("cryosparc", "relion31"),
                                                    n_micrographs=3))
    cs, rel = Path(fac.projects["cryosparc"]), Path(fac.projects["relion31"])
    gone = sorted((rel / "MotionCorr").rglob("*.mrc"))  # archived micrographs
    assert gone
    for p in gone:
        p.unlink()
    broken = sorted(cs.glob("J*/J*_passthrough_particles*.cs"))[-1]
    broken.unlink()  # a problem that stays open
    db = tmp / "catalog.db"
    assert main(["crawl", str(fac.root), "--db", str(db), "-q"]) == 3
    with Catalog(db, readonly=True) as cat:  # another picker's picks, to evaluate
        pid = cat.find_project(str(cs))
        mics = cat.micrographs([pid])
        sets = cat.particle_sets(project_ids=[pid])
        ref = cat.particles(sets[sets["stage"] == "selected2d"]["id"][:1])
    assert len(ref)
    keys = dict(zip(mics["id"], mics["key"]))
    picks = tmp / "picks"
    from converters.registry import get

    table = pd.DataFrame({"micrograph": ref["micrograph_id"].map(keys) + ".mrc",
                          "x": ref["x"] + 2.0, "y": ref["y"] - 1.0})
    get("star").write(table, picks)
    picks = next(picks.parent.glob("picks*")) if not picks.exists() else picks
    assert main(["import", "star", str(picks), "--db", str(db), "--project", str(pid),
                 "--name", "otherpicker"]) == 0
    out = tmp / "site"
    runs = _training_run(tmp)
    assert main(["report", "--db", str(db), "-o", str(out), "--runs", str(runs), "-q"]) == 0
    return {"out": out, "db": db, "cs": cs, "rel": rel, "broken": broken, "tmp": tmp}


def _local(url: str) -> Path:
    return Path(unquote(urlparse(url).path))


def test_every_page_opens_cleanly_in_chromium(site):
    out = site["out"]
    driver = _browser()
    try:
        todo, seen, pages = [out / "index.html"], set(), 0
        while todo:
            page = todo.pop()
            if page in seen:
                continue
            seen.add(page)
            driver.get(page.resolve().as_uri())
            pages += 1
            errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            assert not errors, f"{page}: console errors {errors}"
            # lazy images below the fold load once scrolled to
            driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")
            images = driver.execute_async_script(
                "const done = arguments[0]; Promise.all(Array.from(document.images).map(i => "
                "i.complete ? 0 : new Promise(r => { i.onload = i.onerror = r; })))"
                ".then(() => done(Array.from(document.images).map(i => [i.src, "
                "i.naturalWidth > 0])))")
            broken = [src for src, ok in images if not ok]
            assert not broken, f"{page}: broken images {broken}"
            for href in driver.execute_script(
                    "return Array.from(document.links).map(a => a.href)"):
                assert href.startswith("file://"), f"{page}: link out of the site {href}"
                target = _local(href)
                assert target.is_file(), f"{page}: broken link {href}"
                if target.suffix == ".html":
                    todo.append(target)
            if page.name == "index.html":
                driver.save_screenshot(str(site["tmp"] / "facility.png"))
        project_pages = sorted((out / "projects").glob("*.html"))
        assert pages == 2 + len(project_pages) and len(project_pages) == 2
        with Catalog(site["db"], readonly=True) as cat:
            totals = cat.project_stage_totals()
            for p in project_pages:
                pid = int(p.stem)
                driver.get(p.resolve().as_uri())
                shown = driver.execute_script(
                    "return Array.from(document.querySelectorAll('#funnel td[data-stage]'))"
                    ".map(td => [td.dataset.stage, td.textContent])")
                t = totals[totals["project_id"] == pid]
                assert {s: int(c) for s, c in shown} == dict(zip(t["stage"], t["count"]))
                assert shown, f"{p}: no funnel"
            cs_id = cat.find_project(str(site["cs"]))
        driver.get((out / "projects" / f"{cs_id}.html").resolve().as_uri())
        driver.save_screenshot(str(site["tmp"] / "project.png"))
    finally:
        driver.quit()
    for name in ("facility.png", "project.png"):
        assert (site["tmp"] / name).stat().st_size > 10_000
        if ARTIFACTS.parent.parent.is_dir():
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(site["tmp"] / name, ARTIFACTS / name)


def test_pages_say_what_is_wrong(site):
    out = site["out"]
    index = (out / "index.html").read_text()
    assert site["broken"].name in index and "restore the missing file" in index
    with Catalog(site["db"], readonly=True) as cat:
        rel_id, cs_id = cat.find_project(str(site["rel"])), cat.find_project(str(site["cs"]))
    rel = (out / "projects" / f"{rel_id}.html").read_text()
    assert "micrographs are not readable" in rel
    cs = (out / "projects" / f"{cs_id}.html").read_text()
    assert "otherpicker" in cs and 'id="evaluations"' in cs
    assert "run1" in (out / "runs.html").read_text()
    text = index + rel + cs
    assert "http://" not in text and "https://" not in text  # nothing from a CDN


def test_regeneration_reuses_thumbnails(site, capsys):
    out = site["tmp"] / "site2"
    args = ["report", "--db", str(site["db"]), "-o", str(out), "--json", "-q"]
    capsys.readouterr()
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["thumbnails_made"] > 0 and first["thumbnails_cached"] == 0
    assert first["unreadable_micrographs"] > 0
    assert main(args) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["thumbnails_made"] == 0 and again["pages_unchanged"] == again["projects"]
    assert again["thumbnails_cached"] == first["thumbnails_made"]
    # a changed micrograph (mtime) gets a new thumbnail, the old one is removed
    with Catalog(site["db"], readonly=True) as cat:
        m = cat.micrographs([cat.find_project(str(site["cs"]))]).iloc[0]
    os.utime(m["abs_path"], ns=(1, 1))
    before = set(os.listdir(out / "thumbs"))
    assert main(args) == 0
    third = json.loads(capsys.readouterr().out)
    assert third["thumbnails_made"] == 1 and third["pages_unchanged"] == third["projects"] - 1
    after = set(os.listdir(out / "thumbs"))
    assert len(after) == len(before) and after != before
