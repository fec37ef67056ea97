"""Train/validation splits of exported micrographs, deterministic for a seed.

``by micrograph``: micrographs are sorted by their identifier, shuffled with
``numpy.random.default_rng(seed)`` and the first ``round(val_fraction * n)`` go to validation
(at least one on each side when there are two or more micrographs and ``0 < val_fraction < 1``).

``by project``: whole projects go to validation (a general model is validated on projects it
never saw); ``round(val_fraction * n_projects)`` projects, at least one, at least one left for
training. Needs two or more projects.

Exposure identity. A facility re-processes the same data: one exposure appears in several
projects (and twice in one project when it was imported twice). Split independently, such
copies land on both sides and validation scores what the model trained on. So splits are made
over exposures, not rows: :func:`exposure_groups` joins micrographs that share a micrograph key
or a CryoSPARC exposure uid (transitively), and every member of a group gets the same side.
``by project`` likewise joins projects that share an exposure. A group is named after its
smallest member, so a selection without shared exposures splits exactly as a plain shuffle of
its micrographs (or projects) would.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping

import numpy as np
import pandas as pd

SPLIT_BY = ("micrograph", "project")
TRAIN, VAL = "train", "val"


def _n_val(n: int, val_fraction: float) -> int:
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    k = int(round(val_fraction * n))
    if n >= 2 and 0.0 < val_fraction < 1.0:
        k = min(max(k, 1), n - 1)
    return k


def _shuffled(items: Iterable[Hashable], seed: int) -> list:
    ordered = sorted(set(items), key=lambda v: (str(type(v)), v))
    rng = np.random.default_rng(seed)
    return [ordered[i] for i in rng.permutation(len(ordered))]


def split_micrographs(ids: Iterable[Hashable], val_fraction: float = 0.2, seed: int = 0) -> dict:
    """``{id: "train" | "val"}`` for each micrograph identifier (seeded shuffle)."""
    order = _shuffled(ids, seed)
    k = _n_val(len(order), val_fraction)
    return {m: (VAL if i < k else TRAIN) for i, m in enumerate(order)}


def split_projects(
    project_of: Mapping[Hashable, Hashable], val_fraction: float = 0.2, seed: int = 0
) -> dict:
    """``{micrograph id: "train" | "val"}`` with every micrograph of a project on the same side.

    ``project_of`` maps each micrograph identifier to its project. ValueError with fewer than
    two projects (there would be nothing to validate on, or nothing to train on).
    """
    projects = _shuffled(project_of.values(), seed)
    if len(projects) < 2:
        raise ValueError(
            f"--split-by project needs two or more projects in the selection, got "
            f"{len(projects)}; select more projects or use --split-by micrograph"
        )
    k = max(1, _n_val(len(projects), val_fraction))
    val_projects = set(projects[:k])
    return {m: (VAL if p in val_projects else TRAIN) for m, p in project_of.items()}


def _order_key(v):
    return (str(type(v)), v)


class _Groups:
    """Union-find over hashable items; each group is named after its smallest member."""

    def __init__(self, items: Iterable[Hashable]):
        self.parent = {i: i for i in items}

    def find(self, i):
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:
            self.parent[i], i = root, self.parent[i]
        return root

    def union(self, a, b) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            lo, hi = sorted((ra, rb), key=_order_key)
            self.parent[hi] = lo

    def names(self) -> dict:
        return {i: self.find(i) for i in self.parent}


def exposure_groups(mics: pd.DataFrame) -> dict:
    """``{mic: group}``: micrographs sharing a ``key`` or a non-empty ``exposure_uid`` are one
    exposure (transitively). ``mics`` has columns ``mic``, ``key`` and optionally
    ``exposure_uid``. A group is named after its smallest ``mic``."""
    groups = _Groups(mics["mic"])
    columns = [c for c in ("key", "exposure_uid") if c in mics.columns]
    for col in columns:
        values = mics[col]
        ok = values.notna() & (values.astype(str).str.strip() != "")
        for _, members in mics.loc[ok, "mic"].groupby(values[ok].astype(str)):
            first = members.iloc[0]
            for other in members.iloc[1:]:
                groups.union(first, other)
    return groups.names()


def assign_splits(
    project_of: Mapping[Hashable, Hashable],
    by: str = "micrograph",
    val_fraction: float = 0.2,
    seed: int = 0,
    exposure_of: Mapping[Hashable, Hashable] | None = None,
) -> dict:
    """Split dispatcher for the export: ``by`` is ``micrograph`` or ``project``.

    ``exposure_of`` (:func:`exposure_groups`) keeps every copy of an exposure on one side;
    without it each micrograph is its own exposure."""
    exposure_of = dict(exposure_of) if exposure_of is not None else {m: m for m in project_of}
    missing = set(project_of) - set(exposure_of)
    if missing:
        raise ValueError(f"no exposure group for micrograph(s) {sorted(map(str, missing))[:5]}")
    if by == "micrograph":
        side = split_micrographs(set(exposure_of[m] for m in project_of), val_fraction, seed)
        return {m: side[exposure_of[m]] for m in project_of}
    if by == "project":
        projects = _Groups(set(project_of.values()))
        first_project: dict = {}
        for m, p in project_of.items():  # projects sharing an exposure go together
            g = exposure_of[m]
            if g in first_project:
                projects.union(first_project[g], p)
            else:
                first_project[g] = p
        name = projects.names()
        merged = {m: name[p] for m, p in project_of.items()}
        if len(set(merged.values())) < 2 <= len(set(project_of.values())):
            raise ValueError(
                "--split-by project: every project shares exposures with the others, so no "
                "project can be validated on without training on its data; use --split-by "
                "micrograph"
            )
        return split_projects(merged, val_fraction, seed)
    raise ValueError(f"unknown --split-by {by!r}; known: {', '.join(SPLIT_BY)}")
