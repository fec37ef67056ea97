"""The contract every registry format keeps, parametrised over ``registry.names()``: a new format
(one module plus one registry line) is covered here without edits.

- round trip: ``write`` then ``read`` gives the same picks within the format's precision;
- layout: an export from a small generated catalog puts images, labels, negatives and side files
  where the format's declared layout says, and the side files are valid;
- read back: ``converters.dataset.open_export(out).labels()`` returns the exported labels (side
  information such as YOLO's image sizes comes from the manifest) on the simulated particles;
- import: ``converters.importer`` reads what the export wrote back into a catalog set;
- no format names where the spec should decide (export, import, demo, trainers).
"""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.spatial import cKDTree

from converters import registry
from converters.layout import SPLITS, side_information

REPO = Path(__file__).resolve().parents[2]
WRITABLE = registry.names(capability="write")
ROUND_TRIP = [n for n in WRITABLE if "read" in registry.get(n).capabilities]


# ---------------------------------------------------------------------------------------------
# declarations
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", registry.names())
def test_layout_declaration_resolves(fmt):
    from converters.images import IMAGE_MODES

    spec = registry.get(fmt)
    lay = spec.layout
    for split in SPLITS:  # every destination is a concrete relative path per split
        for p in (lay.image_dir(split), lay.label_path(split), lay.label_path(split, True)):
            assert not p.is_absolute() and "{" not in str(p), p
    assert lay.label_path("train") != lay.label_path("val")
    if lay.negative_class is None:
        assert lay.label_path("train", True) != lay.label_path("train")
    assert lay.image_defaults.get("images", "link") in IMAGE_MODES
    for lst in lay.image_lists:
        assert callable(spec.function(lst.writer))
        assert lay.path(lst.path, "train") != lay.path(lst.path, "val")
    if lay.side_files:
        assert callable(spec.function(lay.side_files))


# ---------------------------------------------------------------------------------------------
# round trip (no catalog)
# ---------------------------------------------------------------------------------------------


def _picks(spec) -> pd.DataFrame:
    """Picks on two micrographs, 10+ px apart: integer positions on the first, sub-pixel ones
    on the second (integer formats round those), a diameter and a score; z for 3D-only
    formats."""
    rows = []
    for m, frac in (("mic_a", 0.0), ("mic_b", 0.37)):
        for i in range(4):
            rows.append({"micrograph": m, "x": 20.0 + 30 * i + frac, "y": 15.0 + 25 * i + frac,
                         "diameter": 24.0, "score": round(0.2 + 0.15 * i, 3)})
    picks = pd.DataFrame(rows)
    if spec.dims == (3,):
        picks["z"] = [3.0 + i for i in range(len(picks))]
    return picks


def _sizes() -> pd.DataFrame:
    """The two micrographs as side information sees them (px, Å/px)."""
    return pd.DataFrame({"stem": ["mic_a", "mic_b"], "out_nx": [200, 200], "out_ny": [150, 150],
                         "pixel_size": [1.5, 1.5], "scale_x": [1.0, 1.0]})


@pytest.mark.parametrize("fmt", ROUND_TRIP)
def test_round_trip(tmp_path, fmt):
    spec = registry.get(fmt)
    picks = _picks(spec)
    wopts = {n: side_information(n, _sizes()) for n in spec.write_needs}
    ropts = {n: side_information(n, _sizes()) for n in spec.read_needs}
    files = registry.write_picks(picks, tmp_path / "labels", fmt, **wopts)
    assert files and all(Path(f).is_file() for f in files)
    back = registry.read_picks(tmp_path / "labels", fmt, **ropts)
    back = back.assign(micrograph=[Path(str(m)).stem for m in back["micrograph"]])
    assert len(back) == len(picks)
    key = ["micrograph", "x"]  # picks 30 px apart: rounding keeps the order
    got = back.sort_values(key).reset_index(drop=True)
    want = picks.sort_values(key).reset_index(drop=True)
    assert got["micrograph"].tolist() == want["micrograph"].tolist()
    exact = want["micrograph"] == "mic_a"  # integer positions survive every format
    axes = ["x", "y"] + (["z"] if "z" in want.columns else [])
    err = np.abs(got[axes].to_numpy(float) - want[axes].to_numpy(float))
    assert err[exact.to_numpy()].max() < 1e-3, fmt
    assert err.max() <= 0.5 + 1e-6, fmt  # integer formats round sub-pixel positions
    if "score" in back.columns and back["score"].notna().all():
        assert np.allclose(got["score"], want["score"], atol=1e-6)
    if "diameter" in back.columns and back["diameter"].notna().all():
        assert np.allclose(got["diameter"], want["diameter"], atol=0.5)


