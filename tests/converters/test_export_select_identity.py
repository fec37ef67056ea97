"""The numpy selection (integer micrograph codes, grid-hashed de-duplication) gives the same
labels as the pandas + KD-tree selection it replaced.

Two references:

* ``_ref_*`` below: the previous ``deduplicate`` / ``drop_near`` (KD-tree + greedy rounds over
  pandas frames), kept verbatim here, compared with the new functions on generated picks with
  duplicates across sets, ties at every level of the priority (stage, score, set, row), points
  exactly one radius apart (not duplicates) or just inside, NaN scores, per-micrograph radii
  (0 and NaN among them) and 3D micrographs beside 2D ones;
* ``GOLDEN``: digests of whole selections (micrograph table, positives, negatives, record) from
  a generated catalog, computed with the code on main before the change
  (``PYTHONPATH=<main checkout> python tests/converters/test_export_select_identity.py``
  prints them).
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harvest.conventions import STAGE_RANK

# -------------------------------------------------------------------------------------------
# The previous implementation (converters/select.py before the numpy rewrite), verbatim
# -------------------------------------------------------------------------------------------


def _ref_deduplicate(picks, radius, mic_col="mic"):
    from scipy.spatial import cKDTree

    keep = pd.Series(True, index=picks.index)
    if len(picks) < 2:
        return keep
    order = _ref_priority_order(picks)
    (pts, valid), = _ref_unit_points([order], radius, mic_col)
    idx = np.flatnonzero(valid)
    if len(idx) < 2:
        return keep
    pairs = cKDTree(pts[idx]).query_pairs(1.0 - 1e-9, output_type="ndarray")
    if len(pairs) == 0:
        return keep
    hi, lo = idx[pairs.min(axis=1)], idx[pairs.max(axis=1)]
    state = _ref_greedy(len(order), hi, lo)
    keep.loc[order.index[state < 0]] = False
    return keep


def _ref_greedy(n, hi, lo):
    state = np.zeros(n, dtype=np.int8)
    state[np.setdiff1d(np.arange(n), lo)] = 1
    while True:
        undecided = state == 0
        if not undecided.any():
            return state
        blocked = np.zeros(n, dtype=bool)
        blocked[lo[state[hi] >= 0]] = True
        state[undecided & ~blocked] = 1
        suppressed = np.zeros(n, dtype=bool)
        suppressed[lo[state[hi] == 1]] = True
        state[(state == 0) & suppressed] = -1


def _ref_unit_points(frames, radius, mic_col):
    mics = pd.Index(pd.unique(pd.concat([f[mic_col] for f in frames], ignore_index=True)))
    z_all = pd.concat(
        [pd.Series(np.isfinite(pd.to_numeric(f["z"], errors="coerce").to_numpy(float))
                   if "z" in f.columns else np.zeros(len(f), bool),
                   index=f[mic_col].to_numpy()) for f in frames]
    )
    use_z = z_all.groupby(level=0).all() if len(z_all) else pd.Series(dtype=bool)
    out = []
    for f in frames:
        code = mics.get_indexer(f[mic_col]).astype(np.float64)
        if isinstance(radius, pd.Series):
            r = f[mic_col].map(radius).to_numpy(np.float64)
        else:
            r = np.full(len(f), float(radius))
        valid = np.isfinite(r) & (r > 0)
        r = np.where(valid, r, 1.0)
        z = (pd.to_numeric(f["z"], errors="coerce").to_numpy(float)
             if "z" in f.columns else np.zeros(len(f)))
        z = np.where(f[mic_col].map(use_z).fillna(False).to_numpy(bool), z, 0.0)
        pts = np.column_stack([
            f["x"].to_numpy(np.float64) / r, f["y"].to_numpy(np.float64) / r,
            np.nan_to_num(z) / r, code * 3.0,
        ])
        out.append((pts, valid))
    return out


def _ref_priority_order(picks):
    tmp = picks.copy()
    tmp["_rank"] = tmp["stage"].map(STAGE_RANK).fillna(-1) if "stage" in tmp else 0
    tmp["_score"] = tmp["score"].fillna(-np.inf) if "score" in tmp else 0.0
    tmp["_set"] = tmp["set_id"] if "set_id" in tmp else 0
    tmp["_row"] = np.arange(len(tmp))
    return tmp.sort_values(
        ["_rank", "_score", "_set", "_row"], ascending=[False, False, True, True], kind="stable"
    )


def _ref_drop_near(candidates, others, radius, mic_col="mic"):
    from scipy.spatial import cKDTree

    keep = pd.Series(True, index=candidates.index)
    if candidates.empty or others.empty:
        return keep
    (pc, vc), (po, vo) = _ref_unit_points([candidates, others], radius, mic_col)
    if not vo.any() or not vc.any():
        return keep
    dist, _ = cKDTree(po[vo]).query(pc[vc], k=1, distance_upper_bound=1.0)
    near = np.zeros(len(candidates), dtype=bool)
    near[np.flatnonzero(vc)[dist < 1.0 - 1e-9]] = True
    keep[near] = False
    return keep


# -------------------------------------------------------------------------------------------
# Generated picks: duplicates across sets, ties, boundary distances
# -------------------------------------------------------------------------------------------


def _picks(seed: int, n_true: int = 150, three_d: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    mics = np.array(["1:a", "1:b", "2:a", "2:c"])
    # integer milli-pixel grid as in the catalog; some true positions exactly 10 px apart
    tx = np.round(rng.uniform(0, 200, n_true), 3)
    ty = np.round(rng.uniform(0, 200, n_true), 3)
    tx[: n_true // 10] = np.arange(n_true // 10) * 10.0
    ty[: n_true // 10] = 50.0
    tm = rng.integers(0, len(mics), n_true)
    rows = []
    for set_id, stage in ((1, "refined"), (2, "refined"), (3, "classified3d"), (4, "picked"),
                          (5, "refined")):
        take = rng.uniform(size=n_true) < 0.7
        jitter = rng.choice([0.0, 0.0005, 1.0, 3.0], size=(n_true, 2))
        sign = rng.choice([-1.0, 1.0], size=(n_true, 2))
        score = np.round(rng.uniform(0, 1, n_true), 1)  # many equal scores
        score[rng.uniform(size=n_true) < 0.15] = np.nan
        rows.append(pd.DataFrame({
            "mic": mics[tm[take]], "x": tx[take] + (sign * jitter)[take, 0],
            "y": ty[take] + (sign * jitter)[take, 1], "stage": stage, "set_id": set_id,
            "score": score[take],
        }))
    df = pd.concat(rows, ignore_index=True)
    # exact duplicates (same position, stage, score) across sets 1 and 2
    dup = df[df["set_id"] == 1].head(20).assign(set_id=2)
    df = pd.concat([df, dup, dup], ignore_index=True)
    df = df.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    if three_d:
        z = np.round(rng.uniform(0, 30, len(df)), 3)
        z[df["mic"].to_numpy() == "2:c"] = np.nan  # a 2D micrograph beside 3D ones
        df["z"] = z
    return df


RADII = [
    10.0,
    pd.Series({"1:a": 10.0, "1:b": 3.0, "2:a": 0.0, "2:c": 25.0}),
    pd.Series({"1:a": 10.0, "1:b": np.nan, "2:a": 7.5}),  # 2:c missing: not de-duplicated
]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("three_d", [False, True])
@pytest.mark.parametrize("radius", range(len(RADII)))
def test_deduplicate_same_as_before(seed, three_d, radius):
    from converters import select as sel

    df = _picks(seed, three_d=three_d)
    r = RADII[radius]
    want = _ref_deduplicate(df, r)
    got = sel.deduplicate(df, r)
    assert got.index.equals(want.index)
    assert got.tolist() == want.tolist()
    assert 0 < (~want).sum() < len(df)  # the case drops some and keeps some
    # the same with a Categorical micrograph column and without the optional columns
    cat = df.assign(mic=df["mic"].astype("category"))
    assert sel.deduplicate(cat, r).tolist() == want.tolist()
    bare = df[["mic", "x", "y"]]
    assert sel.deduplicate(bare, r).tolist() == _ref_deduplicate(bare, r).tolist()


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("three_d", [False, True])
def test_drop_near_same_as_before(seed, three_d):
    from converters import select as sel

    pos = _picks(seed, three_d=three_d)
    neg = _picks(seed + 100, three_d=three_d)
    for r in RADII:
        want = _ref_drop_near(neg, pos, r)
        assert sel.drop_near(neg, pos, r).tolist() == want.tolist()
    assert 0 < (~_ref_drop_near(neg, pos, 10.0)).sum() < len(neg)


def test_boundary_one_radius_apart_is_not_a_duplicate():
    from converters import select as sel

    df = pd.DataFrame({"mic": ["m"] * 4, "x": [0.0, 10.0, 20.0, 29.999],
                       "y": [0.0, 0.0, 0.0, 0.0], "stage": "refined", "set_id": 1,
                       "score": [0.4, 0.3, 0.2, 0.1]})
    # 0-10 and 10-20 exactly one radius apart: kept; 20-29.999 closer: dropped
    assert sel.deduplicate(df, 10.0).tolist() == [True, True, True, False]
    assert _ref_deduplicate(df, 10.0).tolist() == [True, True, True, False]


def test_long_chain_of_duplicates():
    """A line of picks each within the radius of the next, priorities falling along the line:
    the greedy keeps every other one (many rounds of the vectorised greedy)."""
    from converters import select as sel

    n = 400
    df = pd.DataFrame({"mic": "m", "x": np.arange(n) * 6.0, "y": 0.0, "stage": "refined",
                       "set_id": 1, "score": np.linspace(1, 0, n)})
    got = sel.deduplicate(df, 10.0)
    assert got.tolist() == [i % 2 == 0 for i in range(n)]
    assert got.tolist() == _ref_deduplicate(df, 10.0).tolist()


# -------------------------------------------------------------------------------------------
# Whole selections from a generated catalog, against digests from the previous code
# -------------------------------------------------------------------------------------------


def _mic(path: str, key: str, nx=1000, ny=800, psize=1.0, ctf=4.0, motion=10.0):
    from harvest.records import MicrographRecord

    return MicrographRecord(path=path, abs_path=f"/gone/{path}", key=key, nx=nx, ny=ny,
                            pixel_size=psize, ctf_max_res=ctf, total_motion=motion,
                            size_source="metadata")


def build_catalog(db: Path, roots: Path) -> None:
    """Two projects; project 1 has picked, selected2d, rejected2d, per-class classified3d and
    three refined sets (two of them the same particles again: duplicates and exact ties), one
    micrograph also as a 2× binned copy with picks on it, one dropped by CTF and one without
    CTF; project 2 reuses project 1's keys (stems collide) and has no box size."""
    from harvest.catalog import Catalog
    from harvest.records import JobRecord, JobScan, ParticleSetRecord, ProjectScan

    rng = np.random.default_rng(7)
    keys = [f"m{i}" for i in range(8)]
    ctf = [4.0, 4.0, 12.0, float("nan"), 4.0, 4.0, 4.0, 4.0]
    mics = [_mic(f"J1/{k}.mrc", k, ctf=c) for k, c in zip(keys, ctf)]
    binned = _mic("J9/m0_bin2.mrc", "m0", nx=500, ny=400, psize=2.0)
    # true positions on a 25 px grid (diameter 60 px, separation 30 px): some 30 px apart
    gx, gy = np.meshgrid(np.arange(40, 960, 25.0), np.arange(40, 760, 25.0))
    grid = np.column_stack([gx.ravel(), gy.ravel()])

    def frame(which, sel, jitter, score, mic_paths=None, scale=1.0):
        n = len(sel)
        xy = grid[sel] + jitter
        return pd.DataFrame({
            "micrograph": mic_paths if mic_paths is not None else [mics[w].path for w in which],
            "x": xy[:, 0] * scale, "y": xy[:, 1] * scale, "raw_x": xy[:, 0] * scale,
            "raw_y": xy[:, 1] * scale, "score": score, "class_id": np.full(n, -1),
            "uid": np.arange(n, dtype=np.int64)})

    n = 900
    which = rng.integers(0, len(keys), n)
    which.sort()
    sel = rng.integers(0, len(grid), n)
    picked = frame(which, sel, rng.normal(0, 2, (n, 2)), rng.normal(0, 1, n))
    s2 = rng.uniform(size=n) < 0.5
    sel2d = frame(which[s2], sel[s2], rng.normal(0, 1, (s2.sum(), 2)), np.full(s2.sum(), np.nan))
    rej = frame(which[~s2], sel[~s2], rng.normal(0, 1, ((~s2).sum(), 2)),
                np.full((~s2).sum(), np.nan))
    r = rng.uniform(size=n) < 0.35
    sc = np.round(rng.uniform(0, 1, r.sum()), 1)
    j20 = frame(which[r], sel[r], np.round(rng.normal(0, 1, (r.sum(), 2)), 3), sc)
    j21 = j20.copy()  # the same particles again: exact ties; lower set id wins
    j21.loc[::3, "x"] += 0.5
    j21.loc[1::3, "score"] = np.round(rng.uniform(0, 1, len(j21.loc[1::3])), 1)
    cls3d = [frame(which[r & (sel % 2 == c)], sel[r & (sel % 2 == c)],
                   rng.normal(0, 1, ((r & (sel % 2 == c)).sum(), 2)),
                   rng.uniform(0, 1, (r & (sel % 2 == c)).sum())) for c in (0, 1)]
    on0 = which == 0
    j22 = frame(which[on0], sel[on0], rng.normal(0, 1, (on0.sum(), 2)),
                rng.uniform(0, 1, on0.sum()), mic_paths=[binned.path] * int(on0.sum()),
                scale=0.5)
    with Catalog(db) as cat:
        for pid in (1, 2):
            root = roots / f"P{pid}"
            root.mkdir(parents=True, exist_ok=True)
            scan = ProjectScan(root=str(root), software="cryosparc" if pid == 1 else "relion",
                               version="4", title=f"P{pid}")
            box = 100 if pid == 1 else None
            sets = {
                "J1": [("picked", "picked", picked, None)],
                "J2": [("selected", "selected2d", sel2d, None),
                       ("rejected", "rejected2d", rej, None)],
                "J3": [(f"class_{c}", "classified3d", f.assign(class_id=c), c)
                       for c, f in enumerate(cls3d)],
                "J20": [("refined", "refined", j20, None)],
                "J21": [("refined", "refined", j21, None)],
                "J22": [("refined", "refined", j22, None)],
            }
            if pid == 2:
                sets = {k: v for k, v in sets.items() if k in ("J1", "J2", "J20")}
            with cat.write_project(scan) as w:
                for key, outs in sets.items():
                    job = JobScan(key=key, raw_type="x", kind="other", status="completed")
                    rec = JobRecord(
                        key=key, raw_type="x", kind="other", status="completed",
                        micrographs=mics + [binned] if key == "J1" else [],
                        particle_sets=[ParticleSetRecord(
                            name=name, stage=stage, particles=df, source_file=f"{key}.cs",
                            class_id=c, box_size=box, image_pixel_size=1.0)
                            for name, stage, df, c in outs])
                    w.put_job(job, rec)


