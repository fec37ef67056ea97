"""How Python values become SQLite parameters in the catalog: text that SQLite can store
(:func:`db_text`), NaN as NULL, numpy scalars as Python ones, and the catalog's timestamps."""

from __future__ import annotations

import datetime as _dt
import math
import re

import numpy as np


def utcnow() -> str:
    """The catalog's timestamp format (UTC, microseconds, ``Z``)."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# A run of backslashes that an escape follows (``\xNN`` written out, or a byte that is not
# UTF-8): doubled, so that a name spelling ``\xe9`` stays apart from the byte 0xE9.
_ESCAPE_LIKE = re.compile(r"(\\+)(?=x[0-9a-fA-F]{2}|[\udc80-\udcff])")


def db_text(value: str | None) -> str | None:
    r"""Text that SQLite can store: file names that are not UTF-8 (surrogate-escaped by
    ``os.fsdecode``) are kept readable with backslash escapes (``caf\xe9``). One-to-one: a
    name that spells such an escape itself (``caf\\xe9`` on disk, the backslash included)
    has its backslashes doubled, so the two stay two projects; every other text is kept as
    it is."""
    if value is None:
        return None
    if "\\" in value:
        value = _ESCAPE_LIKE.sub(lambda m: m.group(1) * 2, value)
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def sql_values(values: list) -> list:
    """Values for SQL: numpy scalars as Python ones, NaN as NULL, strings through
    :func:`db_text`."""
    out = []
    for v in values:
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and math.isnan(v):
            v = None
        elif isinstance(v, str):
            v = db_text(v)
        out.append(v)
    return out


def texts(*values) -> tuple:
    """Values for SQL with every string made storable (:func:`db_text`)."""
    return tuple(db_text(v) if isinstance(v, str) else v for v in values)