# ---------------------------------------------------------------------------------------------
# exports from a small generated catalog
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    """A RELION 4 project over 5 small simulated micrographs, crawled (read-only here)."""
    from harvest.crawl import crawl
    from harvest.synth import FacilityConfig, make_facility

    root = tmp_path_factory.mktemp("contract")
    fac = make_facility(root / "fac", FacilityConfig(
        n_micrographs=5, nx=256, ny=192, particles_per_micrograph=10, junk_per_micrograph=4,
        versions=("relion40",)))
    db = root / "catalog.db"
    assert crawl([fac.root], db, progress=False).problems == 0
    return fac, db


@pytest.fixture(scope="module")
def exported(catalog, tmp_path_factory):
    """``exported(fmt)``: the format's export with negatives and its default images (cached)."""
    from converters.export import ExportOptions, export
    from converters.select import SelectionOptions

    cache: dict = {}
    root = tmp_path_factory.mktemp("exports")

    def get(fmt):
        if fmt not in cache:
            opts = ExportOptions(selection=SelectionOptions(negatives=True), val_fraction=0.4)
            cache[fmt] = export(catalog[1], fmt, root / fmt, opts)
        return cache[fmt]

    return get


def _split_mics(man, split):
    return [m for m in man["micrographs"] if m["split"] == split]


@pytest.mark.parametrize("fmt", WRITABLE)
def test_layout(exported, fmt):
    res = exported(fmt)
    out, man = res.out_dir, res.manifest
    spec = registry.get(fmt)
    lay = spec.layout
    assert {m["split"] for m in man["micrographs"]} == set(SPLITS)
    mode = man["images"]["mode"]
    assert mode == lay.image_defaults.get("images", "link")
    for m in man["micrographs"]:  # images in the split's image folder
        assert m["image"] is not None
        img = Path(m["image"])
        assert img.parent == lay.image_dir(m["split"]) and img.stem == m["stem"]
        assert (out / img).resolve().is_file()
    for split in SPLITS:
        stems = {m["stem"] for m in _split_mics(man, split)}
        dest = out / lay.label_path(split)
        assert dest.is_file() if spec.writes_table else dest.is_dir(), dest
        if not spec.writes_table and not spec.recursive:  # one file per micrograph
            assert {p.stem for p in dest.iterdir()} == stems
        neg = out / lay.label_path(split, negative=True)
        if res.counts[split]["negatives"]:
            assert neg.exists(), neg
    assert res.counts["train"]["negatives"] > 0  # the case covers negatives
    assert man["negatives"]["written_as"] == lay.negatives_place()
    # side files: declared image lists, listed in the manifest, valid
    side = [out / p for p in man["side_files"]]
    assert all(p.is_file() for p in side)
    for lst in lay.image_lists:
        for split in SPLITS:
            path = out / lay.path(lst.path, split)
            assert path in side
            text = path.read_text()
            for m in _split_mics(man, split):
                assert str(out / m["image"]) in text, (path, m["stem"])
    for p in side:
        _check_side_file(p, out)


def _check_side_file(path: Path, out: Path) -> None:
    """A yaml/json side file parses, and every path in it under the export exists."""
    if path.suffix in (".yaml", ".yml"):
        doc = yaml.safe_load(path.read_text())
    elif path.suffix == ".json":
        doc = json.loads(path.read_text())
    else:
        return
    assert isinstance(doc, dict) and doc

    def strings(v):
        if isinstance(v, dict):
            for x in v.values():
                yield from strings(x)
        elif isinstance(v, list):
            for x in v:
                yield from strings(x)
        elif isinstance(v, str):
            yield v

    inside = [s for s in strings(doc) if s.startswith(str(out))]
    assert inside, f"{path} names nothing in the export"
    assert all(Path(s).exists() for s in inside), (path, inside)
    if isinstance(doc.get("names"), list):  # a dataset yaml: one name per class
        assert doc.get("nc") == len(doc["names"])