CASES = {
    "default": {},
    "negatives": {"negatives": True},
    "refined_min_score": {"stage": "refined", "min_score": 0.3},
    "classes": {"classes": (1,), "negatives": True},
    "flip_sep": {"flip_y": True, "min_separation": 30.0, "projects": ("1",)},
    "jobs": {"jobs": ("J21", "J20"), "diameter": 45.0},
    "no_filters": {"max_ctf_res": None, "max_motion": None, "stage": "selected2d",
                   "negatives": True},
    "selected2d_p2": {"projects": ("2",), "stage": "selected2d", "negatives": True,
                      "micrograph_size": (1000, 800)},
}


def _canon(v):
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return None if math.isnan(v) else repr(v)
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    return str(v)


def _frame_digest(df: pd.DataFrame, cols) -> str:
    h = hashlib.sha256()
    h.update(repr(list(cols)).encode())
    for c in cols:
        h.update(json.dumps([_canon(v) for v in df[c].tolist()]).encode())
    return h.hexdigest()[:16]


def digests(sel, tmp: Path) -> dict:
    pick_cols = ["mic", "micrograph_id", "set_id", "stage", "x", "y", "z", "score", "class_id",
                 "diameter"]
    mcols = [c for c in sel.micrographs.columns]
    rec = json.dumps(sel.record, sort_keys=True, default=str).replace(str(tmp), "<tmp>")
    return {
        "n": [len(sel.micrographs), len(sel.positives), len(sel.negatives)],
        "micrographs": _frame_digest(sel.micrographs, mcols),
        "micrograph_columns": hashlib.sha256(repr(mcols).encode()).hexdigest()[:8],
        "positives": _frame_digest(sel.positives, pick_cols),
        "negatives": _frame_digest(sel.negatives, pick_cols) if len(sel.negatives) else "",
        "record": hashlib.sha256(rec.encode()).hexdigest()[:16],
    }


