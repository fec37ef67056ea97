"""Small generated tomograms for the tomogram-picker tests (no tests here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def blob_tomogram(shape=(32, 96, 96), n=10, radius=4.0, snr=2.0, seed=0, margin=22):
    """(volume (nz, ny, nx) float32, truth (n, 3) x, y, z in file voxels): dark balls of
    ``radius`` voxels in Gaussian noise, away from the x/y edges by ``margin``."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    pts: list[np.ndarray] = []
    for _ in range(n * 300):
        if len(pts) == n:
            break
        c = np.array([rng.uniform(margin, nx - margin), rng.uniform(margin, ny - margin),
                      rng.uniform(radius + 1, nz - radius - 1)])
        if all(np.linalg.norm(c - p) > 3 * radius for p in pts):
            pts.append(c)
    xyz = np.round(np.array(pts)).reshape(-1, 3)
    zz, yy, xx = np.mgrid[0:nz, 0:ny, 0:nx]
    sig = np.zeros(shape, np.float32)
    for x, y, z in xyz:
        sig -= np.exp(-((xx - x) ** 2 + (yy - y) ** 2 + (zz - z) ** 2) / (2 * radius ** 2))
    vol = sig + rng.normal(scale=1.0 / snr, size=shape)
    return vol.astype(np.float32), xyz


def write_mrc(path: Path, vol: np.ndarray, voxel: float = 10.0) -> Path:
    import mrcfile

    path.parent.mkdir(parents=True, exist_ok=True)
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(np.ascontiguousarray(vol, dtype=np.float32))
        m.voxel_size = voxel
    return path


def write_lists(folder: Path, names_paths: dict, coords: dict, tag="train") -> tuple[Path, Path]:
    """cet_pick's image list and coordinate table (coords: {name: (n, 3) x, y, z})."""
    folder.mkdir(parents=True, exist_ok=True)
    img = folder / f"{tag}_imgs.txt"
    img.write_text("image_name\trec_path\n" + "".join(
        f"{k}\t{v}\n" for k, v in names_paths.items()))
    crd = folder / f"{tag}_coords.txt"
    rows = [f"{k}\t{int(x)}\t{int(y)}\t{int(z)}\n" for k, c in coords.items() for x, y, z in c]
    crd.write_text("image_name\tx_coord\ty_coord\tz_coord\n" + "".join(rows))
    return img, crd
