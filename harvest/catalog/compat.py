"""Reading a catalog one migration behind, read-only (:data:`harvest.catalog.schema.READER_COMPATIBLE`).

A version-1 catalog lacks migration 2: ``micrographs.size_source`` (read as None), the SQL views
(created as TEMP views on the reader's connection) and RELION class numbers as RELION numbers them
(version 1 stored ``rlnClassNumber − 1``: RELION job sets' classes are shifted by one on read).
"""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd

from harvest.catalog.views import create_views


def class_shift_sql(alias: str = "s") -> str:
    """SQL added to a set's class_id: 1 for RELION job sets, else 0."""
    return (f" + (CASE WHEN {alias}.origin = 'job' AND (SELECT software FROM projects "
            f"WHERE id = {alias}.project_id) = 'relion' THEN 1 ELSE 0 END)")


def class_shifts(conn: sqlite3.Connection, set_ids) -> dict[int, int]:
    """{set id: amount added to its particles' classes on read} (RELION job sets: 1)."""
    ids = [int(i) for i in set_ids]
    if not ids:
        return {}
    rows = conn.execute(
        f"SELECT s.id, 0{class_shift_sql()} FROM particle_sets s "
        f"WHERE s.id IN ({','.join('?' * len(ids))})", ids).fetchall()
    return {int(i): int(d) for i, d in rows if d}


def shift_classes(df: pd.DataFrame, shift: int) -> pd.DataFrame:
    """A set's particles with their classes (≥ 0) renumbered by ``shift``."""
    if shift:
        df["class_id"] = np.where(df["class_id"] >= 0, df["class_id"] + shift, df["class_id"])
    return df


def temp_views(conn: sqlite3.Connection) -> None:
    """The views of migration 2 as TEMP views of this connection."""
    create_views(conn, temp=True, class_shift=True, size_source=False)