def all_digests(tmp: Path) -> dict:
    from converters.select import SelectionOptions, select_labels
    from harvest.catalog import Catalog

    db = tmp / "cat.db"
    build_catalog(db, tmp / "roots")
    out = {}
    with Catalog(db, readonly=True) as cat:
        for name, kw in CASES.items():
            sel = select_labels(cat, SelectionOptions(**kw))
            out[name] = digests(sel, tmp)
    return out


# computed with main at f87895e (the pandas + KD-tree selection), see the module docstring
GOLDEN: dict = {
    "classes": {
        "n": [7, 131, 0],
        "micrographs": "dd68703a4c00f9e2",
        "micrograph_columns": "2d4f85c5",
        "positives": "f80384773526c687",
        "negatives": "",
        "record": "f34b4c48e4194292",
    },
    "default": {
        "n": [14, 574, 0],
        "micrographs": "b4b291c6dd53764a",
        "micrograph_columns": "2d4f85c5",
        "positives": "8daab70138f1fc94",
        "negatives": "",
        "record": "9afa1a754f3ced36",
    },
    "flip_sep": {
        "n": [7, 304, 0],
        "micrographs": "8ebacc80b29791e1",
        "micrograph_columns": "2d4f85c5",
        "positives": "6f18310179bc828d",
        "negatives": "",
        "record": "ce49f8d10ec9ce02",
    },
    "jobs": {
        "n": [14, 534, 0],
        "micrographs": "a94c3927d79be89a",
        "micrograph_columns": "2d4f85c5",
        "positives": "c7286be002ca001f",
        "negatives": "",
        "record": "5450055a189ecf30",
    },
    "negatives": {
        "n": [14, 574, 504],
        "micrographs": "d799213b8bf79330",
        "micrograph_columns": "2d4f85c5",
        "positives": "8daab70138f1fc94",
        "negatives": "44d10bdfc057d3ba",
        "record": "6898ab695c643c1a",
    },
    "no_filters": {
        "n": [16, 957, 671],
        "micrographs": "a5d3739b60dd7c69",
        "micrograph_columns": "2d4f85c5",
        "positives": "de0b077260568eec",
        "negatives": "a43c72b127c87ef8",
        "record": "2db58c86794ef81c",
    },
    "refined_min_score": {
        "n": [14, 460, 0],
        "micrographs": "0d31aebab404443b",
        "micrograph_columns": "2d4f85c5",
        "positives": "de77b0bc7d7d6b97",
        "negatives": "",
        "record": "4cf54d5831836476",
    },
    "selected2d_p2": {
        "n": [7, 461, 344],
        "micrographs": "ac4f36ef1ee3bf2f",
        "micrograph_columns": "2d4f85c5",
        "positives": "7a120bdd6cc5b4ec",
        "negatives": "f700c88b6a6ea0d6",
        "record": "ef187d5ff7d0f693",
    },
}


