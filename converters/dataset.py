"""An export opened by its ``manifest.json``: the hand-off from ``cryoglean export`` to the
trainers.

The manifest knows the format, the split of every micrograph, its stem and key, the exported
image and its size, the scale from the original micrograph and the particle diameter in px of
the exported image. :func:`open_export` reads it once; the trainers take everything from here
and guess nothing from folder names.

Coordinates of :meth:`ExportDataset.labels` are px of the exported image (DESIGN.md frame:
x = column, y = row, origin at the first stored pixel), exactly as the label files hold them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from converters import manifest as _manifest
from converters.layout import SPLITS, side_information

MICROGRAPH_COLUMNS = (
    "stem", "split", "key", "image", "source", "nx", "ny", "out_nx", "out_ny", "scale_x",
    "scale_y", "pixel_size", "diameter_px",
)


def is_export(path: str | os.PathLike) -> bool:
    """True when ``path`` is an export directory (holds a manifest) or its manifest file."""
    p = Path(path)
    return (p / _manifest.MANIFEST_NAME).is_file() or (
        p.name == _manifest.MANIFEST_NAME and p.is_file()
    )


@dataclass
class ExportDataset:
    """One export: its root, manifest, format and micrographs (see :meth:`micrographs`)."""

    root: Path
    manifest: dict

    @property
    def format(self) -> str:
        return str(self.manifest["format"])

    @property
    def dims(self) -> int:
        """2 for micrographs, 3 when the export holds tomograms (picks with z)."""
        from converters import registry

        spec = registry.get(self.format)
        if "2d" not in spec.capabilities:
            return 3
        return 3 if any(m.get("nz") for m in self.manifest.get("micrographs", [])) else 2

    @property
    def diameter_px(self) -> float | None:
        """Median particle diameter in px of the exported images (None when unknown)."""
        d = self.micrographs()["diameter_px"].to_numpy(float)
        d = d[np.isfinite(d)]
        return float(np.median(d)) if d.size else None

    def micrographs(self, split: str | None = None) -> pd.DataFrame:
        """One row per exported micrograph: ``stem``, ``split`` (``train``/``val``), ``key``,
        ``image`` (absolute path of the exported image, or of the original micrograph when the
        export wrote no images; None when neither exists), ``source`` (the original micrograph),
        ``nx, ny`` (original px), ``out_nx, out_ny`` (exported px), ``scale_x, scale_y``
        (exported/original), ``pixel_size`` (Å per original px), ``diameter_px`` (exported px)."""
        rows = []
        for m in self.manifest.get("micrographs", []):
            if split is not None and m.get("split") != split:
                continue
            image = self._image_path(m)
            rows.append({
                "stem": m["stem"], "split": m.get("split"), "key": m.get("key", m["stem"]),
                "image": image, "source": m.get("path"),
                "nx": m.get("nx"), "ny": m.get("ny"), "out_nx": m.get("out_nx"),
                "out_ny": m.get("out_ny"), "scale_x": m.get("scale_x", 1.0),
                "scale_y": m.get("scale_y", 1.0), "pixel_size": m.get("pixel_size"),
                "diameter_px": m.get("diameter_px"),
            })
        df = pd.DataFrame(rows, columns=list(MICROGRAPH_COLUMNS))
        for c in ("scale_x", "scale_y", "pixel_size", "diameter_px"):
            df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
        return df

    def labels(self, split: str | None = None, negatives: bool = False) -> pd.DataFrame:
        """Labels read back through the format registry: ``stem, split, x, y`` (+ the format's
        optional ``score, diameter, class_id, z``), px of the exported images.

        Read from where the format's layout puts them, with the side information its reader
        needs (``READ_NEEDS``, e.g. image sizes) taken from the manifest. ``negatives=True``
        reads the negatives (the negative class's rows where the layout makes them a class).
        ``split``: ``train``, ``val`` or None for both."""
        from converters import registry
        from converters.formats._common import mic_stem

        spec = registry.get(self.format).flavoured(self.manifest.get("flavour"))
        lay = spec.layout
        mics = self.micrographs()
        opts = {need: side_information(need, mics) for need in sorted(spec.read_needs)}
        frames = []
        for s in ([split] if split else list(SPLITS)):
            dest = self.root / lay.label_path(s, negative=negatives)
            if not dest.exists():
                continue
            try:
                df = registry.read_picks(dest, spec.name, **opts)
            except FileNotFoundError:
                continue  # a split without micrographs
            if lay.negative_class is not None and "class_id" in df.columns:
                df = df[(df["class_id"] == lay.negative_class) == negatives]
            df = df.assign(stem=[mic_stem(m) for m in df["micrograph"].astype(str)], split=s)
            frames.append(df)
        if not frames:
            return pd.DataFrame(columns=["stem", "split", "x", "y"])
        return pd.concat(frames, ignore_index=True)

    def _image_path(self, m: dict) -> str | None:
        rel = m.get("image")
        if rel:
            p = self.root / rel
            return str(p) if p.exists() else None
        src = m.get("path")
        if src and os.path.exists(src) and float(m.get("scale_x", 1.0)) == 1.0:
            return str(src)
        return None


def read_labels(out_dir: str | os.PathLike, split: str | None = None,
                negatives: bool = False) -> pd.DataFrame:
    """Labels of the export at ``out_dir`` (:meth:`ExportDataset.labels`): DataFrame[stem,
    split, x, y, ...] in pixels of the exported images (as written; the format's integer
    rounding included), with the format's optional columns (score, diameter, class_id, z)."""
    return open_export(out_dir).labels(split=split, negatives=negatives)


def open_export(path: str | os.PathLike) -> ExportDataset:
    """The export at ``path`` (its directory or its ``manifest.json``); FileNotFoundError with
    a one-line hint when there is no manifest."""
    p = Path(path)
    if p.name == _manifest.MANIFEST_NAME and p.is_file():
        p = p.parent
    return ExportDataset(root=p.resolve(), manifest=_manifest.read_manifest(p))
