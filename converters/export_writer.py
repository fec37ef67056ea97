"""The writing half of an export: images, labels, negatives and side files put where the format's
layout (``registry.get(fmt).layout``, :mod:`converters.layout`) says. :func:`converters.export.export`
selects and scales; :class:`ExportWriter` writes into the export's temporary directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from converters import images
from converters.layout import SideFiles, describe, side_information
from converters.split import TRAIN, VAL


class ExportError(ValueError):
    """Options that cannot produce the export (the message says what to change)."""


class ExportWriter:
    """Writes images, labels and side files where the format's layout says (``spec.layout``)."""

    def __init__(self, spec, tmp: Path, final: Path, mode: str):
        self.spec, self.layout, self.tmp, self.final, self.mode = (
            spec, spec.layout, tmp, final, mode)
        self.negatives_as = None
        self.side_files: list[Path] = []

    @property
    def native(self) -> bool:
        return self.layout.native

    # images -------------------------------------------------------------------------------
    def image_dir(self, split: str) -> Path:
        return self.layout.image_dir(split)

    def image_jobs(self, table: pd.DataFrame, img: dict):
        ext = images.image_extension(self.mode)
        jobs, rel = [], {}
        for r in table.itertuples():
            if self.mode == "none" or (
                    self.mode == "link" and not os.path.isfile(str(r.abs_path))):
                rel[r.mic] = None  # labels only (link: the micrograph is gone)
                continue
            rel_path = self.image_dir(r.split) / f"{r.stem}{ext}"
            rel[r.mic] = rel_path
            jobs.append(
                images.ImageJob(
                    src=str(r.abs_path), dest=str(self.tmp / rel_path), mode=self.mode,
                    shape=(int(r.out_ny), int(r.out_nx)), final_dest=str(self.final / rel_path),
                    normalize=img["normalize"], equalize=img["equalize"],
                    pixel_size=None if pd.isna(r.pixel_size) else float(r.pixel_size),
                )
            )
        return jobs, rel

    # labels -------------------------------------------------------------------------------
    def write_labels(self, registry, table, pos, neg, image_path) -> list[Path]:
        files: list[Path] = []
        with_neg = len(neg) > 0
        as_class = self.layout.negative_class
        image_ext = images.image_extension(self.mode) or ".mrc"
        for split in (TRAIN, VAL):
            mics = table[table["split"] == split]
            if mics.empty and not self.native:
                continue
            p = pos[pos["split"] == split]
            n = neg[neg["split"] == split] if with_neg else neg
            if as_class is not None and with_neg:
                p = pd.concat([p, n.assign(class_id=as_class)], ignore_index=True)
                n = n.iloc[:0]
            files += self._write_one(registry, mics, p, self.layout.label_path(split), image_ext)
            if with_neg and as_class is None:
                files += self._write_one(
                    registry, mics, n, self.layout.label_path(split, True), image_ext
                )
        if with_neg:
            self.negatives_as = self.layout.negatives_place()
        files += self._write_side_files(table, image_path, with_neg)
        return files

    def _picks_frame(self, picks, image_ext) -> pd.DataFrame:
        stem = picks["stem"]
        suffix = image_ext if (self.spec.writes_table
                               and self.layout.micrograph_name == "file") else ""
        if isinstance(stem.dtype, pd.CategoricalDtype):  # one string per micrograph, not pick
            names = np.asarray([f"{c}{suffix}" for c in stem.cat.categories], dtype=object)
            name = names[stem.cat.codes.to_numpy()] if len(names) else np.zeros(0, object)
        else:
            name = (stem.astype(str) + suffix).to_numpy()
        frame = pd.DataFrame(
            {"micrograph": name, "x": picks["x"].to_numpy(float),
             "y": picks["y"].to_numpy(float)}
        )
        if picks["score"].notna().any():
            frame["score"] = picks["score"].fillna(0.0).to_numpy(float)
        if picks["diameter"].notna().all():  # (also for an empty frame: a box-size column)
            frame["diameter"] = picks["diameter"].to_numpy(float)
        frame["class_id"] = pd.to_numeric(picks["class_id"]).astype(np.int64).to_numpy()
        z = picks["z"].to_numpy(float) if "z" in picks.columns else np.full(len(picks), np.nan)
        if len(picks) and np.isfinite(z).all() and "3d" in self.spec.capabilities:
            frame["z"] = z  # tomograms: voxels of the (linked) tomogram
        elif "3d" in self.spec.capabilities and "2d" not in self.spec.capabilities:
            frame["z"] = 0.0  # a 3D-only format from 2D micrographs: z = 0
        return frame

    def _write_one(self, registry, mics, picks, rel_dest: Path, image_ext) -> list[Path]:
        frame = self._picks_frame(picks, image_ext)
        dest = self.tmp / rel_dest
        opts = self._side_information(mics)
        if self.spec.writes_table:
            dest.parent.mkdir(parents=True, exist_ok=True)  # an empty table: header only
        else:
            dest.mkdir(parents=True, exist_ok=True)
            opts["micrographs"] = list(mics["stem"].astype(str))
        written = self.spec.write(frame, dest, **opts)  # in the export's flavour
        return [Path(p) for p in written]

    def _side_information(self, mics) -> dict:
        """What the writer needs besides the picks (``WRITE_NEEDS``), for every micrograph."""
        opts: dict = {}
        for need in sorted(self.spec.write_needs):
            values = side_information(need, _exported(mics))
            missing = sorted(set(mics["stem"].astype(str)) - set(values))
            if missing:
                shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
                raise ExportError(
                    f"{self.spec.name} labels need {describe(need)} of every micrograph; the "
                    f"catalog has none for {len(missing)} ({shown}); choose another format"
                )
            opts[need] = values
        return opts

    def _write_side_files(self, table, image_path, with_neg) -> list[Path]:
        """Image lists and the format's own side files (absolute paths of the final location,
        as PartiNet writes them)."""
        mics = _exported(table).assign(image=[
            str(self.final / image_path[m]) if image_path[m] else str(src)
            for m, src in zip(table["mic"], table["abs_path"])
        ])
        out: list[Path] = []
        for lst in self.layout.image_lists:
            if lst.needs_images and self.mode == "none":
                continue
            writer = self.spec.function(lst.writer)
            for split in (TRAIN, VAL):
                rows = mics[mics["split"] == split]
                if rows.empty and not lst.every_split:
                    continue
                dest = self.tmp / self.layout.path(lst.path, split)
                dest.parent.mkdir(parents=True, exist_ok=True)
                out.append(writer(dict(zip(rows["stem"].astype(str), rows["image"])), dest))
        if self.layout.side_files:
            names = self.layout.class_names
            classes = names[:2] if with_neg and self.layout.negative_class is not None else names[:1]
            ctx = SideFiles(tmp=self.tmp, final=self.final, layout=self.layout,
                            micrographs=mics, class_names=tuple(classes))
            out += self.spec.function(self.layout.side_files)(ctx)
        self.side_files = [Path(p) for p in out]
        return self.side_files


def _exported(table: pd.DataFrame) -> pd.DataFrame:
    """The export's micrograph table as the layout hooks and side information see it: ``stem``,
    ``split``, ``out_nx``, ``out_ny``, ``pixel_size``, ``scale_x``, ``diameter_px`` (exported
    px)."""
    return pd.DataFrame({
        "stem": table["stem"].astype(str).to_numpy(), "split": table["split"].to_numpy(),
        "out_nx": table["out_nx"].to_numpy(), "out_ny": table["out_ny"].to_numpy(),
        "pixel_size": pd.to_numeric(table["pixel_size"], errors="coerce").to_numpy(float),
        "scale_x": table["scale_x"].to_numpy(float),
        "diameter_px": (pd.to_numeric(table["diameter_px"], errors="coerce")
                        * table["scale_x"]).to_numpy(float),
    })
