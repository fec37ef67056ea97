"""Micrograph files for the trainers: the image suffixes, the folder lister and the reader.

Picker-neutral dataset code is in :mod:`trainers.core.dataset`; a picker's own preprocessing
(e.g. CenterNet's 1024-wide equalised view) lives in its folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".mrc", ".mrcs", ".png", ".jpg", ".jpeg", ".tif", ".tiff")


class DataError(ValueError):
    """A micrograph folder, image or label set cannot be used for training or picking."""


def list_micrographs(folder: str | Path) -> list[Path]:
    """Image files of a folder, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: micrograph folder not found")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(
            f"{folder}: no micrographs ({', '.join(IMAGE_SUFFIXES)}) found; point --data at the "
            "folder that holds them"
        )
    return files


def read_image(path: str | Path) -> np.ndarray:
    """2D float32 image in the DESIGN frame (row = y); a stack is averaged over its frames."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".mrc", ".mrcs"):
        import mrcfile

        with mrcfile.open(path, permissive=True) as m:
            data = np.asarray(m.data, dtype=np.float32)
    else:
        import cv2

        data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if data is None:
            raise DataError(f"{path}: cannot read this image file")
        data = data.astype(np.float32)
        if data.ndim == 3:  # colour image: average the channels
            data = data.mean(axis=2)
        return data
    if data.ndim == 3:
        data = data.mean(axis=0)
    if data.ndim != 2:
        raise DataError(f"{path}: expected a 2D micrograph or a frame stack, got shape {data.shape}")
    return data
