"""Every registry writer writes the same bytes from the numpy form of the picks
(:class:`converters.registry.PickColumns`, what the pick path hands over without importing
pandas; issue 16) as from a pandas picks frame: every writable format and flavour, picks with
and without optional columns, filaments, vesicles, no picks at all, interleaved micrographs.
A writer that refuses the picks refuses both forms with the same message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from converters import registry
from converters.registry import PickColumns

SPECS = [(name, flavour) for name in registry.names(capability="write")
         for flavour in (registry.get(name).flavours or (None,))]
STEMS = ("mic_c", "mic_a", "mic_b")
STEMS_ALL = (*STEMS, "mic_empty")  # the last one without picks


def _columns(case: str, three_d: bool) -> dict:
    rng = np.random.default_rng(5)
    n = 0 if case == "empty" else 11
    cols = {"micrograph": np.array([STEMS[i % 3] for i in range(n)], dtype=object),
            "x": rng.uniform(0, 500, n) + 1 / 3, "y": rng.uniform(0, 400, n) - 1 / 7}
    if three_d:
        cols["z"] = rng.uniform(0, 60, n)
    if case in ("full", "fiber", "vesicle"):
        cols["score"] = rng.uniform(0, 1, n)
        cols["diameter"] = rng.uniform(10, 40, n)
    if case == "full":
        cols["class_id"] = rng.integers(0, 3, n)
    if case == "fiber":
        cols["filament"] = rng.integers(0, 4, n)
    if case == "vesicle":
        cols["radius"] = rng.uniform(5, 30, n)
    if case == "one micrograph":  # the pick path: one stem for all rows, as a plain string
        cols = {"micrograph": "mic_a", **{k: v for k, v in cols.items() if k != "micrograph"}}
        cols["score"] = rng.uniform(0, 1, n)
        cols["diameter"] = np.full(n, 19.0 / 0.37)
    return cols


def _frame(cols: dict) -> pd.DataFrame:
    """The frame a picker built before (``pd.DataFrame`` of the same columns)."""
    return pd.DataFrame(cols) if len(cols["x"]) else pd.DataFrame(
        {k: (np.asarray([], dtype=object) if isinstance(v, str) else v) for k, v in cols.items()})


def _write(spec, picks, dest: Path) -> str | dict[str, bytes]:
    opts = {"overwrite": True,
            "image_size": {s: (512 + 7 * i, 433 - 5 * i) for i, s in enumerate(STEMS_ALL)},
            "voxel_spacing": {s: 1.5 + i for i, s in enumerate(STEMS_ALL)}}
    if "per_micrograph" in spec.capabilities:
        opts["micrographs"] = list(STEMS_ALL)
    try:
        spec.write(picks, dest, **opts)
    except (ValueError, KeyError) as exc:
        return f"{type(exc).__name__}: {exc}".replace(str(dest), "DEST")
    return {str(p.relative_to(dest)): p.read_bytes() for p in sorted(dest.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("case", ["full", "minimal", "fiber", "vesicle", "empty",
                                  "one micrograph"])
@pytest.mark.parametrize("name,flavour", SPECS, ids=[f"{n}-{f}" if f else n for n, f in SPECS])
def test_numpy_columns_write_the_same_bytes_as_a_frame(name, flavour, case, tmp_path):
    spec = registry.get(name).flavoured(flavour) if flavour else registry.get(name)
    cols = _columns(case, spec.dims == (3,))
    a = _write(spec, _frame(cols), tmp_path / "frame")
    b = _write(spec, PickColumns(cols), tmp_path / "columns")
    assert a == b
    if case == "full":
        assert isinstance(a, dict) and a and any(a.values()), f"{name}: nothing was written"


def test_pick_columns_factorize_in_first_seen_order():
    from converters.formats._common import factorize_names, group_rows

    cols = PickColumns({"micrograph": np.array(["b", "a", "b", "c", "a"], dtype=object),
                        "x": np.arange(5.0), "y": np.arange(5.0)})
    codes, names = factorize_names(cols)
    assert names == ["b", "a", "c"] and codes.tolist() == [0, 1, 0, 2, 1]
    order, names2, starts = group_rows(cols)
    assert names2 == names and order.tolist() == [0, 2, 1, 4, 3] and starts.tolist() == [0, 2,
                                                                                         4, 5]
    with pytest.raises(ValueError, match="shape"):
        PickColumns({"micrograph": "a", "x": np.arange(3.0), "y": np.arange(2.0)})
