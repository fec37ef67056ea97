"""Values a pipeline's job scripts read when they run, from what an earlier job wrote
(``cryoglean slurm value``): the pick threshold the trained run chose and the particle diameter
an export recorded. A pipeline is written before anything has run, so these cannot be numbers in
the scripts; the pick and evaluate jobs ask for them and log what they got.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from trainers.core import VAL_METRICS  # written by trainers.core.driver


class RunValueMissing(FileNotFoundError):
    """The run or export does not hold the value (one line: which file, what to do)."""


def run_threshold(run_dir: str | os.PathLike) -> tuple[float, str]:
    """The score threshold of the best validation F1 of a training run (its
    ``val_metrics.json``: ``summary.best_threshold``) and a note saying where it came from.
    :class:`RunValueMissing` when the run has no validation result or no threshold in it."""
    path = Path(run_dir) / VAL_METRICS
    try:
        summary = json.loads(path.read_text()).get("summary")
        if not isinstance(summary, dict):
            raise AttributeError
    except FileNotFoundError:
        raise RunValueMissing(
            f"{path} not found: the run has no validation result (train with validation "
            "micrographs), or give the threshold (--default, or --set threshold=X in the pipeline)"
        ) from None
    except (json.JSONDecodeError, AttributeError):
        raise RunValueMissing(f"{path} is not a validation result (JSON with 'summary'); "
                              "train the run again or give the threshold") from None
    value = summary.get("best_threshold")
    if not _finite(value):
        raise RunValueMissing(
            f"{path} has no best threshold (no picks on the validation micrographs); give the "
            "threshold (--default, or --set threshold=X in the pipeline)")
    f1 = summary.get("best_f1")
    note = f"from {path}" + (f" (validation best F1 {float(f1):.3f})" if _finite(f1) else "")
    return float(value), note


def export_diameter(export_dir: str | os.PathLike) -> tuple[float, str]:
    """The particle diameter in px of an export's images as its ``manifest.json`` records it
    (the median over its micrographs, what ``cryoglean evaluate --truth EXPORT`` uses) and a
    note. :class:`RunValueMissing` when the manifest records none."""
    from converters.dataset import open_export

    export = open_export(export_dir)
    value = export.diameter_px
    if not _finite(value):
        raise RunValueMissing(
            f"{export.root / 'manifest.json'} records no particle diameter (the catalog has "
            "none); export with --diameter, or give it (--default, --set diameter=PX)")
    return float(value), f"from {export.root / 'manifest.json'}"


READERS = {"threshold": run_threshold, "diameter": export_diameter}


def read_value(kind: str, path: str | os.PathLike,
               default: float | None = None) -> tuple[float, str]:
    """``(value, note)`` of ``kind`` (threshold: of a run folder, diameter: of an export);
    with ``default``, a missing value gives the default and a note saying why."""
    try:
        return READERS[kind](path)
    except RunValueMissing as exc:
        if default is None:
            raise
        return float(default), f"the default: {exc}"


def _finite(value) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
