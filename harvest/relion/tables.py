"""STAR table helpers shared by the RELION readers: one-pass loop reads, optics-group lookups,
numeric columns. Values are numpy arrays; labels that name files stay text."""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
import pandas as pd

from harvest.conventions import RELION_MISSING
from harvest.starread import StarFormatError, read_star

# labels kept as text even when they look numeric (micrograph names like "0001")
STRING_LABELS = (
    "rlnMicrographName", "rlnImageName", "rlnTomoName", "rlnOpticsGroupName",
    "rlnMicrographCoordinates", "rlnTomoParticleName", "rlnTomoTiltSeriesName",
    "rlnTomoReconstructedTomogram", "rlnTomoReconstructedTomogramDenoised",
    "rlnTomoReconstructedTomogramHalf1", "rlnTomoReconstructedTomogramHalf2",
    "rlnTomoParticlesFile", "rlnTomoTomogramsFile",
    "rlnPipeLineProcessName", "rlnPipeLineProcessAlias", "rlnPipeLineNodeName",
    "rlnPipeLineEdgeFromNode", "rlnPipeLineEdgeProcess", "rlnPipeLineEdgeToNode",
)
# RELION's "no value" (−999), defined once in harvest.conventions (kept here under its old name)
SCORE_MISSING = RELION_MISSING


def read_table(
    path: str, main: Iterable[str], need: str, labels: Iterable[str] | None,
    categories: Iterable[str] = (),
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The main loop (first of ``main`` present, else the one holding ``need``) and the optics
    loop of a STAR file, converting only ``labels`` of the main loop (all if None). One pass.
    ``categories``: labels read as Categoricals (``read_star``'s ``parse_as_category``)."""
    wanted = None if labels is None else list(labels)

    def columns(name: str, _labels: list[str]):
        return None if name == "optics" else wanted

    data = read_star(path, columns=columns, parse_as_string=STRING_LABELS,
                     parse_as_category=categories)
    loops = {n: b for n, b in data.items() if isinstance(b, pd.DataFrame)}
    name = next((n for n in main if n in loops), None)
    if name is None:
        name = next((n for n, b in loops.items() if need in b.columns and n != "optics"), None)
    if name is None:
        raise StarFormatError(
            f"{path}: no {'/'.join('data_' + n for n in main)} table with _{need}; "
            f"tables: {', '.join('data_' + n for n in data) or 'none'}"
        )
    optics = loops.get("optics") if name != "optics" else None
    return loops[name], optics


class OpticsLookup:
    """Per-row values of optics-group labels; the row → group indexer is computed once."""

    def __init__(self, table: pd.DataFrame, optics: pd.DataFrame | None):
        self.n = len(table)
        self.optics = optics
        self.idx = None
        if (optics is not None and "rlnOpticsGroup" in optics.columns
                and "rlnOpticsGroup" in table.columns):
            keys = pd.Index(pd.to_numeric(optics["rlnOpticsGroup"], errors="coerce"))
            first = ~keys.duplicated()
            self.rows = np.flatnonzero(first)
            groups = pd.to_numeric(table["rlnOpticsGroup"], errors="coerce")
            self.idx = keys[first].get_indexer(groups)  # -1 where the group is unknown

    def __call__(self, label: str) -> np.ndarray:
        if self.idx is None or label not in self.optics.columns:
            return np.full(self.n, np.nan)
        values = pd.to_numeric(self.optics[label], errors="coerce").to_numpy(dtype=np.float64)
        lut = np.append(values[self.rows], np.nan)  # index -1 → NaN
        return lut[self.idx]


def optics_values(table: pd.DataFrame, optics: pd.DataFrame | None, label: str) -> np.ndarray:
    """Per-row value of an optics-group label (NaN where unknown)."""
    return OpticsLookup(table, optics)(label)


def col(table: pd.DataFrame, label: str, default: float = np.nan) -> np.ndarray:
    """A numeric column as float64 (``default`` where the label is absent, NaN where unparsable)."""
    if label not in table.columns:
        return np.full(len(table), default, dtype=np.float64)
    # a writable copy (pandas copy-on-write hands out read-only views)
    return np.array(pd.to_numeric(table[label], errors="coerce"), dtype=np.float64)


def first(values: np.ndarray) -> float | None:
    """The first value if finite, else the first finite one, else None."""
    if values.size and np.isfinite(values[0]):
        return float(values[0])
    finite = values[np.isfinite(values)]
    return float(finite[0]) if finite.size else None


def fingerprint(path: str) -> str:
    """``size:mtime_ns`` of a source file ("" when it cannot be stat'ed)."""
    try:
        st = os.stat(path)
    except OSError:
        return ""
    return f"{st.st_size}:{st.st_mtime_ns}"
