"""Export selected labels (+ micrograph images) from the catalog as a picker's dataset.

Layouts (HELPERS.md "Export layout")

* ``yolo`` (PartiNet/DynamicDet): ``images/{train,val}/<stem>.png``,
  ``labels/{train,val}/<stem>.txt``, ``train.txt``/``val.txt`` (absolute image paths of the
  final location), ``cryo_training.yaml``.
* ``cryolo``: ``train_image/``, ``train_annot/``, ``valid_image/``, ``valid_annot/``,
  ``config.json`` (anchors = the particle diameter in exported pixels).
* ``topaz``: ``images/<stem>.mrc`` (all splits), ``particles_{train,val}.txt``,
  ``images_{train,val}.txt``.
* every other format: ``{train,val}/images/<stem>.<ext>`` and ``{train,val}/labels/<stem>.<label
  ext>`` (one file per micrograph; micrographs without picks get an empty file where the format
  writes per micrograph) or ``{train,val}/labels/particles.<ext>`` for table formats.

Negatives (``--negatives``): YOLO writes them as class 1 in the same label files (``nc: 2``,
names ``particle``, ``negative``); every other format writes them beside the positives in a
parallel place: ``{split}/labels_negative/``, crYOLO ``{train,valid}_annot_negative/``, Topaz
``particles_negative_{train,val}.txt``.

Images (``--images``; default per format: yolo ``png``, topaz ``mrc``, thi ``png`` at width
1024 with min–max and histogram equalisation (EPicker's view, ``--width`` smaller micrographs
are never upsampled), all others ``link``). ``--scale S`` Fourier-crops to ``int(n/S)``,
``--width W`` to width W; label coordinates are multiplied by the exact size ratio ``n'/n`` of
each micrograph (see :mod:`converters.images`). ``link`` cannot rescale. ``none`` writes labels
only (scaled as if the images had been written).

Box sizes: yolo, cryolo, box, cbox and csv labels carry a box of side = the particle diameter
(:mod:`converters.select`); where the catalog has no box size (RELION 3.0 tables) they need
``--diameter``. crYOLO's ``config.json`` anchors are the median diameter in exported pixels.

3D: cetpick (a 3D-only format) from 2D micrographs writes ``z = 0``; tomograms keep their picks'
z (voxels of the tomogram, which is linked: tomograms take ``--images link|none`` only). copick
stores Å with ``voxel_spacing`` = the exported pixel size.

The whole export is built in a temporary directory beside ``OUT`` and renamed into place at the
end (:mod:`converters.atomic`); an existing ``OUT`` is replaced only with ``force``, and only if
it is a cryoglean export (has ``manifest.json``) or empty.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from converters import atomic, images, manifest
from converters.select import Selection, SelectionOptions, select_labels
from converters.split import TRAIN, VAL, assign_splits

log = logging.getLogger(__name__)

NATIVE_LAYOUTS = ("yolo", "cryolo", "topaz")
CLASS_NEGATIVE_FORMATS = ("yolo",)
NEEDS_DIAMETER = ("yolo", "cryolo", "box", "cbox", "csv")  # label files hold a box size  # formats that carry negatives as class 1
# Image defaults per format (anything not listed: link the MRC files).
FORMAT_IMAGE_DEFAULTS: dict[str, dict] = {
    "yolo": {"images": "png"},
    "topaz": {"images": "mrc"},
    "thi": {"images": "png", "width": 1024, "normalize": "minmax", "equalize": True},
}
SPLIT_NAMES = {TRAIN: "train", VAL: "val"}
CRYOLO_DIRS = {TRAIN: ("train_image", "train_annot"), VAL: ("valid_image", "valid_annot")}


class ExportError(ValueError):
    """Options that cannot produce the export (the message says what to change)."""


@dataclass
class ExportOptions:
    """Everything ``cryoglean export`` takes besides the format, catalog and output."""

    selection: SelectionOptions = field(default_factory=SelectionOptions)
    split_by: str = "micrograph"
    val_fraction: float = 0.2
    seed: int = 0
    images: str | None = None  # None: the format's default
    scale: float | None = None
    width: int | None = None
    normalize: str | None = None  # None: format default, else percentile
    equalize: bool | None = None  # None: format default
    num_workers: int = 1
    force: bool = False
    progress: bool = False
    command: dict | None = None  # the command line as given, for the manifest


@dataclass
class ExportResult:
    out_dir: Path
    format: str
    counts: dict
    manifest: dict
    label_files: list[Path]

    def summary(self) -> str:
        t, v = self.counts.get(TRAIN, {}), self.counts.get(VAL, {})
        neg = sum(c.get("negatives", 0) for c in (t, v))
        return (
            f"exported {self.format}: {t.get('micrographs', 0)} train + "
            f"{v.get('micrographs', 0)} val micrographs, "
            f"{t.get('positives', 0) + v.get('positives', 0)} particles"
            + (f", {neg} negatives" if neg else "")
            + f" -> {self.out_dir}"
        )


# ---------------------------------------------------------------------------------------------


def export(catalog_path, fmt: str, out_dir, options: ExportOptions | None = None) -> ExportResult:
    """Select labels from the catalog at ``catalog_path`` and write a ``fmt`` dataset to
    ``out_dir`` (atomically). Label coordinates are pixels of the exported images (DESIGN.md
    frame), or of the original micrographs for ``--images link|mrc|none`` without a scale."""
    from converters import registry
    from harvest.catalog import Catalog

    opts = options or ExportOptions()
    spec = registry.get(fmt)  # ValueError with suggestions for unknown names
    if "write" not in spec.capabilities:
        raise ExportError(f"format {fmt!r} cannot be written; writable: {_writable(registry)}")
    img = _image_settings(fmt, opts)
    out = atomic.check_output(out_dir, opts.force)  # fail before any work
    if out.is_dir() and any(out.iterdir()) and not (out / manifest.MANIFEST_NAME).is_file():
        raise ExportError(
            f"{out}: refusing to replace a directory that is not a cryoglean export (no "
            f"{manifest.MANIFEST_NAME}); choose another -o or remove it yourself"
        )
    catalog_path = Path(catalog_path)
    if not catalog_path.is_file():
        raise FileNotFoundError(f"{catalog_path}: no catalog; run `cryoglean crawl ... --db` first")

    with Catalog(catalog_path, readonly=True) as cat:
        sel = select_labels(cat, opts.selection)
        fingerprint = _fingerprint(cat, sel)

    for proj in sel.record.get("projects", []):  # never write into a facility project
        root = Path(os.path.abspath(proj["root"]))
        if out == root or root in out.parents:
            raise ExportError(
                f"{out}: inside project {root}; cryoglean never writes into a facility project, "
                "choose an -o outside it"
            )
    table = sel.micrographs.copy()
    table, dropped_size = _fill_sizes(table, img["images"])
    if table.empty:
        raise ExportError("no micrograph left with a readable image/size; see the warnings")
    splits = assign_splits(
        dict(zip(table["mic"], table["project_id"])), opts.split_by, opts.val_fraction, opts.seed
    )
    table["split"] = table["mic"].map(splits)
    tomo = table["is_tomogram"].fillna(False).astype(bool) if "is_tomogram" in table else None
    if tomo is not None and tomo.any() and (
        img["images"] not in ("link", "none") or img["scale"] not in (None, 1)
        or img["width"] is not None and not img["width_capped"]
    ):
        raise ExportError(
            "the selection holds tomograms: they are exported with --images link or none and "
            "without --scale/--width"
        )
    if tomo is not None and tomo.any():
        img = {**img, "width": None}
    shapes = [
        _out_shape(int(r.nx), int(r.ny), img, str(r.abs_path)) for r in table.itertuples()
    ]
    table["out_ny"] = [s[0] for s in shapes]
    table["out_nx"] = [s[1] for s in shapes]
    table["scale_x"] = table["out_nx"] / table["nx"].astype(float)
    table["scale_y"] = table["out_ny"] / table["ny"].astype(float)

    if fmt in NEEDS_DIAMETER and table["diameter_px"].isna().any():
        missing = table.loc[table["diameter_px"].isna(), "project_id"]
        projects = sorted(int(p) for p in missing.unique())
        raise ExportError(
            f"{fmt} labels need a particle size, unknown for project(s) {projects} (no box size "
            "in the catalog); pass --diameter in Å"
        )
    pos = _scaled(sel.positives, table)
    neg = _scaled(sel.negatives, table)

    with atomic.atomic_directory(out, force=opts.force) as tmp:
        layout = _Layout(fmt, spec, tmp, out, img["images"])
        jobs, image_path = layout.image_jobs(table, img)
        table["image_rel"] = [
            str(image_path[m]) if image_path[m] is not None else None for m in table["mic"]
        ]
        if layout.native and img["images"] != "none":  # a native layout has both splits
            for split in (TRAIN, VAL):
                (tmp / layout.image_dir(split)).mkdir(parents=True, exist_ok=True)
        results = images.write_images(jobs, opts.num_workers, progress=opts.progress)
        label_files = layout.write_labels(registry, table, pos, neg, image_path)
        counts = _counts(table, pos, neg)
        man = _manifest(fmt, opts, img, catalog_path, fingerprint, sel, table, counts,
                        dropped_size, results, layout)
        manifest.write_manifest(tmp, man)
    label_files = [out / Path(p).relative_to(tmp) for p in label_files]
    return ExportResult(out_dir=out, format=fmt, counts=counts, manifest=man,
                        label_files=label_files)


def _writable(registry) -> str:
    return ", ".join(n for n in registry.names() if "write" in registry.get(n).capabilities)


def _image_settings(fmt: str, opts: ExportOptions) -> dict:
    d = FORMAT_IMAGE_DEFAULTS.get(fmt, {})
    mode = opts.images or d.get("images", "link")
    if mode not in images.IMAGE_MODES:
        raise ExportError(f"unknown --images {mode!r}; known: {', '.join(images.IMAGE_MODES)}")
    if opts.scale is not None and opts.width is not None:
        raise ExportError("give either --scale or --width, not both")
    scale, width, capped = opts.scale, opts.width, False
    if scale is None and width is None and mode in ("png", "jpg", "mrc") and "width" in d:
        width, capped = d["width"], True  # the format's default view: never upsample
    if mode == "link" and (scale not in (None, 1) or width is not None):
        raise ExportError(
            "--images link cannot rescale micrographs; use --images mrc|png|jpg with --scale/--width"
        )
    normalize = opts.normalize or d.get("normalize", "percentile")
    equalize = d.get("equalize", False) if opts.equalize is None else bool(opts.equalize)
    return {"images": mode, "scale": scale, "width": width, "width_capped": capped,
            "normalize": normalize, "equalize": equalize}


def _out_shape(nx: int, ny: int, img: dict, path: str) -> tuple[int, int]:
    width = img["width"]
    if width is not None and width > nx:
        if img["width_capped"]:
            width = None  # default view of a small micrograph: keep its size
        else:
            raise ExportError(
                f"{path}: --width {width} is wider than the micrograph ({nx} px); images are "
                "only downsampled"
            )
    return images.output_shape(nx, ny, scale=img["scale"], width=width)


def _fill_sizes(table: pd.DataFrame, mode: str) -> tuple[pd.DataFrame, list[dict]]:
    """nx, ny from the MRC header where the catalog lacks them; micrographs whose image is needed
    but unreadable are dropped (and listed)."""
    dropped: list[dict] = []
    keep = []
    for i, r in enumerate(table.itertuples()):
        need_file = mode != "none"
        ok = True
        if need_file and not os.path.isfile(str(r.abs_path)):
            ok = False
            reason = "image file missing"
        elif pd.isna(r.nx) or pd.isna(r.ny):
            try:
                nx, ny = images.micrograph_shape(str(r.abs_path))
                table.iloc[i, table.columns.get_loc("nx")] = nx
                table.iloc[i, table.columns.get_loc("ny")] = ny
            except (OSError, ValueError):
                ok = False
                reason = "size unknown and image unreadable"
        if not ok:
            log.warning("dropping micrograph %s (%s): %s", r.mic, r.abs_path, reason)
            dropped.append({"micrograph": r.mic, "path": str(r.abs_path), "reason": reason})
        keep.append(ok)
    return table[np.asarray(keep, dtype=bool)].copy(), dropped


def _scaled(picks: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Picks in pixels of the exported images: ``x * nx'/nx``, ``y * ny'/ny``, diameter by the
    x ratio; with the micrograph's stem, split and exported size."""
    if picks is None or picks.empty:
        return pd.DataFrame(columns=["stem", "split", "x", "y", "score", "diameter", "class_id"])
    t = table.set_index("mic")
    picks = picks[picks["mic"].isin(t.index)]
    sx = picks["mic"].map(t["scale_x"]).to_numpy(float)
    sy = picks["mic"].map(t["scale_y"]).to_numpy(float)
    return pd.DataFrame(
        {
            "z": pd.to_numeric(picks["z"], errors="coerce").to_numpy(float)
            if "z" in picks.columns else np.nan,
            "stem": picks["mic"].map(t["stem"]).to_numpy(),
            "split": picks["mic"].map(t["split"]).to_numpy(),
            "x": picks["x"].to_numpy(float) * sx,
            "y": picks["y"].to_numpy(float) * sy,
            "score": pd.to_numeric(picks["score"], errors="coerce").to_numpy(float),
            "diameter": pd.to_numeric(picks["diameter"], errors="coerce").to_numpy(float) * sx,
            "class_id": 0,
        }
    )


