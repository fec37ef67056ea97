"""Tomograms as cet_pick reads them (``utils/loader.py`` ``load_rec`` + ``preprocess``).

Frames. A tomogram file's ``mrcfile`` array has axes (0, 1, 2) = (section, row, column), the
DESIGN frame's (z, y, x). cet_pick turns it into a *loaded volume* (D, H, W) that it slices
along D; ``--order`` says which file axis becomes which:

=======  ===========================  ==========================================
order    loaded (D, H, W) = file axes  for
=======  ===========================  ==========================================
xzy      (1, 0, 2)                    IMOD tomograms not rotated (Y is the section
                                      axis, the default of cet_pick)
zxy      (0, 1, 2)                    rotated tomograms (RELION 5, ``trimvol -rx``)
xyz      (2, 0, 1)                    as cet_pick's loader does it
=======  ===========================  ==========================================

Coordinates in cet_pick's tables (``image_name x y z``) are voxels of the loaded volume:
x = W index, y = H index, z = D index (before ``--compress``). :func:`file_to_loaded` and
:func:`loaded_to_file` convert them to and from the DESIGN frame of the file.

Intensities: ``--compress`` takes the maximum of each pair of D slices (ceil(D/2) slices);
then the volume is z-scored, an optional Gaussian ``--gauss σ`` applied (after which it is
z-scored again), clipped to [−2.5, 2] σ ([−3, 3] with ``--gauss``), quantised to 8 bits and
scaled to [0, 1], as cet_pick's ``preprocess`` does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ORDERS = ("xzy", "xyz", "zxy")
# loaded axis k (D, H, W) = file axis AXES[order][k]
AXES = {"xzy": (1, 0, 2), "zxy": (0, 1, 2), "xyz": (2, 0, 1)}


class VolumeError(ValueError):
    """A tomogram or an option about its axes that cannot be used."""


def _axes(order: str) -> tuple[int, int, int]:
    if order not in AXES:
        raise VolumeError(f"--order {order!r}: choose one of {', '.join(ORDERS)}")
    return AXES[order]


def file_to_loaded(xyz: np.ndarray, order: str) -> np.ndarray:
    """(n, 3) DESIGN-frame (x, y, z) of the file → (x, y, z) of the loaded volume."""
    ax = _axes(order)
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    # file axis a is DESIGN coordinate column (2 - a): axis 0 = z, 1 = y, 2 = x
    by_axis = xyz[:, [2, 1, 0]]
    d, h, w = (by_axis[:, a] for a in ax)
    return np.stack([w, h, d], axis=1)


def loaded_to_file(xyz: np.ndarray, order: str) -> np.ndarray:
    """(n, 3) (x, y, z) of the loaded volume → DESIGN-frame (x, y, z) of the file."""
    ax = _axes(order)
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    by_axis = np.empty_like(xyz)
    for k, col in zip(ax, (2, 1, 0)):  # loaded D, H, W are columns z, y, x
        by_axis[:, k] = xyz[:, col]
    return by_axis[:, [2, 1, 0]]


def file_shape_to_loaded(shape: tuple[int, int, int], order: str) -> tuple[int, int, int]:
    ax = _axes(order)
    return tuple(int(shape[a]) for a in ax)


def read_rec(path: str | Path) -> np.ndarray:
    import mrcfile

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: tomogram not found (check rec_path in the image list)")
    with mrcfile.open(path, permissive=True) as mrc:
        data = np.asarray(mrc.data)
    if data.ndim != 3:
        raise VolumeError(f"{path}: expected a 3-D tomogram, found an array of shape "
                          f"{data.shape}")
    return data


def compress_slices(vol: np.ndarray) -> np.ndarray:
    """Maximum of each pair of D slices (the last one alone when D is odd)."""
    d = vol.shape[0]
    pad = d % 2
    if pad:
        vol = np.concatenate([vol, vol[-1:]], axis=0)
    return vol.reshape(-1, 2, *vol.shape[1:]).max(axis=1)


def quantize(vol: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Clip to [lo, hi], 8-bit levels, then min–max to [0, 1] (cet_pick ``quantize``)."""
    q = np.round(np.clip(255 * (vol - lo) / (hi - lo), 0, 255))
    span = q.max() - q.min()
    return ((q - q.min()) / (span if span > 0 else 1)).astype(np.float32)


def normalise(vol: np.ndarray, gauss: float = 0.0) -> np.ndarray:
    vol = vol.astype(np.float32)
    vol = (vol - vol.mean()) / (vol.std() + 1e-8)
    if gauss and gauss > 0:
        from scipy.ndimage import gaussian_filter

        vol = gaussian_filter(vol, sigma=gauss)
        vol = (vol - vol.mean()) / (vol.std() + 1e-8)
        return quantize(vol, -3.0, 3.0)
    return quantize(vol, -2.5, 2.0)


def load_volume(path: str | Path, order: str = "xzy", compress: bool = False,
                gauss: float = 0.0) -> tuple[np.ndarray, tuple[int, int, int]]:
    """(loaded volume (D', H, W) float32 in [0, 1], file shape (nz, ny, nx))."""
    data = read_rec(path)
    vol = np.transpose(data, _axes(order))
    if compress:
        vol = compress_slices(vol)
    return normalise(vol, gauss), tuple(int(s) for s in data.shape)


def read_image_list(path: str | Path) -> dict[str, Path]:
    """cet_pick's image list (``image_name<TAB>rec_path``) → {name: path}; relative paths are
    taken from the list's folder when they are not found from the working directory."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image list not found")
    table = pd.read_csv(path, sep="\t", dtype=str)
    if not {"image_name", "rec_path"} <= set(table.columns):
        raise VolumeError(f"{path}: an image list needs the header 'image_name<TAB>rec_path' "
                          "(cryoglean tomo-files writes one)")
    out = {}
    for name, rec in zip(table["image_name"], table["rec_path"]):
        p = Path(str(rec))
        if not p.is_absolute() and not p.exists():
            p = path.parent / p
        out[str(name)] = p
    if not out:
        raise VolumeError(f"{path}: the image list names no tomogram")
    return out


def read_coords(path: str | Path) -> dict[str, np.ndarray]:
    """cet_pick's coordinate table (``image_name x_coord y_coord z_coord``, loaded-volume
    voxels) through the registry's reader → {name: (n, 3) x, y, z}."""
    from trainers.labels import read_labels

    df = read_labels(path, _coord_format())
    out: dict[str, np.ndarray] = {}
    for name, g in df.groupby("micrograph", sort=False):
        out[str(name)] = g[["x", "y", "z"]].to_numpy(np.float64)
    return out


def _coord_format() -> str:
    """The registry's format for cet_pick coordinate tables: the 3D table format whose
    image lists the export writes (found by capability, not by name)."""
    from converters import registry

    for name in registry.names(3):
        spec = registry.get(name)
        if {"3d", "table", "read", "write"} <= spec.capabilities and any(
            il.writer == "write_image_list" for il in getattr(spec.layout, "image_lists", ())
        ):
            return name
    raise VolumeError("the format registry lists no cet_pick-style coordinate table")
