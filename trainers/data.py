"""Micrograph files for the trainers: the image suffixes, the folder lister and the reader.

Picker-neutral dataset code is in :mod:`trainers.core.dataset`; a picker's own preprocessing
(e.g. CenterNet's 1024-wide equalised view) lives in its folder. Reading and listing are
:mod:`harvest.imageio`'s (one reader for harvest, converters and trainers).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harvest import imageio

IMAGE_SUFFIXES = imageio.IMAGE_SUFFIXES  # the one list of readable micrograph files


class DataError(ValueError):
    """A micrograph folder, image or label set cannot be used for training or picking."""


def list_micrographs(folder: str | Path) -> list[Path]:
    """Image files of a folder, sorted by name (:func:`harvest.imageio.list_micrographs`:
    hidden files skipped, an error when the folder is missing or holds none)."""
    return imageio.list_micrographs(folder)


def read_image(path: str | Path) -> np.ndarray:
    """2D float32 image in the DESIGN frame (row = y); a stack is averaged over its frames
    (:func:`harvest.imageio.read_micrograph`)."""
    return imageio.read_micrograph(path).image
