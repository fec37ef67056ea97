"""End to end: generated facility -> crawl -> export -> labels read back with the registry sit on
the simulated particles of the exported images."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy.spatial import cKDTree

from converters import atomic
from converters import export as ex
from converters.select import SelectionOptions

VERSIONS = ("cryosparc", "relion30", "relion31", "relion40", "relion50")
FORMATS = ("yolo", "cryolo", "topaz", "thi", "star", "cetpick")


@pytest.fixture(scope="module")
def db(facility, tmp_path_factory):
    from harvest.crawl import crawl

    path = tmp_path_factory.mktemp("catalog") / "catalog.db"
    summary = crawl([facility.root], path, progress=False)
    assert summary.problems == 0
    return path


def _export(db, fmt, out, project=None, **kw):
    sel_kw = {k: kw.pop(k) for k in list(kw) if k in SelectionOptions.__dataclass_fields__}
    if project is not None:
        sel_kw["projects"] = (str(project),)
    opts = ex.ExportOptions(selection=SelectionOptions(**sel_kw), **kw)
    return ex.export(db, fmt, out, opts)


def _truth_in_export(facility, man, kind="particle", flip=False):
    """True positions mapped into each exported image: DataFrame[stem, x, y]."""
    truth = facility.truth_frame()
    truth = truth[truth["kind"] == kind]
    rows = []
    for m in man["micrographs"]:
        t = truth[truth["micrograph"] == m["key"]]
        y = (m["ny"] - t["y"]) if flip else t["y"]
        rows.append(pd.DataFrame({"stem": m["stem"], "x": t["x"] * m["scale_x"],
                                  "y": y * m["scale_y"]}))
    return pd.concat(rows, ignore_index=True)


def _distances(labels, truth):
    """Distance of each label to the nearest truth item of its micrograph, and the index of
    that item (for duplicate checks)."""
    dist = np.full(len(labels), np.inf)
    idx = np.full(len(labels), -1)
    for stem, grp in labels.groupby("stem"):
        t = truth[truth["stem"] == stem]
        if t.empty:
            continue
        d, i = cKDTree(t[["x", "y"]].to_numpy(float)).query(grp[["x", "y"]].to_numpy(float))
        dist[labels.index.get_indexer(grp.index)] = d
        idx[labels.index.get_indexer(grp.index)] = t.index.to_numpy()[i]
    return dist, idx


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("version", VERSIONS)
def test_labels_sit_on_particles(facility, db, tmp_path, version, fmt):
    # RELION 3.0 particle tables carry no box size; the harvester reads it from the stack header,
    # so every flavour exports without --diameter
    res = _export(db, fmt, tmp_path / "out", project=facility.projects[version])
    man = res.manifest
    labels = ex.read_labels(res.out_dir)
    assert len(labels) == sum(c["positives"] for c in res.counts.values()) > 0
    truth = _truth_in_export(facility, man)
    dist, idx = _distances(labels, truth)
    # integer formats (topaz, thi, cetpick, the EMAN boxes of cryolo) round: within 1 px;
    # float formats: far closer
    assert dist.max() < 1.0, (version, fmt, dist.max())
    assert len(set(idx)) == len(idx)  # one label per particle, no duplicates
    # positives are the refined particles: every selected (extracted true) particle
    expected = facility.scenario.select("selected")
    assert len(labels) == len(expected)
    assert {m["stage"] for m in man["micrographs"]} == {"refined"}
    if fmt == "cetpick":
        assert (labels["z"] == 0).all()
    if fmt in ("yolo", "star"):
        assert dist.max() < 0.02
    if fmt == "cryolo":  # integer corners by default: the centre within 0.5 px per axis
        assert dist.max() < 0.5 * 2**0.5 + 0.02


def test_layouts(facility, db, tmp_path):
    p = facility.projects["cryosparc"]
    out = _export(db, "yolo", tmp_path / "y", project=p).out_dir
    for name in ("images/train", "labels/train", "images/val", "labels/val", "train.txt",
                 "val.txt", "cryo_training.yaml", "manifest.json"):
        assert (out / name).exists(), name
    listed = (out / "train.txt").read_text().split()
    assert listed and all(os.path.isfile(x) and x.startswith(str(out)) for x in listed)
    out = _export(db, "cryolo", tmp_path / "c", project=p).out_dir
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["train"]["train_annot_folder"] == str(out / "train_annot")
    assert cfg["model"]["anchors"][0] > 0
    link = next((out / "train_image").iterdir())
    assert link.is_symlink() and not os.path.isabs(os.readlink(link)) and link.resolve().is_file()
    out = _export(db, "topaz", tmp_path / "t", project=p).out_dir
    for name in ("images", "particles_train.txt", "particles_val.txt", "images_train.txt",
                 "images_val.txt"):
        assert (out / name).exists(), name
    out = _export(db, "thi", tmp_path / "e", project=p).out_dir
    assert (out / "train" / "images.thi").read_text().startswith("[")
    assert next((out / "train" / "images").iterdir()).suffix == ".png"


@pytest.mark.parametrize("how", ["scale", "width"])
def test_png_scale_nondivisible(facility, db, tmp_path, how):
    # a downsample factor that does not divide the width: int(nx/S) != nx/S, so the coordinate
    # scale is int(nx/S)/nx, not 1/S; likewise a width that is not nx/integer
    nx = facility.config.nx
    s = next(k for k in (3, 7, 9, 11, 13) if nx % k)
    kw = {"scale": float(s)} if how == "scale" else {"width": nx * 3 // 5 + 1}
    res = _export(db, "yolo", tmp_path / "out", project=facility.projects["relion31"],
                  images="png", **kw)
    man = res.manifest
    m0 = man["micrographs"][0]
    assert m0["out_nx"] == (int(nx / s) if how == "scale" else kw["width"])
    assert m0["scale_x"] == m0["out_nx"] / m0["nx"]
    import cv2

    img = cv2.imread(str(res.out_dir / "images" / m0["split"] / f"{m0['stem']}.png"),
                     cv2.IMREAD_UNCHANGED)
    assert img.shape == (m0["out_ny"], m0["out_nx"])
    labels = ex.read_labels(res.out_dir)
    truth = _truth_in_export(facility, man)
    dist, _ = _distances(labels, truth)
    assert dist.max() < 0.02
    if how == "scale":  # the naive 1/S would put labels up to nx*(1/S - scale_x) px off
        naive = truth.assign(x=truth["x"] / m0["scale_x"] / s, y=truth["y"] / m0["scale_y"] / s)
        assert _distances(labels, naive)[0].max() > 0.1


def test_flip_y(facility, db, tmp_path):
    res = _export(db, "star", tmp_path / "out", project=facility.projects["relion50"],
                  flip_y=True)
    assert res.manifest["coordinates"]["flip_y"] is True
    labels = ex.read_labels(res.out_dir)
    dist, _ = _distances(labels, _truth_in_export(facility, res.manifest, flip=True))
    assert dist.max() < 0.02
    dist, _ = _distances(labels, _truth_in_export(facility, res.manifest, flip=False))
    assert np.median(dist) > 2


def test_mrc_scale_topaz(facility, db, tmp_path):
    import mrcfile

    res = _export(db, "topaz", tmp_path / "out", project=facility.projects["cryosparc"],
                  scale=2.0, num_workers=2)
    assert res.manifest["images"]["written"] == len(res.manifest["micrographs"])
    m0 = res.manifest["micrographs"][0]
    with mrcfile.open(res.out_dir / "images" / f"{m0['stem']}.mrc") as m:
        assert m.data.shape == (facility.config.ny // 2, facility.config.nx // 2)
    dist, _ = _distances(ex.read_labels(res.out_dir), _truth_in_export(facility, res.manifest))
    assert dist.max() < 1.0


def test_dedup_union_of_picked_sets(facility, db, tmp_path):
    # manual + auto picks of the same particles (0.3-0.9 px apart) merge into one label each
    res = _export(db, "star", tmp_path / "out", project=facility.projects["cryosparc"],
                  stage="picked", images="none")
    labels = ex.read_labels(res.out_dir)
    items = facility.scenario.items
    picked = items[items["auto"] | items["manual"]]
    assert len(labels) == len(picked)
    assert res.manifest["filters"]["deduplication"]["dropped_particles"] == int(
        items["auto"].sum() + items["manual"].sum() - len(picked))
    res0 = _export(db, "star", tmp_path / "out0", project=facility.projects["cryosparc"],
                   stage="picked", images="none", min_separation=0.0)
    assert len(ex.read_labels(res0.out_dir)) == items["auto"].sum() + items["manual"].sum()


def test_negatives(facility, db, tmp_path):
    p = facility.projects["relion40"]
    res = _export(db, "yolo", tmp_path / "y", project=p, negatives=True)
    assert res.manifest["negatives"]["written_as"] == "class 1"
    assert "nc: 2" in (res.out_dir / "cryo_training.yaml").read_text()
    neg = ex.read_labels(res.out_dir, negatives=True)
    pos = ex.read_labels(res.out_dir)
    assert len(neg) > 0 and len(pos) == len(facility.scenario.select("selected"))
    junk = _truth_in_export(facility, res.manifest, kind="junk")
    # rejected sets hold raw auto picks: truth + up to 0.9 px per axis
    assert _distances(neg, junk)[0].max() < 0.9 * 2**0.5 + 0.01
    res = _export(db, "star", tmp_path / "s", project=p, negatives=True)
    assert res.manifest["negatives"]["written_as"] == "{split}/labels_negative"
    assert (res.out_dir / "train" / "labels_negative").is_dir()
    neg2 = ex.read_labels(res.out_dir, negatives=True)
    assert len(neg2) == sum(c["negatives"] for c in res.counts.values()) == len(neg)


def test_ctf_filter_and_manifest(facility, db, tmp_path):
    p = facility.projects["relion31"]
    ctf = {m.key: m.ctf_max_res for m in facility.micrographs}
    limit = float(np.median(list(ctf.values())))
    res = _export(db, "star", tmp_path / "out", project=p, max_ctf_res=limit, images="none")
    man = json.loads((res.out_dir / "manifest.json").read_text())
    dropped = man["filters"]["max_ctf_res"]["dropped_micrographs"]
    assert sorted(d.split(":", 1)[1] for d in dropped) == sorted(
        k for k, v in ctf.items() if v > limit)
    assert {m["key"] for m in man["micrographs"]} == {k for k, v in ctf.items() if v <= limit}
    for key in ("cryoglean_version", "catalog", "command", "selection", "counts", "filters",
                "split", "images", "coordinates", "micrographs"):
        assert key in man
    assert man["catalog"]["fingerprint"] and man["catalog"]["schema_version"]
    m = man["micrographs"][0]
    for key in ("sparse_fraction", "picked_count", "stage", "diameter_A", "scale_x",
                "ctf_unknown", "motion_unknown"):
        assert key in m
    # refined vs picked: a fraction of the picks reached refinement
    assert 0 < m["sparse_fraction"] <= 1
    # only the winning stage's sets were read (refined), not the larger picked/extracted ones
    assert man["selection"]["particles_loaded"] == len(facility.scenario.select("selected"))
    total = sum(x["positives"] for x in man["micrographs"])
    assert total == sum(c["positives"] for c in man["counts"].values())
    again = _export(db, "star", tmp_path / "again", project=p, max_ctf_res=limit, images="none")
    assert again.manifest["catalog"]["fingerprint"] == man["catalog"]["fingerprint"]


def test_splits_seeded_and_by_project(facility, db, tmp_path):
    def split_of(res):
        return {m["stem"]: m["split"] for m in res.manifest["micrographs"]}

    p = facility.projects["cryosparc"]
    a = _export(db, "star", tmp_path / "a", project=p, images="none", seed=1, val_fraction=0.5)
    b = _export(db, "star", tmp_path / "b", project=p, images="none", seed=1, val_fraction=0.5)
    assert split_of(a) == split_of(b)
    assert sum(v == "val" for v in split_of(a).values()) == round(len(split_of(a)) / 2)
    others = {tuple(sorted(split_of(_export(db, "star", tmp_path / f"s{s}", project=p,
                                             images="none", seed=s, val_fraction=0.5)).items()))
              for s in range(2, 6)}
    assert len(others) > 1
    # every generated project re-processes the same exposures: no project can be held out
    # without its data in training (tests/converters/test_split_exposures.py covers separate projects)
    with pytest.raises(ValueError, match="shares exposures"):
        _export(db, "star", tmp_path / "proj", images="none", split_by="project",
                val_fraction=0.4)
    res = _export(db, "star", tmp_path / "all", images="none", val_fraction=0.4)
    sides: dict[str, set] = {}
    for m in res.manifest["micrographs"]:
        sides.setdefault(m["key"], set()).add(m["split"])
        assert m["stem"] == f"p{m['project_id']}_{m['key']}"  # keys repeat across projects
    assert all(len(s) == 1 for s in sides.values())  # an exposure is on one side
    labels = ex.read_labels(res.out_dir)
    assert len(labels) == len(facility.projects) * len(facility.scenario.select("selected"))


def test_atomic_no_overwrite_force(facility, db, tmp_path, monkeypatch):
    p = facility.projects["relion30"]
    out = tmp_path / "out"
    _export(db, "star", out, project=p, images="none")
    marker = out / "train" / "labels"
    before = sorted(x.name for x in marker.iterdir())
    with pytest.raises(atomic.OutputExistsError, match="--force"):
        _export(db, "star", out, project=p, images="none")

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ex.images, "write_images", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        _export(db, "star", out, project=p, force=True)
    assert sorted(x.name for x in marker.iterdir()) == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["out"]  # no temp dirs left
    monkeypatch.undo()
    res = _export(db, "star", out, project=p, force=True)  # now with linked images
    assert res.manifest["images"]["linked"] + res.manifest["images"]["copied"] > 0
    assert (out / "train" / "images").is_dir()


def test_unreadable_project_skipped(facility, db, tmp_path, monkeypatch):
    # Tests run as root (everything is readable): os.access is monkeypatched to deny one root.
    from converters import select as sel

    denied = str(facility.projects["relion40"])
    real = os.access
    monkeypatch.setattr(sel.os, "access", lambda p, m: False if str(p) == denied else real(p, m))
    res = _export(db, "star", tmp_path / "out", images="none")
    skipped = res.manifest["selection"]["skipped_unreadable_projects"]
    assert [s["root"] for s in skipped] == [denied]
    assert len({m["project_id"] for m in res.manifest["micrographs"]}) == len(facility.projects) - 1
    with pytest.raises(PermissionError, match="none of the selected projects"):
        _export(db, "star", tmp_path / "out2", project=denied, images="none")


def test_import_round_trip(facility, db, tmp_path):
    import shutil

    from converters.importer import import_picks
    from harvest.catalog import Catalog

    work = tmp_path / "catalog.db"
    shutil.copy(db, work)
    p = facility.projects["cryosparc"]
    res = _export(work, "star", tmp_path / "out", project=p, images="none", val_fraction=0.0)
    labels = ex.read_labels(res.out_dir)
    r = import_picks(work, "star", res.out_dir / "train" / "labels", str(p), "roundtrip")
    assert r.particles == len(labels)
    with Catalog(work, readonly=True) as cat:
        sets = cat.particle_sets(set_ids=[r.set_id])
        assert sets["stage"].tolist() == ["picked"]
        parts = cat.particles([r.set_id])
        mics = cat.micrographs(ids=parts["micrograph_id"].unique())
    key = parts["micrograph_id"].map(mics.set_index("id")["key"])
    got = pd.DataFrame({"stem": key, "x": parts["x"], "y": parts["y"]})
    dist, idx = _distances(got, labels[["stem", "x", "y"]].reset_index(drop=True))
    assert dist.max() < 1e-3 and len(set(idx)) == len(idx)
    # the imported set is now the project's only... picked-stage set named roundtrip
    with pytest.raises(ValueError, match="already has an imported set"):
        import_picks(work, "star", res.out_dir / "train" / "labels", str(p), "roundtrip")


def test_import_unmatched_and_yolo(facility, db, tmp_path):
    import shutil

    from converters.importer import UnmatchedMicrographsError, import_picks

    work = tmp_path / "catalog.db"
    shutil.copy(db, work)
    p = facility.projects["relion50"]
    d = tmp_path / "picks"
    d.mkdir()
    (d / "mic_0001.thi").write_text("[Particle Coordinates: X Y Value]\n10\t20\t0.5\n[End]\n")
    (d / "nosuch_9.thi").write_text("[Particle Coordinates: X Y Value]\n10\t20\t0.5\n[End]\n")
    with pytest.raises(UnmatchedMicrographsError, match="nosuch_9"):
        import_picks(work, "thi", d, str(p), "x")
    # YOLO detections are normalised: sizes come from the catalog
    res = _export(work, "yolo", tmp_path / "y", project=p, images="png", scale=2.0,
                  val_fraction=0.0)
    r = import_picks(work, "yolo", res.out_dir / "labels" / "train", str(p), "yolo-picks")
    assert r.particles == len(facility.scenario.select("selected"))


def test_cli_export_and_import(facility, db, tmp_path):
    import shutil

    from cryoglean.cli import cli  # errors become one line in cryoglean.cli, not per command

    work = tmp_path / "catalog.db"
    shutil.copy(db, work)
    p = str(facility.projects["relion31"])
    out = tmp_path / "ds"
    r = CliRunner().invoke(cli, ["export", "thi", "--db", str(work), "-o", str(out),
                                 "--project", p, "--images", "none", "-q"])
    assert r.exit_code == 0, r.output
    assert "exported thi" in r.output and str(out) in r.output
    r = CliRunner().invoke(cli, ["export", "thi", "--db", str(work), "-o", str(out),
                                 "--project", p])
    assert r.exit_code != 0 and "--force" in r.output
    r = CliRunner().invoke(cli, ["export", "thl", "--db", str(work), "-o", str(out)])
    assert r.exit_code == 2 and "thi" in r.output
    r = CliRunner().invoke(cli, ["import", "thi", str(out / "train" / "labels"), "--db",
                                 str(work), "--project", p, "--name", "back"])
    assert r.exit_code == 0, r.output
    assert "imported" in r.output


def test_export_choices_come_from_registry():
    from converters import registry
    from converters.cli import export_command

    fmt_param = export_command.params[0]
    assert list(fmt_param.type.choices) == [
        n for n in registry.names() if "write" in registry.get(n).capabilities
    ]


def test_cetpick_tomograms_keep_z(tmp_path):
    # A facility with only the RELION 5 tomography project: cet_pick gets the picks' z.
    from harvest.crawl import crawl
    from harvest.synth import make_facility
    from harvest.synth.config import FacilityConfig

    fac = make_facility(tmp_path / "fac", FacilityConfig(n_micrographs=1,
                                                         versions=("relion50_tomo",)))
    crawl([fac.root], tmp_path / "c.db", progress=False)
    res = _export(tmp_path / "c.db", "cetpick", tmp_path / "out", val_fraction=0.0)
    labels = ex.read_labels(res.out_dir)
    tomo = fac.tomograms[0]
    assert len(labels) == len(tomo.picks)
    d, _ = cKDTree(tomo.picks).query(labels[["x", "y", "z"]].to_numpy(float))
    assert d.max() <= 0.5 * 3**0.5 + 1e-6  # integer voxels of the stored picks
    link = res.out_dir / "train" / "images" / f"{labels['stem'].iloc[0]}.mrc"
    assert link.is_symlink() and link.resolve() == tomo.path.resolve()
    with pytest.raises(ex.ExportError, match="tomograms"):
        _export(tmp_path / "c.db", "cetpick", tmp_path / "o2", images="png")


@pytest.mark.parametrize("fmt", ["box", "cbox", "coord", "copick", "csv", "imod"])
def test_other_formats_on_particles(facility, db, tmp_path, fmt):
    res = _export(db, fmt, tmp_path / "out", project=facility.projects["relion31"],
                  images="none")
    labels = ex.read_labels(res.out_dir)
    assert len(labels) == len(facility.scenario.select("selected"))
    dist, idx = _distances(labels, _truth_in_export(facility, res.manifest))
    assert dist.max() < 1.0 and len(set(idx)) == len(idx)


def test_force_refuses_a_directory_that_is_not_an_export(facility, db, tmp_path):
    out = tmp_path / "home"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(ex.ExportError, match="not a cryoglean export"):
        _export(db, "star", out, project=facility.projects["relion31"], force=True)
    assert (out / "precious.txt").read_text() == "keep me"


def test_missing_micrograph_file_link_keeps_it_images_drop_it(facility, tmp_path):
    # A copy of one RELION project with one micrograph file gone (the facility fixture stays
    # untouched): the default link mode keeps its labels (no link); writing images drops it
    # and says so; --images none keeps it.
    import shutil

    from harvest.crawl import crawl

    root = tmp_path / "fac"
    root.mkdir()
    shutil.copytree(facility.root / "micrographs", root / "micrographs")
    shutil.copytree(facility.projects["relion31"], root / "relion31", symlinks=True)
    (root / "micrographs" / "mic_0002.mrc").unlink()
    crawl([root], tmp_path / "c.db", progress=False)
    res = _export(tmp_path / "c.db", "star", tmp_path / "out")
    assert res.manifest["filters"]["images"]["dropped"] == 0
    gone = {m["key"]: m for m in res.manifest["micrographs"]}["mic_0002"]
    # the file is gone, but the crawl kept its size from RELION's motion metadata
    assert gone["image"] is None and gone["size_source"] == "catalog (metadata)"
    assert [m.split(":")[1] for m in res.manifest["images"]["not_linked_missing"]] == [
        "mic_0002"]
    assert "mic_0002" in set(ex.read_labels(res.out_dir)["stem"])
    res = _export(tmp_path / "c.db", "star", tmp_path / "out2", images="mrc")
    dropped = res.manifest["filters"]["images"]["dropped_micrographs"]
    assert [d["micrograph"].split(":")[1] for d in dropped] == ["mic_0002"]
    assert dropped[0]["reason"] == "image file missing or unreadable"
    res = _export(tmp_path / "c.db", "star", tmp_path / "out3", images="none")
    assert "mic_0002" in {m["key"] for m in res.manifest["micrographs"]}


def test_never_writes_into_a_project(facility, db):
    p = facility.projects["relion40"]
    with pytest.raises(ex.ExportError, match="never writes into a facility project"):
        _export(db, "star", p / "exports" / "x", project=p, images="none")
    assert not (p / "exports").exists()


def test_job_and_class_selection(facility, db, tmp_path):
    # CryoSPARC J10 (heterogeneous refinement): per-class sets; --class 1 keeps class 1 only
    res = _export(db, "star", tmp_path / "out", project=facility.projects["cryosparc"],
                  jobs=("J10",), classes=(1,), images="none")
    assert res.manifest["selection"]["jobs"] == ["J10"]
    labels = ex.read_labels(res.out_dir)
    expected = facility.scenario.select("class3d_1")
    assert len(labels) == len(expected)
    truth = expected.assign(stem=expected["micrograph"])[["stem", "x", "y"]]
    assert _distances(labels, truth.reset_index(drop=True))[0].max() < 0.02