def _selected(db) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The positives and negatives the export selected: (stem, x, y) in px of the micrographs
    (the exports here are unscaled)."""
    from converters.select import SelectionOptions, select_labels
    from harvest.catalog import Catalog

    with Catalog(db, readonly=True) as cat:
        sel = select_labels(cat, SelectionOptions(negatives=True))
    stems = sel.micrographs.set_index("mic")["stem"]
    return tuple(pd.DataFrame({"stem": p["mic"].map(stems).to_numpy(), "x": p["x"].to_numpy(float),
                               "y": p["y"].to_numpy(float)})
                 for p in (sel.positives, sel.negatives))


def _nearest(labels: pd.DataFrame, ref: pd.DataFrame) -> np.ndarray:
    """Distance of each label to the nearest reference point of its micrograph."""
    dist = np.full(len(labels), np.inf)
    for stem, grp in labels.groupby("stem"):
        r = ref[ref["stem"] == stem]
        if len(r):
            d, _ = cKDTree(r[["x", "y"]].to_numpy(float)).query(grp[["x", "y"]].to_numpy(float))
            dist[labels.index.get_indexer(grp.index)] = d
    return dist


@pytest.mark.parametrize("fmt", ROUND_TRIP)
def test_labels_read_back(catalog, exported, fmt):
    from converters.dataset import open_export

    res = exported(fmt)
    ds = open_export(res.out_dir)
    assert ds.format == fmt
    labels = ds.labels()
    assert len(labels) == sum(c["positives"] for c in res.counts.values()) > 0
    for split in SPLITS:
        part = ds.labels(split)
        assert len(part) == res.counts[split]["positives"]
        assert set(part["stem"]) <= set(ds.micrographs(split)["stem"])
    neg = ds.labels(negatives=True)
    assert len(neg) == sum(c["negatives"] for c in res.counts.values()) > 0
    # on the selected positions (integer formats: within rounding, 0.5 px per axis)
    assert all(m["scale_x"] == 1 and m["scale_y"] == 1 for m in res.manifest["micrographs"])
    pos, negs = _selected(catalog[1])
    assert _nearest(labels.reset_index(drop=True), pos).max() < 0.71
    assert _nearest(neg.reset_index(drop=True), negs).max() < 0.71


@pytest.mark.parametrize("fmt", ROUND_TRIP)
def test_import_reads_the_export(catalog, exported, tmp_path, fmt):
    from converters.dataset import open_export
    from converters.importer import import_picks
    from harvest.catalog import Catalog

    fac, db = catalog
    work = tmp_path / "catalog.db"
    shutil.copy(db, work)
    res = exported(fmt)
    assert all(m["scale_x"] == 1 and m["scale_y"] == 1 for m in res.manifest["micrographs"])
    ds = open_export(res.out_dir)
    lay = registry.get(fmt).layout
    project = str(fac.projects["relion40"])
    for split in SPLITS:
        written = ds.labels(split)
        if lay.negative_class is not None:  # the negatives share the label files
            written = pd.concat([written, ds.labels(split, negatives=True)], ignore_index=True)
        r = import_picks(work, fmt, res.out_dir / lay.label_path(split), project, f"back-{split}")
        assert r.particles == len(written)
        with Catalog(work, readonly=True) as cat:
            parts = cat.particles([r.set_id])
            mics = cat.micrographs(ids=parts["micrograph_id"].unique())
        key_to_stem = {m["key"]: m["stem"] for m in res.manifest["micrographs"]}
        keys = parts["micrograph_id"].map(mics.set_index("id")["key"])
        got = pd.DataFrame({"stem": keys.map(key_to_stem), "x": parts["x"], "y": parts["y"]})
        assert _nearest(got, written[["stem", "x", "y"]]).max() < 1e-3


# ---------------------------------------------------------------------------------------------
# no format names outside the format modules
# ---------------------------------------------------------------------------------------------


def _format_names_in(path: Path, root: Path = REPO) -> list[str]:
    """Format names as string literals, and imports of format modules, in one Python file."""
    names = set(registry.names())
    hits = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        found = []
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found = [node.value]
        elif isinstance(node, ast.ImportFrom) and node.module == "converters.formats":
            found = [a.name for a in node.names]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [
                node.module or ""]
            found = [m.split(".")[2] for m in mods if m.startswith("converters.formats.")]
        hits += [f"{path.relative_to(root)}:{node.lineno}: {n!r}" for n in found if n in names]
    return sorted(hits, key=lambda h: int(h.split(":")[1]))


def test_format_name_check_finds_names(tmp_path):
    p = tmp_path / "x.py"
    p.write_text("from converters.formats import thi\nimport converters.formats.star\n"
                 "from converters.formats.cryolo import write_config\n"
                 "FMT = 'yolo'\nDOC = 'yolo labels'\nfrom converters.formats import _common\n")
    assert [h.split(": ", 1)[1] for h in _format_names_in(p, tmp_path)] == [
        "'thi'", "'star'", "'cryolo'", "'yolo'"]


@pytest.mark.parametrize("rel", ["converters/export.py", "converters/export_writer.py",
                                 "converters/importer.py"])
def test_no_format_names_in_export_and_import(rel):
    assert _format_names_in(REPO / rel) == []


def test_no_format_names_in_demo_and_trainers():
    hits = _format_names_in(REPO / "cryoglean" / "demo.py")
    for path in sorted((REPO / "trainers").rglob("*.py")):
        hits += _format_names_in(path)
    assert hits == []
