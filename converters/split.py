"""Train/validation splits of exported micrographs, deterministic for a seed.

``by micrograph``: micrographs are sorted by their identifier, shuffled with
``numpy.random.default_rng(seed)`` and the first ``round(val_fraction * n)`` go to validation
(at least one on each side when there are two or more micrographs and ``0 < val_fraction < 1``).

``by project``: whole projects go to validation (a general model is validated on projects it
never saw); ``round(val_fraction * n_projects)`` projects, at least one, at least one left for
training. Needs two or more projects.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping

import numpy as np

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


def assign_splits(
    project_of: Mapping[Hashable, Hashable],
    by: str = "micrograph",
    val_fraction: float = 0.2,
    seed: int = 0,
) -> dict:
    """Split dispatcher for the export: ``by`` is ``micrograph`` or ``project``."""
    if by == "micrograph":
        return split_micrographs(project_of.keys(), val_fraction, seed)
    if by == "project":
        return split_projects(project_of, val_fraction, seed)
    raise ValueError(f"unknown --split-by {by!r}; known: {', '.join(SPLIT_BY)}")
