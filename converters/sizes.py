"""Micrograph sizes for exports and conversions when the micrographs may be gone.

Facilities archive or purge micrographs and keep the metadata (DESIGN.md). A size (nx, ny in
px of the micrograph file) comes, in this order, from:

``catalog``
    what the crawl stored (an MRC header read at crawl time, or metadata such as CryoSPARC's
    ``micrograph_shape`` or RELION's ``rlnImageSizeX/Y``);
``header``
    the micrograph file's header, read now;
``option``
    ``--micrograph-size NXxNY``, for every micrograph still without one.

Micrographs with none stay ``unknown``: exports that need no size (coordinate formats without
normalisation, flip or rescaling) do not need one. :func:`resolve_sizes` fills a micrograph
table and records the source per row (``size_source``); :func:`missing_line` is the one line
that names the micrographs still lacking a size.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd

SOURCES = ("catalog", "header", "option", "unknown")
_SIZE_RE = re.compile(r"^\s*(\d+)\s*[xX×,]\s*(\d+)\s*$")


def parse_size(text: str | tuple | None) -> tuple[int, int] | None:
    """``"NXxNY"`` (or a 2-tuple) → ``(nx, ny)``; ValueError naming the value otherwise."""
    if text is None:
        return None
    if isinstance(text, (tuple, list)):
        if len(text) != 2:
            raise ValueError(f"--micrograph-size needs two numbers NXxNY, got {text!r}")
        nx, ny = int(text[0]), int(text[1])
    else:
        m = _SIZE_RE.match(str(text))
        if not m:
            raise ValueError(f"--micrograph-size {text!r} is not NXxNY (e.g. 4096x4096)")
        nx, ny = int(m.group(1)), int(m.group(2))
    if nx <= 0 or ny <= 0:
        raise ValueError(f"--micrograph-size {text!r}: both sizes must be positive")
    return nx, ny


def resolve_sizes(table: pd.DataFrame, option: tuple[int, int] | None = None,
                  path_col: str = "abs_path", read_headers: bool = True) -> pd.DataFrame:
    """A copy of ``table`` with ``nx``, ``ny`` filled where possible and ``size_source`` (one of
    :data:`SOURCES`) per row; a catalog column ``size_source`` (where the crawl says which
    metadata a size came from) is kept as ``catalog (<that>)``."""
    from harvest.imageio import micrograph_shape

    t = table.copy()
    for c in ("nx", "ny"):
        t[c] = pd.to_numeric(t[c], errors="coerce").astype("float64") if c in t else np.nan
    known = t["nx"].notna() & t["ny"].notna()
    detail = t["size_source"] if "size_source" in t else pd.Series(None, index=t.index)
    source = np.where(known, "catalog", "unknown").astype(object)
    for i, (ok, d) in enumerate(zip(known, detail)):
        if ok and isinstance(d, str) and d and d != "catalog":
            source[i] = f"catalog ({d})"
    if read_headers and path_col in t:
        for i in np.flatnonzero(~known.to_numpy()):
            path = t[path_col].iloc[i]
            if not isinstance(path, str) or not os.path.isfile(path):
                continue
            try:
                nx, ny = micrograph_shape(path)
            except (OSError, ValueError):
                continue
            t.iloc[i, t.columns.get_loc("nx")] = nx
            t.iloc[i, t.columns.get_loc("ny")] = ny
            source[i] = "header"
    if option is not None:
        todo = t["nx"].isna() | t["ny"].isna()
        t.loc[todo, "nx"] = float(option[0])
        t.loc[todo, "ny"] = float(option[1])
        source[todo.to_numpy()] = "option"
    t["size_source"] = source
    return t


def has_size(table: pd.DataFrame) -> pd.Series:
    """True where a row's nx and ny are known."""
    return (pd.to_numeric(table["nx"], errors="coerce").notna()
            & pd.to_numeric(table["ny"], errors="coerce").notna())


def shown(names, n: int = 5) -> str:
    """``count`` + the first ``n`` names, for one-line messages."""
    names = [str(x) for x in names]
    head = ", ".join(names[:n]) + (" ..." if len(names) > n else "")
    return f"{len(names)} ({head})"


def missing_line(what: str, names) -> str:
    """One line: ``what`` needs the micrograph size, which these micrographs lack, and the fix."""
    return (f"{what} needs the micrograph size, unknown for {shown(names)}: no size in the "
            "catalog and no readable micrograph file; pass --micrograph-size NXxNY")


def counts(table: pd.DataFrame) -> dict:
    """``{source: number of micrographs}`` (catalog details folded into ``catalog``)."""
    if "size_source" not in table:
        return {}
    base = table["size_source"].astype(str).str.split(" ", n=1).str[0]
    return {k: int(v) for k, v in base.value_counts().sort_index().items()}