def test_selections_same_as_before(tmp_path):
    got = all_digests(tmp_path)
    for name in CASES:
        assert got[name] == GOLDEN[name], name


def test_the_generated_catalog_exercises_the_rules(tmp_path):
    from converters.select import SelectionOptions, select_labels
    from harvest.catalog import Catalog

    db = tmp_path / "cat.db"
    build_catalog(db, tmp_path / "roots")
    with Catalog(db, readonly=True) as cat:
        sel = select_labels(cat, SelectionOptions(negatives=True))
    rec = sel.record
    assert rec["dropped_as_duplicates"] > 100  # J20 and J21 are the same particles
    assert rec["negatives_dropped_near_positives"] > 0
    assert rec["filters"]["max_ctf_res"]["dropped"] == 2  # m2 of both projects
    assert rec["filters"]["max_ctf_res"]["unknown_passed"] == 2
    assert set(sel.positives["set_id"]) >= {6, 7, 8}  # both refinements and the binned copy
    assert rec["not_deduplicated_micrographs"]  # project 2: no box size, no diameter


def test_lean_read_equals_the_full_read(tmp_path):
    """``Catalog.particle_centres`` gives ``Catalog.particles``' columns exactly: 2D and 3D
    sets, NaN scores, classes, and a centre beyond the packed range (the full-read fallback)."""
    from harvest.catalog import Catalog
    from harvest.records import JobRecord, JobScan, ParticleSetRecord, ProjectScan

    rng = np.random.default_rng(3)
    n = 500
    mics = [_mic(f"m{i}.mrc", f"m{i}") for i in range(5)]
    base = pd.DataFrame({
        "micrograph": [mics[i].path for i in np.sort(rng.integers(0, 5, n))],
        "raw_x": rng.uniform(0, 1000, n), "raw_y": rng.uniform(0, 800, n),
        "score": np.where(rng.uniform(size=n) < 0.2, np.nan, rng.normal(0, 5, n)),
        "class_id": rng.integers(-1, 40, n), "uid": rng.integers(-2**62, 2**62, n),
    })
    flat = base.assign(x=base["raw_x"] + rng.normal(0, 3, n), y=base["raw_y"] - 2.5)
    tomo = flat.assign(raw_z=rng.uniform(0, 200, n), z=lambda d: d["raw_z"] + 1.25)
    far = flat.copy()
    far.loc[0, ["raw_x", "x"]] = [2.0e6, 2.0e6 + 2.0e5]  # centre beyond ±2^31 milli-px
    # ... on a micrograph of unknown size: only there is such a centre stored (harvest.validate
    # leaves out positions off a micrograph of known size)
    mics.append(_mic("unsized.mrc", "unsized", nx=None, ny=None))
    far.loc[0, "micrograph"] = mics[-1].path
    # (score, class) travel packed in one value: the edges of that packing read lean, beyond
    # them (a stored score ≥ 2^46, a class > 65534) the set falls back to the full read
    edge = flat.assign(class_id=np.where(rng.uniform(size=n) < 0.5, 65534, -1),
                       score=rng.choice([-(2**46 - 64) / 1e4, (2**46 - 64) / 1e4, -1e-4, 0.0,
                                         np.nan], n))
    wide_score = flat.assign(score=np.where(np.arange(n) == 7, 1e11, flat["score"]))
    wide_class = flat.assign(class_id=np.where(np.arange(n) == 9, 70000, flat["class_id"]))
    db = tmp_path / "c.db"
    with Catalog(db) as cat:
        scan = ProjectScan(root=str(tmp_path), software="cryosparc", version="4")
        with cat.write_project(scan) as w:
            rec = JobRecord(key="J1", raw_type="x", kind="other", status="completed",
                            micrographs=mics, particle_sets=[
                                ParticleSetRecord("flat", "refined", flat, "a.cs"),
                                ParticleSetRecord("tomo", "picked", tomo, "b.cs", is_3d=True),
                                ParticleSetRecord("far", "picked", far, "c.cs"),
                                ParticleSetRecord("edge", "picked", edge, "d.cs"),
                                ParticleSetRecord("wide score", "picked", wide_score, "e.cs"),
                                ParticleSetRecord("wide class", "picked", wide_class, "f.cs")])
            w.put_job(JobScan(key="J1", raw_type="x", kind="other", status="completed"), rec)
    with Catalog(db, readonly=True) as cat:
        ids = list(cat.particle_sets()["id"])
        full, lean = cat.particles(ids), cat.particle_centres(ids)
        assert list(lean.columns) == ["set_id", "micrograph_id", "x", "y", "z", "score",
                                      "class_id"]
        for col in lean.columns:
            assert lean[col].dtype == full[col].dtype, col
            np.testing.assert_array_equal(lean[col].to_numpy(), full[col].to_numpy(), col)
        assert np.isfinite(lean["z"]).sum() == n and lean["score"].isna().any()
        assert lean["x"].max() > 2.1e6
        assert lean["score"].max() == 1e11 and lean["class_id"].max() == 70000
        assert {65534, -1} <= set(lean["class_id"]) and lean["score"].min() < -7e9
        assert cat.particle_centres([]).empty


if __name__ == "__main__":  # print the golden digests of the code on PYTHONPATH
    import tempfile

    with tempfile.TemporaryDirectory() as t:
        json.dump(all_digests(Path(t)), sys.stdout, indent=1, sort_keys=True)
        print()
