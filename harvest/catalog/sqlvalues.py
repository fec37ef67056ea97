"""How Python values become SQLite parameters in the catalog: text that SQLite can store
(:func:`db_text`), NaN as NULL, numpy scalars as Python ones, and the catalog's timestamps."""

from __future__ import annotations

import datetime as _dt
import math

import numpy as np


def utcnow() -> str:
    """The catalog's timestamp format (UTC, microseconds, ``Z``)."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def db_text(value: str | None) -> str | None:
    """Text that SQLite can store: file names that are not UTF-8 (surrogate-escaped by
    ``os.fsdecode``) are kept readable with backslash escapes."""
    if value is None:
        return None
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
