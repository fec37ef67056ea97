"""RELION's per-micrograph motion metadata, as the generated RELION projects write it.

``MotionCorr/jobNNN/Movies/<key>.star`` (named by ``rlnMicrographMetadata`` of
corrected_micrographs.star; [relion] ``micrograph_model.cpp`` ``Micrograph::write``):
``data_general`` with the movie size ``rlnImageSizeX/Y/Z`` and ``rlnMicrographBinning`` (the
micrograph is the movie binned by it), then ``data_global_shift``. A facility whose micrographs
are deleted keeps their sizes through these files.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harvest.starwrite import round6
from harvest.synth.micrographs import VOLTAGE_KV, SimMicrograph

MOVIE_FRAMES = 10


def motion_metadata(m: SimMicrograph, pixel_size: float) -> list:
    """STAR blocks of one micrograph's motion metadata: per-frame shifts in unbinned pixels
    along x whose path length × ``pixel_size`` (Å) is the micrograph's total motion
    (rlnAccumMotionTotal); no binning, so ``rlnImageSizeX/Y`` are the micrograph's size."""
    step = m.total_motion / pixel_size / (MOVIE_FRAMES - 1)
    frames = np.arange(1, MOVIE_FRAMES + 1)
    general = {
        "rlnImageSizeX": m.nx, "rlnImageSizeY": m.ny, "rlnImageSizeZ": MOVIE_FRAMES,
        "rlnMicrographMovieName": f"Movies/{m.key}.mrc", "rlnMicrographBinning": 1.0,
        "rlnMicrographOriginalPixelSize": pixel_size, "rlnMicrographDoseRate": 1.0,
        "rlnMicrographPreExposure": 0.0, "rlnVoltage": VOLTAGE_KV,
        "rlnMicrographStartFrame": 1, "rlnMotionModelVersion": 0,
    }
    shifts = pd.DataFrame({"rlnMicrographFrameNumber": frames,
                           "rlnMicrographShiftX": round6((frames - 1) * step),
                           "rlnMicrographShiftY": 0.0})
    return [("general", general), ("global_shift", shifts)]
