"""Thumbnails of readable micrographs with their particles drawn by curation stage (rejected
in red), cached by the micrograph's path, size and mtime and by the particles drawn."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd

from cryoglean.report.svg import STAGE_COLORS
from harvest.conventions import STAGES

#: Longest side of a thumbnail (px): a page of 12 loads in well under a second.
THUMB_SIDE = 384

#: Drawing order: less curated first, so the most curated circles are on top; rejected last.
DRAW_ORDER = [s for s in STAGES if s != "rejected2d"] + ["rejected2d"]


def _rgb(hex_color: str) -> tuple[int, int, int]:
    h = hex_color.lstrip("#")
    return tuple(int(h[i:i + 2], 16) for i in (0, 2, 4))


def cache_key(path: str, particles: str, radius: float) -> str | None:
    """Key of a thumbnail: path, size, mtime_ns of the file, the particles drawn (``particles``:
    a text that changes when they do, :func:`cryoglean.report.facts.particle_digests`) and the
    drawing's radius; None when the file cannot be read (gone, archived)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    text = f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{particles}\0{radius:.2f}\0{THUMB_SIDE}"
    return hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()[:20]


def make_thumbnail(path: str, particles: pd.DataFrame, radius: float, dest: Path) -> None:
    """Write ``dest`` (JPEG, ~30 kB where a PNG of noisy micrograph pixels is ~300 kB): the
    micrograph shrunk to :data:`THUMB_SIDE` with one circle per
    particle in its stage's colour (``particles``: DataFrame[stage, x, y], px of the file)."""
    import cv2

    from converters.images import to_uint8
    from harvest.imageio import read_micrograph
    from trainers.plots import banner, draw_circles, shrink

    small, f = shrink(read_micrograph(path).image, THUMB_SIDE)
    rgb = np.repeat(to_uint8(small)[:, :, None], 3, axis=2)
    for stage in DRAW_ORDER:
        sel = particles[particles["stage"] == stage]
        if len(sel):
            draw_circles(rgb, sel[["x", "y"]].to_numpy(), radius,
                         _rgb(STAGE_COLORS.get(stage, "#ffffff")), f)
    if not len(particles):
        banner(rgb, "no particles")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp.jpg")
    if not cv2.imwrite(str(tmp), rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85]):
        raise OSError(f"{dest}: could not write the thumbnail")
    os.replace(tmp, dest)
