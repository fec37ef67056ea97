"""The STAR writer: RELION's layout and value rules, in one place.

Every STAR file cryoglean writes follows these rules (the generator in :mod:`harvest.synth`
writes whole files with :func:`star_text`; the picks writer :mod:`converters.formats.star` builds
its headers here and renders its large tables row-wise with numpy under the same value rules):

Layout
    Per block: an optional ``# version N`` line (RELION 3.1+ writes ``30001``, RELION 5
    ``50001``; none for RELION 3.0), ``data_NAME``, a blank line, then either a table
    (``loop_``, one ``_label #i`` line per column, i counting from 1, one row per line) or
    ``_key value`` lines, and a blank line.

Values
    Integers as integers; floats with :data:`DECIMALS` decimals (``%.6f``, as RELION prints
    them; callers that derive numbers from written values round first, :func:`round6`);
    NaN as ``nan``. Text as written, in double quotes when it is empty, holds whitespace or a
    ``#``, or starts with ``_`` or ``;`` (otherwise it would read as a comment, a label or a
    text field). Text holding a newline or a quote character next to one of those cannot be
    written (``ValueError``): STAR readers have no escape for it.

Rows
    Every row has exactly one field per label. The reader (:mod:`harvest.starread`) treats a
    row with any other number of fields as an error naming the file and line, so what is
    written here always reads back, by cryoglean, ``starfile`` and RELION alike.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # frames are only passed in: writing picks needs no pandas import
    import pandas as pd

DECIMALS = 6
_NEEDS_QUOTES_START = ("_", ";")


def round6(values) -> np.ndarray:
    """Values as they read back from a STAR file written here (6 decimals)."""
    return np.round(np.asarray(values, dtype=np.float64), DECIMALS)


def quote(text: str) -> str:
    """A text value as one STAR field: as is, or in double quotes where it must be (see the
    module docstring); ValueError for text no STAR field can hold."""
    text = str(text)
    if "\n" in text or "\r" in text:
        raise ValueError(f"STAR value {text!r} holds a line break; it cannot be written")
    plain = (
        text
        and not any(c.isspace() for c in text)
        and "#" not in text
        and not text.startswith(_NEEDS_QUOTES_START)
    )
    if plain and not text.startswith(('"', "'")):
        return text
    if '"' in text or "'" in text:
        raise ValueError(
            f"STAR value {text!r} would need quotes but holds a quote character; rename it"
        )
    return f'"{text}"'


def format_value(value) -> str:
    """One value as RELION prints it (see the module docstring)."""
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.{DECIMALS}f}"
    return quote(value)


def block_start(name: str, version: int | None = None) -> str:
    """``[\\n# version N\\n]\\ndata_NAME\\n\\n``: what precedes a block's loop or pairs (a file's
    first block drops the leading newline)."""
    head = f"\n# version {int(version)}\n" if version is not None else ""
    return f"{head}\ndata_{name}\n\n"


def loop_header(labels) -> str:
    """``loop_`` and one ``_label #i`` line per label (i from 1)."""
    labels = list(labels)
    if not labels:
        raise ValueError("a STAR loop needs at least one label")
    if len(set(labels)) != len(labels):
        raise ValueError(f"duplicate STAR labels in {labels}")
    return "loop_\n" + "".join(f"_{name} #{i}\n" for i, name in enumerate(labels, 1))


def pairs_text(pairs: dict) -> str:
    """``_key value`` lines of a key-value block, keys padded to one column."""
    if not pairs:
        return ""
    width = max(len(k) for k in pairs) + 2
    return "".join(f"_{k:<{width}} {format_value(v)}\n" for k, v in pairs.items())


def _format_column(column: pd.Series) -> list[str]:
    """Each value formatted as RELION prints it, right-aligned in 12 characters."""
    kind = column.dtype.kind
    values = column.tolist()
    if kind == "f":
        return [f"{v:>12.{DECIMALS}f}" for v in values]
    if kind in "iub":
        return [f"{int(v):>12d}" for v in values]
    return [f"{format_value(v):>12}" for v in values]


def loop_text(table: pd.DataFrame) -> str:
    """A table as ``loop_``, its labels and one row per line (values right-aligned in 12)."""
    out = [loop_header(table.columns)]
    columns = [_format_column(table[c]) for c in table.columns]
    out.extend(" ".join(row) + "\n" for row in zip(*columns))
    return "".join(out)


def star_text(blocks: list[tuple[str, pd.DataFrame | dict]], version: int | None) -> str:
    """STAR text of named blocks; a DataFrame becomes a ``loop_``, a dict a key-value list.

    ``version`` (30001, 50001) is written as ``# version N`` before each block, as RELION 3.1+
    does; ``None`` writes no version line (RELION 3.0).
    """
    out: list[str] = []
    for name, table in blocks:
        out.append(block_start(name, version))
        out.append(pairs_text(table) if isinstance(table, dict) else loop_text(table))
        out.append("\n")
    return "".join(out)


def write_star(
    path: str | os.PathLike, blocks: list[tuple[str, pd.DataFrame | dict]], version: int | None
) -> Path:
    """Write :func:`star_text` to ``path`` (parent folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(star_text(blocks, version))
    return path
