"""Bulk numeric formatting (converters/formats/_text.py) against Python's own formatting."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from converters.formats import _text

finite = st.floats(min_value=-1e7, max_value=1e7, allow_nan=False, allow_infinity=False)


def _fmt(columns, n, sep="\t"):
    return _text.render_bytes(columns, n, sep=sep).tobytes().decode().splitlines()


@settings(max_examples=200, deadline=None)
@given(st.lists(finite, min_size=1, max_size=50))
def test_fixed_matches_percent_f(values):
    x = np.array(values)
    got = _fmt([_text.Fixed(x, 6, strip=False)], len(x))
    # rint(|x|*1e6) can differ from '%.6f' only in the last digit of exact-half cases
    for g, v in zip(got, x):
        assert abs(float(g) - v) <= 5.1e-7 * max(1.0, abs(v) / 1e6)
        assert len(g.split(".")[1]) == 6


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=-10**12, max_value=10**12), min_size=1, max_size=50))
def test_int_matches_str(values):
    x = np.array(values, dtype=np.float64)
    assert _fmt([_text.Int(x)], len(x)) == [str(int(v)) for v in x]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=-10**9, max_value=10**9), min_size=1, max_size=50))
def test_fixed_strip_quarters(values):
    x = np.array(values, dtype=np.float64) / 4
    got = _fmt([_text.Fixed(x, 6, strip=True)], len(x))
    for g, v in zip(got, x):
        assert float(g) == v
        assert not (g.endswith("0") and "." in g) and not g.endswith(".")


def test_strip_and_special_tokens():
    x = np.array([0.0, 1.5, -2.25, 3.0, -0.0000001, np.nan, np.inf, -np.inf, 1e20, 0.1])
    got = _fmt([_text.Fixed(x, 6, strip=True, nan="<NA>")], len(x))
    assert got == ["0", "1.5", "-2.25", "3", "0", "<NA>", "inf", "-inf",
                   "100000000000000000000.000000", "0.1"]


def test_int_rounds_half_to_even_like_numpy():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 2.4999, 2.5001])
    assert _fmt([_text.Int(x)], len(x)) == [str(int(v)) for v in np.rint(x)]


def test_rows_offsets_and_strings():
    names = np.array(["a", "bb", "a", "ccc b"], dtype=object)
    cols = [_text.Str(names, quote_blank=True), _text.Int(np.arange(4.0)), _text.Const("1.0")]
    text, offsets = _text.render(cols, 4, sep=" ")
    rows = [text[offsets[i] : offsets[i + 1]].tobytes().decode() for i in range(4)]
    assert rows == ["a 0 1.0\n", "bb 1 1.0\n", "a 2 1.0\n", '"ccc b" 3 1.0\n']


def test_empty_table():
    text, offsets = _text.render([_text.Int(np.zeros(0))], 0)
    assert text.size == 0 and offsets.tolist() == [0]


def test_many_rows_cross_chunks():
    n = 300_001  # crosses the internal chunk size
    x = np.arange(n, dtype=np.float64) * 1.25
    text, offsets = _text.render([_text.Fixed(x, 2, strip=False)], n)
    assert offsets.size == n + 1
    last = text[offsets[-2] : offsets[-1]].tobytes().decode()
    assert last == f"{x[-1]:.2f}\n"
