"""Shared fates: what every package records about each true particle and junk item.

One :class:`Scenario` per facility decides, for every item of the ground truth, whether it is
picked (and where), extracted, which 2D class it lands in, whether Select 2D keeps it, and which
3D class it gets. The CryoSPARC and RELION writers both read it, so the same true particles
appear in every package's coordinates and the harvester's outputs can be checked against one
truth.

Fates (one row per item in :attr:`Scenario.items`, pixels of the item's micrograph):

==================  ========================================================================
``auto``            blob/auto picker picks it: every particle and most junk items (p = 0.8)
``auto_x/y``        the pick: truth + error with \\|error\\| per axis in [0.3, 0.9] px, random sign
``auto_score``      pick score: particles 0.35–0.95, junk 0.15–0.6
``manual``          manual picker picks it: ~30 % of the particles (at least one per micrograph)
``manual_x/y``      the manual pick: truth + error in [−0.5, 0.5] px per axis
``extracted``       auto pick whose extraction box (``FacilityConfig.box_px``) fits the micrograph
``class2d``         2D class (0-based) of extracted items: particles in classes
                    0..``N_PARTICLE_CLASSES_2D``−1, junk by kind in the classes after those
``selected``        Select 2D keeps it (extracted particles) → selected2d and refined
``rejected``        Select 2D leaves it out (extracted junk) → rejected2d
``class3d``         3D class (0 or 1) of selected particles, −1 otherwise
``uid``             CryoSPARC particle uid (random uint64, unique)
==================  ========================================================================

Refinement shifts are not stored here: each writer derives them from the coordinates it stored
(after its own rounding) so that the recentred centre equals the truth to < 0.01 px.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from harvest.synth.config import FacilityConfig
from harvest.synth.micrographs import SimMicrograph

N_PARTICLE_CLASSES_2D = 5
JUNK_CLASS_2D = {"ice": 5, "aggregate": 6, "carbon_edge": 7}
N_CLASSES_2D = 8
N_CLASSES_3D = 2

# Named selections of items (the "selector" of an expected set).
SELECTIONS = ("manual", "auto", "extracted", "selected", "rejected", "class3d_0", "class3d_1")


@dataclass
class Scenario:
    """The fates of all items (see module docstring) and the micrograph-level ids."""

    items: pd.DataFrame
    exposure_uids: dict[str, int]  # micrograph key -> CryoSPARC exposure uid
    box_px: int  # extraction box in micrograph pixels (binned by 2 on extraction)

    def select(self, selection: str) -> pd.DataFrame:
        """Rows of :attr:`items` in a named selection (:data:`SELECTIONS`)."""
        it = self.items
        if selection in ("manual", "auto", "extracted", "selected", "rejected"):
            return it[it[selection]]
        if selection.startswith("class3d_"):
            return it[it["class3d"] == int(selection.split("_")[1])]
        raise ValueError(f"unknown selection {selection!r}; known: {', '.join(SELECTIONS)}")


def _signed_error(rng: np.random.Generator, n: int, low: float, high: float) -> np.ndarray:
    return rng.uniform(low, high, size=n) * rng.choice([-1.0, 1.0], size=n)


def _unique_uids(rng: np.random.Generator, n: int) -> np.ndarray:
    """n distinct random uint64 values (CryoSPARC uids span the whole uint64 range)."""
    while True:
        uids = rng.integers(0, 2**64 - 1, size=n, dtype=np.uint64, endpoint=True)
        if len(np.unique(uids)) == n:
            return uids


def make_scenario(
    config: FacilityConfig, micrographs: list[SimMicrograph], rng: np.random.Generator
) -> Scenario:
    """Decide every item's fate. Deterministic for a given ``rng`` state."""
    rows = []
    for m_index, mic in enumerate(micrographs):
        for i, (x, y) in enumerate(mic.particles):
            rows.append((mic.key, m_index, "particle", i, x, y, ""))
        for i, ((x, y), kind) in enumerate(zip(mic.junk, mic.junk_kinds)):
            rows.append((mic.key, m_index, "junk", i, x, y, kind))
    it = pd.DataFrame(
        rows, columns=["micrograph", "mic_index", "kind", "index", "x", "y", "junk_kind"]
    )
    n = len(it)
    is_particle = (it["kind"] == "particle").to_numpy()

    it["uid"] = _unique_uids(rng, n)
    it["auto"] = is_particle | (rng.uniform(size=n) < 0.8)
    it["auto_x"] = it["x"] + _signed_error(rng, n, 0.3, 0.9)
    it["auto_y"] = it["y"] + _signed_error(rng, n, 0.3, 0.9)
    it["auto_score"] = np.where(
        is_particle, rng.uniform(0.35, 0.95, size=n), rng.uniform(0.15, 0.6, size=n)
    )

    manual = is_particle & (rng.uniform(size=n) < 0.3)
    for m_index in range(len(micrographs)):  # at least one manual pick per micrograph
        on_mic = is_particle & (it["mic_index"].to_numpy() == m_index)
        if on_mic.any() and not manual[on_mic].any():
            manual[np.flatnonzero(on_mic)[0]] = True
    it["manual"] = manual
    it["manual_x"] = it["x"] + rng.uniform(-0.5, 0.5, size=n)
    it["manual_y"] = it["y"] + rng.uniform(-0.5, 0.5, size=n)

    half = config.box_px / 2.0
    nx = np.array([micrographs[i].nx for i in it["mic_index"]]) if n else np.zeros(0)
    ny = np.array([micrographs[i].ny for i in it["mic_index"]]) if n else np.zeros(0)
    fits = (
        (it["auto_x"] - half >= 0)
        & (it["auto_x"] + half <= nx)
        & (it["auto_y"] - half >= 0)
        & (it["auto_y"] + half <= ny)
    )
    it["extracted"] = it["auto"] & fits

    junk_class = it["junk_kind"].map(JUNK_CLASS_2D).fillna(-1).astype(int).to_numpy()
    class2d = np.where(is_particle, rng.integers(0, N_PARTICLE_CLASSES_2D, size=n), junk_class)
    it["class2d"] = np.where(it["extracted"], class2d, -1)
    it["selected"] = it["extracted"] & is_particle
    it["rejected"] = it["extracted"] & ~is_particle
    it["class3d"] = np.where(it["selected"], rng.integers(0, N_CLASSES_3D, size=n), -1)

    exposure_uids = {
        mic.key: int(u) for mic, u in zip(micrographs, _unique_uids(rng, len(micrographs)))
    }
    return Scenario(items=it, exposure_uids=exposure_uids, box_px=config.box_px)
