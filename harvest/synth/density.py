"""A random 3D particle density made of Gaussian blobs, and its projections.

The density is a sum of isotropic 3D Gaussians (same width) inside a sphere of the particle
diameter, centred so that its amplitude-weighted centre of mass is the origin: the particle's
true centre. A projection along z of a rotated sum of isotropic Gaussians is the sum of 2D
Gaussians at the rotated centres' (x, y), so projections are analytic and cheap.

Shapes (``FacilityConfig.shape``), with R = diameter / 2:

===========  ====================================================================
globular     8 blobs uniform in a sphere of radius 0.7 R, width 0.25 R
elongated    7 blobs along a rod of length 1.5 R, width 0.22 R
ring         10 blobs on a circle of radius 0.65 R, width 0.18 R
===========  ====================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Density:
    """Blob centres (k, 3) in Å relative to the particle centre, amplitudes (k,), width in Å."""

    centres_A: np.ndarray
    amplitudes: np.ndarray
    sigma_A: float


def make_density(shape: str, diameter_A: float, rng: np.random.Generator) -> Density:
    """A random density of the given shape (see module docstring), centre of mass at 0."""
    r = diameter_A / 2.0
    if shape == "globular":
        k = 8
        direction = rng.normal(size=(k, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        radius = 0.7 * r * rng.uniform(0.0, 1.0, size=(k, 1)) ** (1.0 / 3.0)
        centres = direction * radius
        sigma = 0.25 * r
    elif shape == "elongated":
        k = 7
        along = np.linspace(-0.75 * r, 0.75 * r, k)
        centres = np.column_stack([along, np.zeros(k), np.zeros(k)])
        centres += rng.normal(scale=0.08 * r, size=(k, 3))
        sigma = 0.22 * r
    elif shape == "ring":
        k = 10
        phi = np.linspace(0.0, 2.0 * np.pi, k, endpoint=False) + rng.uniform(0, 2 * np.pi)
        centres = 0.65 * r * np.column_stack([np.cos(phi), np.sin(phi), np.zeros(k)])
        centres += rng.normal(scale=0.04 * r, size=(k, 3))
        sigma = 0.18 * r
    else:
        raise ValueError(f"unknown density shape {shape!r}; known: globular, elongated, ring")
    amplitudes = rng.uniform(0.7, 1.3, size=k)
    centres = centres - (amplitudes[:, None] * centres).sum(axis=0) / amplitudes.sum()
    return Density(centres_A=centres, amplitudes=amplitudes, sigma_A=float(sigma))


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """n rotation matrices (n, 3, 3), uniform over SO(3) (normalised Gaussian quaternions)."""
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=1,
    )


def projected_blobs(density: Density, rotations: np.ndarray) -> np.ndarray:
    """(x, y) in Å of every blob of every rotated copy, projected along z: shape (n, k, 2).

    The blobs keep the density's centre of mass at 0, so the projected centre of mass of each
    copy is its particle centre.
    """
    rotated = np.einsum("nij,kj->nki", rotations, density.centres_A)
    return rotated[..., :2]
