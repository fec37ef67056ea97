"""The particle codec (harvest.catalog.codec): quantised coordinates, packed pairs, score scales
and uids come back within the documented bounds, and what cannot be stored is refused."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest

from harvest.catalog import COORD_SCALE, DEFAULT_SCORE_SCALE, Catalog
from harvest.catalog.codec import (
    _COORD_LIMIT,
    _M32,
    _pack,
    _unpack,
    insert_set,
    read_set,
)
from harvest.records import ParticleSetRecord

MAX_ERR = 0.5 / COORD_SCALE + 1e-9
# largest |coordinate| in px that is stored (the codec refuses ≥ 0.999 × 2^31 milli-px)
LIMIT_PX = np.floor(_COORD_LIMIT * 0.999) / COORD_SCALE


@pytest.fixture
def cat(tmp_path):
    cat = Catalog(tmp_path / "c.db")
    cat.conn.execute("INSERT INTO projects (id, root, software, status) VALUES (1, '/p', 'x', 'ok')")
    cat.conn.execute("INSERT INTO micrographs (id, project_id, key, path) VALUES (1, 1, 'm', 'm')")
    cat.conn.execute("INSERT INTO micrographs (id, project_id, key, path) VALUES (2, 1, 'n', 'n')")
    yield cat
    cat.close()


def _round_trip(cat, df, name="s", is_3d=False):
    cat.conn.execute("BEGIN")
    try:
        res = insert_set(cat.conn, 1, None, ParticleSetRecord(name, "picked", df, "f", is_3d=is_3d),
                         {"m": 1, "n": 2}, origin="external")
        scale = cat.conn.execute("SELECT score_scale FROM particle_sets WHERE id = ?",
                                 (res.set_id,)).fetchone()[0]
        got = read_set(cat.conn, res.set_id, scale)
    finally:
        cat.conn.execute("ROLLBACK")
    return got, scale


def _frame(raw_x, raw_y, x=None, y=None, **extra):
    raw_x, raw_y = np.asarray(raw_x, float), np.asarray(raw_y, float)
    df = pd.DataFrame({"micrograph": "m", "raw_x": raw_x, "raw_y": raw_y,
                       "x": raw_x if x is None else np.asarray(x, float),
                       "y": raw_y if y is None else np.asarray(y, float)})
    for k, v in extra.items():
        df[k] = v
    return df


def test_coordinates_at_the_storable_bounds_round_trip(cat):
    """±LIMIT_PX (2.1 million px) in every field (raw, recentred, z, and a recentring shift of
    LIMIT_PX itself) comes back within 0.0005 px; so do half-unit values, where rounding is at
    its worst."""
    edge = np.array([LIMIT_PX, -LIMIT_PX, 0.0, 0.0005, -0.0005, 0.0004999, 1.0015, -1.0015,
                     4095.9995, LIMIT_PX - 0.0004, -LIMIT_PX / 2])
    centre = edge - np.sign(edge) * 3.2505
    centre[-1] = LIMIT_PX / 2  # the largest storable shift
    df = _frame(edge, edge[::-1], x=centre, y=centre[::-1], raw_z=edge, z=centre)
    got, _ = _round_trip(cat, df, is_3d=True)
    for col, want in (("raw_x", edge), ("raw_y", edge[::-1]), ("x", centre),
                      ("y", centre[::-1]), ("raw_z", edge), ("z", centre)):
        assert np.abs(got[col].to_numpy() - want).max() <= MAX_ERR, col


def test_coordinates_beyond_the_bounds_are_refused(cat):
    step = 1 / COORD_SCALE
    for raw, centre in (([LIMIT_PX + step], None), ([-LIMIT_PX - step], None),
                        ([1e7], None), ([0.0], [LIMIT_PX + step])):
        df = _frame(raw, [1.0], x=centre)
        cat.conn.execute("BEGIN")
        try:
            with pytest.raises(ValueError, match=r"particle set 's' from f: coordinates beyond "
                                                 r"±2,147,483 px cannot be stored"):
                insert_set(cat.conn, 1, None, ParticleSetRecord("s", "picked", df, "f"),
                           {"m": 1}, origin="external")
        finally:
            cat.conn.execute("ROLLBACK")
    # a recentring that crosses more than the range (raw -1.5e6, centre +1.5e6) is refused too
    df = _frame([-1.5e6], [0.0], x=[1.5e6])
    cat.conn.execute("BEGIN")
    try:
        with pytest.raises(ValueError, match="cannot be stored"):
            insert_set(cat.conn, 1, None, ParticleSetRecord("s", "picked", df, "f"), {"m": 1},
                       origin="external")
    finally:
        cat.conn.execute("ROLLBACK")


def test_missing_values_come_back_missing(cat):
    df = _frame([1.0, np.nan, 3.0], [1.0, 2.0, 3.0], x=[1.5, np.nan, np.nan],
                score=[0.25, np.nan, -0.5])
    got, scale = _round_trip(cat, df)
    assert scale == DEFAULT_SCORE_SCALE
    assert np.isnan(got["raw_x"].to_numpy()).tolist() == [False, True, False]
    assert np.isnan(got["x"].to_numpy()).tolist() == [False, True, True]
    assert np.isnan(got["z"].to_numpy()).all() and np.isnan(got["raw_z"].to_numpy()).all()
    assert got["score"].iloc[0] == 0.25 and np.isnan(got["score"].iloc[1])
    assert (got["class_id"] == -1).all() and got["uid"].tolist() == [0, 1, 2]
    # no score column at all: NULL stored, NaN read
    got, _ = _round_trip(cat, _frame([1.0], [2.0]), name="t")
    assert np.isnan(got["score"].iloc[0])


@pytest.mark.parametrize("top, scale", [(0.9, 1e4), (9.0e11, 1e4), (9.1e11, 1e3),
                                        (9.0e14, 10.0), (1e300, None)])
def test_score_scale_keeps_scores_below_2_53(cat, top, scale):
    """1e4 unless |score| × 1e4 would reach 2^53; then ten times smaller until it fits. The
    error stays ≤ 0.5 / scale."""
    score = np.array([top, -top, top / 3, 0.0])
    got, stored = _round_trip(cat, _frame(np.ones(4), np.ones(4), score=score))
    if scale is not None:
        assert stored == scale
    assert np.abs(score).max() * stored < 2.0**53
    assert (np.abs(got["score"].to_numpy() - score) <= 0.5 / stored + 1e-12 * np.abs(score)).all()


def test_uids_at_the_int64_bounds(cat):
    """uid − row wraps in int64 and decodes exactly, whatever the row."""
    big, small = np.iinfo(np.int64).max, np.iinfo(np.int64).min
    uid = np.array([small, big, small + 1, big - 1, 0, -1], dtype=np.int64)
    got, _ = _round_trip(cat, _frame(np.arange(6.0), np.arange(6.0), uid=uid,
                                     class_id=np.array([-1, 0, 1, 2**31 - 1, 5, 6])))
    assert got["uid"].tolist() == uid.tolist()
    assert got["class_id"].tolist() == [-1, 0, 1, 2**31 - 1, 5, 6]


def test_packed_pairs_split_the_same_in_sql_and_numpy():
    """A pair packed by the SQL expression of a read is split by numpy exactly as numpy packs
    it, at the int32 bounds."""
    lo_b, hi_b = -(2**31), 2**31 - 1
    hi = np.array([lo_b, hi_b, 0, -1, 1, lo_b, hi_b], dtype=np.int64)
    lo = np.array([hi_b, lo_b, -1, 0, lo_b, lo_b, hi_b], dtype=np.int64)
    packed = _pack(hi, lo)
    h, low = _unpack(packed)
    assert h.tolist() == hi.tolist() and low.tolist() == lo.tolist()
    conn = sqlite3.connect(":memory:")
    back = [conn.execute(f"SELECT (?1 << 32) | (?2 & {_M32})", (int(a), int(b))).fetchone()[0]
            for a, b in zip(hi, lo)]
    assert back == packed.tolist()
    conn.close()


def test_particle_encoding_round_trip_property(tmp_path):
    """Any coordinates within ±2 million px (negative ones, recentring across zero, NaNs),
    any scores and 64-bit uids come back within the documented quantisation."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from harvest.catalog.codec import insert_set as _insert_set
    from harvest.catalog.codec import read_set as _read_set

    coord = st.floats(-2e6, 2e6, allow_nan=False)
    row = st.tuples(coord, coord, st.floats(-50, 50), st.floats(-50, 50),
                    st.one_of(st.just(float("nan")), st.floats(-1e6, 1e6)),
                    st.integers(-1, 1000), st.integers(-(2**63), 2**63 - 1),
                    st.booleans())
    cat = Catalog(tmp_path / "h.db")
    cat.conn.execute("INSERT INTO projects (id, root, software, status) VALUES (1, '/p', 'x', 'ok')")
    cat.conn.execute("INSERT INTO micrographs (id, project_id, key, path) VALUES (1, 1, 'm', 'm')")
    cat.conn.execute("INSERT INTO micrographs (id, project_id, key, path) VALUES (2, 1, 'n', 'n')")

    @settings(max_examples=60, deadline=None)
    @given(st.lists(row, min_size=1, max_size=40, unique_by=lambda r: r[6]))
    def check(rows):
        rx, ry, dx, dy, score, cls, uid, other = map(np.array, zip(*rows))
        df = pd.DataFrame({"micrograph": np.where(other, "n", "m"), "raw_x": rx, "raw_y": ry,
                           "x": rx + dx, "y": ry + dy, "score": score.astype(float),
                           "class_id": cls, "uid": uid.astype(np.int64)})
        cat.conn.execute("BEGIN")
        try:
            res = _insert_set(cat.conn, 1, None, ParticleSetRecord("s", "picked", df, "f"),
                              {"m": 1, "n": 2}, origin="external")
            scale = cat.conn.execute("SELECT score_scale FROM particle_sets WHERE id = ?",
                                     (res.set_id,)).fetchone()[0]
            got = _read_set(cat.conn, res.set_id, scale).sort_values("uid", kind="stable")
        finally:
            cat.conn.execute("ROLLBACK")
        want = df.assign(mid=np.where(other, 2, 1)).sort_values("uid", kind="stable")
        assert (got["uid"].to_numpy() == want["uid"].to_numpy()).all()
        assert (got["micrograph_id"].to_numpy() == want["mid"].to_numpy()).all()
        for c in ("x", "y", "raw_x", "raw_y"):
            assert np.abs(got[c].to_numpy() - want[c].to_numpy()).max() <= MAX_ERR * 1.001
        assert (got["class_id"].to_numpy() == want["class_id"].to_numpy()).all()
        w, g = want["score"].to_numpy(), got["score"].to_numpy()
        assert (np.isnan(w) == np.isnan(g)).all()
        ok = ~np.isnan(w)
        assert (np.abs(g[ok] - w[ok]) <= 0.5 / scale + 1e-6 * np.abs(w[ok])).all()

    try:
        check()
    finally:
        cat.close()