def _counts(table, pos, neg) -> dict:
    out = {}
    for s in (TRAIN, VAL):
        out[s] = {
            "micrographs": int((table["split"] == s).sum()),
            "positives": int((pos["split"] == s).sum()) if len(pos) else 0,
            "negatives": int((neg["split"] == s).sum()) if len(neg) else 0,
        }
    return out


def _fingerprint(cat, sel: Selection) -> dict:
    projects = cat.projects()
    last = projects["last_crawl"].dropna().astype(str).max() if len(projects) else None
    schema = getattr(cat, "schema_version", None)
    if callable(schema):
        schema = schema()
    used = set(sel.positives["set_id"]) | set(sel.negatives["set_id"])
    sets = cat.particle_sets(set_ids=sorted(int(i) for i in used)) if used else None
    pairs = [] if sets is None else list(zip(sets["id"], sets["count"].fillna(0)))
    return {
        "fingerprint": manifest.catalog_fingerprint(schema, last, pairs),
        "schema_version": schema,
        "last_crawl": last,
        "set_ids": sorted(int(i) for i in used),
    }


# ---------------------------------------------------------------------------------------------
# Layouts
# ---------------------------------------------------------------------------------------------


class _Layout:
    """Where images and labels go for one format (see the module docstring)."""

    def __init__(self, fmt, spec, tmp: Path, final: Path, mode: str):
        self.fmt, self.spec, self.tmp, self.final, self.mode = fmt, spec, tmp, final, mode
        self.native = fmt in NATIVE_LAYOUTS
        self.table_format = "table" in spec.capabilities and "per_micrograph" not in (
            spec.capabilities
        )
        self.label_ext = spec.extensions[0] if spec.extensions else ""
        self.negatives_as = None

    # images -------------------------------------------------------------------------------
    def image_dir(self, split: str) -> Path:
        if self.fmt == "yolo":
            return Path("images") / split
        if self.fmt == "cryolo":
            return Path(CRYOLO_DIRS[split][0])
        if self.fmt == "topaz":
            return Path("images")
        return Path(split) / "images"

    def image_jobs(self, table: pd.DataFrame, img: dict):
        ext = images.image_extension(self.mode)
        jobs, rel = [], {}
        for r in table.itertuples():
            if self.mode == "none":
                rel[r.mic] = None
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
    def label_dest(self, split: str, negative: bool = False) -> Path:
        neg = "_negative" if negative else ""
        if self.fmt == "yolo":
            return Path("labels") / split
        if self.fmt == "cryolo":
            return Path(CRYOLO_DIRS[split][1] + neg)
        if self.fmt == "topaz":
            return Path(f"particles{neg}_{split}{self.label_ext or '.txt'}")
        base = Path(split) / f"labels{neg}"
        if self.table_format:
            return base / f"particles{self.label_ext}"
        return base

    def negatives_place(self) -> str:
        """Where negatives go (for the manifest), both splits in one string."""
        if self.fmt == "cryolo":
            return "train_annot_negative, valid_annot_negative"
        if self.fmt == "topaz":
            return f"particles_negative_{{split}}{self.label_ext or '.txt'}"
        return str(Path("{split}") / self.label_dest(TRAIN, True).relative_to(TRAIN))

    def write_labels(self, registry, table, pos, neg, image_path) -> list[Path]:
        files: list[Path] = []
        with_neg = len(neg) > 0
        image_ext = images.image_extension(self.mode) or ".mrc"
        for split in (TRAIN, VAL):
            mics = table[table["split"] == split]
            if mics.empty and self.fmt not in NATIVE_LAYOUTS:
                continue
            p = pos[pos["split"] == split]
            n = neg[neg["split"] == split] if with_neg else neg
            if self.fmt in CLASS_NEGATIVE_FORMATS and with_neg:
                p = pd.concat([p, n.assign(class_id=1)], ignore_index=True)
                self.negatives_as = "class 1"
                n = n.iloc[:0]
            files += self._write_one(registry, mics, p, self.label_dest(split), image_ext)
            if with_neg and self.fmt not in CLASS_NEGATIVE_FORMATS:
                self.negatives_as = self.negatives_place()
                files += self._write_one(
                    registry, mics, n, self.label_dest(split, True), image_ext
                )
        files += self._write_extras(table, image_path, with_neg)
        return files

    def _picks_frame(self, mics, picks, image_ext) -> pd.DataFrame:
        name = picks["stem"].astype(str)
        if self.table_format or self.fmt == "topaz":
            name = name if self.fmt == "topaz" else name + image_ext
        frame = pd.DataFrame(
            {"micrograph": name.to_numpy(), "x": picks["x"].to_numpy(float),
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
            frame["z"] = 0.0  # a 3D-only format (cet_pick) from 2D micrographs: z = 0
        return frame

    def _write_one(self, registry, mics, picks, rel_dest: Path, image_ext) -> list[Path]:
        frame = self._picks_frame(mics, picks, image_ext)
        dest = self.tmp / rel_dest
        opts = self._writer_options(mics)
        if self.table_format or self.fmt == "topaz":
            dest.parent.mkdir(parents=True, exist_ok=True)
        else:
            dest.mkdir(parents=True, exist_ok=True)
            opts["micrographs"] = list(mics["stem"].astype(str))
        if frame.empty and (self.table_format or self.fmt == "topaz"):
            # an empty table is still a valid (header-only) file
            pass
        if self.fmt == "copick":
            # copick stores Å: one call per exported pixel size (Å / exported px)
            spacing = (mics["pixel_size"] / mics["scale_x"]).round(6)
            if spacing.isna().any():
                raise ExportError("copick needs the micrographs' pixel size; the catalog has none")
            written = []
            for value, grp in mics.groupby(spacing):
                sub = frame[frame["micrograph"].isin(set(grp["stem"].astype(str)))]
                written += registry.write_picks(
                    sub, dest, self.fmt, voxel_spacing=float(value),
                    micrographs=list(grp["stem"].astype(str)))
            return [Path(p) for p in written]
        written = registry.write_picks(frame, dest, self.fmt, **opts)
        return [Path(p) for p in written]

    def _writer_options(self, mics) -> dict:
        opts: dict = {}
        if self.fmt == "yolo":
            opts["image_size"] = {
                str(r.stem): (int(r.out_nx), int(r.out_ny)) for r in mics.itertuples()
            }
        return opts

    def _write_extras(self, table, image_path, with_neg) -> list[Path]:
        """Image lists and configs each format reads besides its labels (absolute paths of the
        final location, as PartiNet writes them)."""
        out: list[Path] = []

        def paths(split: str) -> dict[str, str]:
            rows = table[table["split"] == split]
            return {
                str(r.stem): str(self.final / image_path[r.mic]) if image_path[r.mic]
                else str(r.abs_path)
                for r in rows.itertuples()
            }

        if self.fmt == "yolo":
            from converters.formats import yolo

            for split in (TRAIN, VAL):
                out.append(yolo.write_image_list(paths(split).values(), self.tmp / f"{split}.txt"))
            if self.negatives_as == "class 1":
                # FORMATS' write_dataset_yaml is PartiNet's single-class file; with negatives as
                # class 1 the same keys carry two classes.
                p = self.tmp / "cryo_training.yaml"
                p.write_text(
                    f"train: {self.final / 'train.txt'}\nval: {self.final / 'val.txt'}\n\n"
                    "# number of classes\nnc: 2\n\n# class names\n"
                    "names: [ 'particle', 'negative' ]\n"
                )
                out.append(p)
            else:
                out.append(yolo.write_dataset_yaml(
                    self.tmp, self.final / "train.txt", self.final / "val.txt"))
        elif self.fmt == "cryolo":
            from converters.formats import cryolo

            diam = table["diameter_px"] * table["scale_x"]
            if not diam.notna().any():
                raise ExportError("crYOLO's config needs a particle size; pass --diameter (Å)")
            out.append(cryolo.write_config(
                self.tmp / "config.json", int(round(float(np.nanmedian(diam)))),
                train_image_folder=str(self.final / "train_image"),
                train_annot_folder=str(self.final / "train_annot"),
                valid_image_folder=str(self.final / "valid_image"),
                valid_annot_folder=str(self.final / "valid_annot"),
            ))
        elif self.fmt == "topaz":
            from converters.formats import topaz

            for split in (TRAIN, VAL):
                out.append(topaz.write_image_list(paths(split), self.tmp / f"images_{split}.txt"))
        elif self.fmt == "thi" and self.mode != "none":
            from converters.formats import thi

            for split in (TRAIN, VAL):
                if (table["split"] == split).any():
                    out.append(thi.write_file_list(
                        paths(split).values(), self.tmp / split / "images.thi"))
        elif self.fmt == "cetpick":
            from converters.formats import cetpick

            for split in (TRAIN, VAL):
                if (table["split"] == split).any():
                    out.append(cetpick.write_image_list(
                        paths(split), self.tmp / split / "images.txt"))
        return [Path(p) for p in out]


def _manifest(fmt, opts, img, catalog_path, fingerprint, sel, table, counts, dropped_size,
              results, layout) -> dict:
    man = manifest.new_manifest(fmt, opts.command or _options_dict(opts))
    rec = sel.record
    man["layout"] = "native" if layout.native else "split_dirs"
    man["catalog"] = {"path": str(Path(catalog_path).resolve()), **fingerprint}
    man["selection"] = {
        k: rec.get(k) for k in ("projects", "jobs", "job_ids", "sets", "stages_per_micrograph",
                                "diameter_rule", "separation_rule", "skipped_unreadable_projects",
                                "particles_loaded")
    }
    man["selection"]["options"] = sel.record.get("options")
    man["filters"] = {
        **rec.get("filters", {}),
        "min_score": {"limit": opts.selection.min_score,
                      "dropped_particles": rec.get("dropped_by_min_score", 0)},
        "classes": {"classes": list(opts.selection.classes),
                    "dropped_particles": rec.get("dropped_by_class", 0)},
        "deduplication": {"dropped_particles": rec.get("dropped_as_duplicates", 0),
                          "rule": rec.get("separation_rule"),
                          "skipped_micrographs": rec.get("not_deduplicated_micrographs", [])},
        "images": {"dropped": len(dropped_size), "dropped_micrographs": dropped_size},
    }
    man["unknown_ctf_or_motion"] = (
        "micrographs with unknown CTF resolution or motion pass the filters"
    )
    man["counts"] = counts
    man["split"] = {"by": opts.split_by, "val_fraction": opts.val_fraction, "seed": opts.seed}
    man["images"] = {
        **{k: img[k] for k in ("images", "scale", "width", "normalize", "equalize")},
        "mode": img["images"],
        "written": results.count("write"), "linked": results.count("link"),
        "copied": results.count("copy"),
    }
    man["coordinates"] = {
        "frame": "pixels of the exported image: x = column, y = row, origin at the first "
                 "stored pixel (DESIGN.md); x' = x * out_nx / nx, y' = y * out_ny / ny",
        "flip_y": bool(opts.selection.flip_y),
        "z": "0 for 2D micrographs" if fmt == "cetpick" else None,
    }
    man["negatives"] = {"requested": bool(opts.selection.negatives),
                        "written_as": layout.negatives_as,
                        "dropped_near_positives": rec.get("negatives_dropped_near_positives", 0)}
    mics = []
    for r in table.itertuples():
        mics.append({
            "stem": r.stem, "split": r.split, "project_id": int(r.project_id), "key": r.key,
            "image": r.image_rel,
            "path": str(r.abs_path), "nx": int(r.nx), "ny": int(r.ny),
            "out_nx": int(r.out_nx), "out_ny": int(r.out_ny),
            "scale_x": float(r.scale_x), "scale_y": float(r.scale_y),
            "pixel_size": r.pixel_size, "stage": r.stage,
            "positives": int(r.n_positive), "negatives": int(r.n_negative),
            "picked_count": r.picked_count, "sparse_fraction": r.sparse_fraction,
            "diameter_A": r.diameter_A, "diameter_px": r.diameter_px * r.scale_x,
            "ctf_max_res": r.ctf_max_res, "total_motion": r.total_motion,
            "ctf_unknown": bool(pd.isna(r.ctf_max_res)),
            "motion_unknown": bool(pd.isna(r.total_motion)),
        })
    man["micrographs"] = mics
    return man


def _options_dict(opts: ExportOptions) -> dict:
    d = asdict(opts)
    d.pop("command", None)
    return d


# ---------------------------------------------------------------------------------------------
# Reading an export back
# ---------------------------------------------------------------------------------------------


def read_labels(out_dir, split: str | None = None, negatives: bool = False) -> pd.DataFrame:
    """Labels of a cryoglean export read back with the format registry.

    Returns DataFrame[stem, split, x, y, ...] in pixels of the exported images (as written; the
    format's integer rounding included), with the format's optional columns (score, diameter,
    class_id, z). ``negatives=True`` reads the negatives (class 1 rows for YOLO). ``split``:
    ``train``, ``val`` or None for both.
    """
    from converters import registry
    from converters.formats._common import mic_stem

    out = Path(out_dir)
    man = manifest.read_manifest(out)
    fmt = man["format"]
    spec = registry.get(fmt)
    layout = _Layout(fmt, spec, out, out, man["images"]["mode"])
    sizes = {m["stem"]: (m["out_nx"], m["out_ny"]) for m in man["micrographs"]}
    frames = []
    for s in ([split] if split else [TRAIN, VAL]):
        neg_here = negatives and fmt not in CLASS_NEGATIVE_FORMATS
        dest = out / layout.label_dest(s, negative=neg_here)
        if not dest.exists():
            continue
        opts = {"image_size": sizes} if fmt == "yolo" else {}
        try:
            df = registry.read_picks(dest, fmt, **opts)
        except FileNotFoundError:
            continue  # a split without micrographs
        if fmt in CLASS_NEGATIVE_FORMATS and "class_id" in df.columns:
            df = df[(df["class_id"] == 1) == negatives]
        df = df.assign(stem=[mic_stem(m) for m in df["micrograph"].astype(str)], split=s)
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["stem", "split", "x", "y"])
    return pd.concat(frames, ignore_index=True)
