"""A small STAR writer in RELION's style (``# version`` line, ``_rlnX #N`` column indices).

RELION prints floats with 6 decimals, so callers that need exact values round to 6 decimals
before deriving anything from them (see :func:`round6`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def round6(values) -> np.ndarray:
    """Values as they read back from a STAR file written here (6 decimals)."""
    return np.round(np.asarray(values, dtype=np.float64), 6)


def _fmt(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6f}"
    text = str(value)
    return text if text and len(text.split()) == 1 and text.split()[0] == text else f'"{text}"'


def _format_column(column: pd.Series) -> list[str]:
    """Each value formatted as RELION prints it, right-aligned in 12 characters."""
    kind = column.dtype.kind
    values = column.tolist()
    if kind == "f":
        return [f"{v:>12.6f}" for v in values]
    if kind in "iub":
        return [f"{int(v):>12d}" for v in values]
    return [f"{_fmt(v):>12}" for v in values]


def star_text(blocks: list[tuple[str, pd.DataFrame | dict]], version: int | None) -> str:
    """STAR text of named blocks; a DataFrame becomes a ``loop_``, a dict a key-value list.

    ``version`` (30001, 50001) is written as ``# version N`` before each block, as RELION 3.1+
    does; ``None`` writes no version line (RELION 3.0).
    """
    out: list[str] = []
    for name, table in blocks:
        out.append("")
        if version is not None:
            out.append(f"# version {version}")
            out.append("")
        out.append(f"data_{name}")
        out.append("")
        if isinstance(table, dict):
            width = max(len(k) for k in table) + 2
            out.extend(f"_{k:<{width}} {_fmt(v)}" for k, v in table.items())
        else:
            out.append("loop_")
            out.extend(f"_{c} #{i}" for i, c in enumerate(table.columns, start=1))
            columns = [_format_column(table[c]) for c in table.columns]
            out.extend(" ".join(row) for row in zip(*columns))
        out.append("")
    return "\n".join(out) + "\n"


def write_star(path: Path, blocks: list[tuple[str, pd.DataFrame | dict]], version: int | None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(star_text(blocks, version))
