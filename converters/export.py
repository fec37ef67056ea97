"""Export selected labels (+ micrograph images) from the catalog as a picker's dataset.

Where images, labels, negatives and side files go is the format's declared layout
(:class:`converters.layout.Layout`, ``registry.get(fmt).layout``; each format module's docstring
describes its own). The generic layout is ``{train,val}/images/<stem>.<ext>`` and
``{train,val}/labels/<stem>.<label ext>`` (one file per micrograph; micrographs without picks get
an empty file where the format writes per micrograph) or ``{train,val}/labels/particles.<ext>``
for table formats; the manifest (:mod:`converters.manifest`) records what was written and
:mod:`converters.dataset` reads an export back.

Negatives (``--negatives``) go where the layout says: as a class in the positives' label files,
or in a parallel destination (``{split}/labels_negative/`` unless the format names another).

Images (``--images``; default per format from its layout's ``image_defaults``, else ``link``).
``--scale S`` Fourier-crops to ``int(n/S)``, ``--width W`` to width W; label coordinates are
multiplied by the exact size ratio ``n'/n`` of each micrograph (see :mod:`converters.images`).
A format's default ``width`` is a view that never upsamples smaller micrographs. ``link`` cannot
rescale. ``none`` writes labels only (scaled as if the images had been written). Micrographs
may be gone (:func:`_usable`, :mod:`converters.sizes`: where each size came from is recorded).

Box sizes: formats whose layout ``needs_diameter`` write a box of side = the particle diameter
(:mod:`converters.select`); where the catalog has no box size (RELION 3.0 tables) they need
``--diameter``. Side information a writer needs (``WRITE_NEEDS``: image sizes for normalised
coordinates, pixel sizes for Å) comes from the exported micrographs
(:func:`converters.layout.side_information`).

3D: a 3D-only format from 2D micrographs writes ``z = 0``; tomograms keep their picks' z (voxels
of the tomogram, which is linked: tomograms take ``--images link|none`` only).

Sparse labels (``--label-fraction F``, :mod:`converters.sparse`): training labels only inside
seeded rectangular subregions holding ≈ F of each image's particles; validation labels stay
complete; the manifest's ``label_fraction`` records the regions.

The whole export is built in a temporary directory beside ``OUT`` and renamed into place at the
end (:mod:`converters.atomic`); an existing ``OUT`` is replaced only with ``force``, and only if
it is a cryoglean export (has ``manifest.json``) or empty.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from converters import atomic, images, manifest, sizes
from converters.dataset import read_labels  # noqa: F401  (public here too: export.read_labels)
from converters.export_writer import ExportError, ExportWriter  # noqa: F401 (ExportError: API)
from converters.select import Selection, SelectionOptions, select_labels
from converters.split import TRAIN, VAL, assign_splits, exposure_groups

log = logging.getLogger(__name__)


@dataclass
class ExportOptions:
    """Everything ``cryoglean export`` takes besides the format, catalog and output."""

    selection: SelectionOptions = field(default_factory=SelectionOptions)
    split_by: str = "micrograph"
    val_fraction: float = 0.2
    seed: int = 0
    images: str | None = None  # None: the format's default
    flavour: str | None = None  # the format's writer flavour (registry); None: its default
    scale: float | None = None
    width: int | None = None
    normalize: str | None = None  # None: format default, else percentile
    equalize: bool | None = None  # None: format default
    num_workers: int = 1
    force: bool = False
    progress: bool = False
    command: dict | None = None  # the command line as given, for the manifest
    label_fraction: float | None = None  # sparse training labels (converters.sparse)


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
    spec = registry.get(fmt).flavoured(opts.flavour)  # ValueErrors with suggestions
    if "write" not in spec.capabilities:
        raise ExportError(f"format {fmt!r} cannot be written; writable: "
                          f"{', '.join(registry.names(capability='write'))}")
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
    table, dropped_size, missing_images = _usable(table, spec, img)
    # one exposure re-processed in several projects stays on one side (no train/val leakage)
    table["exposure"] = table["mic"].map(exposure_groups(table))
    splits = assign_splits(
        dict(zip(table["mic"], table["project_id"])), opts.split_by, opts.val_fraction, opts.seed,
        exposure_of=dict(zip(table["mic"], table["exposure"])),
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
        _out_shape(r.nx, r.ny, img, str(r.abs_path)) for r in table.itertuples()
    ]
    table["out_ny"] = [s[0] for s in shapes]
    table["out_nx"] = [s[1] for s in shapes]
    rescaled = img["scale"] not in (None, 1) or img["width"] is not None
    # without rescaling labels stay in micrograph px, whether or not the size is known
    table["scale_x"] = table["out_nx"] / table["nx"].astype(float) if rescaled else 1.0
    table["scale_y"] = table["out_ny"] / table["ny"].astype(float) if rescaled else 1.0

    if spec.layout.needs_diameter and table["diameter_px"].isna().any():
        missing = table.loc[table["diameter_px"].isna(), "project_id"]
        projects = sorted(int(p) for p in missing.unique())
        raise ExportError(
            f"{fmt} labels need a particle size, unknown for project(s) {projects} (no box size "
            "in the catalog); pass --diameter in Å"
        )
    pos = _scaled(sel.positives, table)
    neg = _scaled(sel.negatives, table)
    pos, sparse = _sparse_labels(pos, table, opts)

    with atomic.atomic_directory(out, force=opts.force) as tmp:
        layout = ExportWriter(spec, tmp, out, img["images"])
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
        man = manifest.export_manifest(fmt, opts, img, catalog_path, fingerprint, sel.record,
                                       table, counts, dropped_size, results, layout,
                                       missing_images=missing_images)
        if sparse is not None:
            man["label_fraction"] = sparse
        manifest.write_manifest(tmp, man)
    label_files = [out / Path(p).relative_to(tmp) for p in label_files]
    return ExportResult(out_dir=out, format=fmt, counts=counts, manifest=man,
                        label_files=label_files)


def _sparse_labels(pos: pd.DataFrame, table: pd.DataFrame, opts: ExportOptions):
    """``--label-fraction``: training labels only inside seeded subregions (converters.sparse)."""
    from converters.sparse import subregion_subset

    try:
        pos, record = subregion_subset(pos, table, opts.label_fraction, opts.seed, split=TRAIN)
    except ValueError as e:
        raise ExportError(str(e)) from None
    if record is not None:  # the manifest's per-micrograph counts are of the labels written
        table["n_positive"] = table["stem"].map(pos.groupby("stem").size()).fillna(0).astype(int)
    return pos, record


def _image_settings(fmt: str, opts: ExportOptions) -> dict:
    """Image mode, scale/width and 8-bit conversion: the options, else the format's defaults."""
    from converters import registry

    d = registry.get(fmt).layout.image_defaults
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


def _out_shape(nx, ny, img: dict, path: str) -> tuple[float, float]:
    """Exported (ny', nx'); NaN where the micrograph's size is unknown (labels that need none)."""
    if pd.isna(nx) or pd.isna(ny):
        return (np.nan, np.nan)
    nx, ny = int(nx), int(ny)
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


def needs_size(spec, img: dict) -> str | None:
    """What in this export needs each micrograph's size (None: nothing): labels normalised by it
    (the format's ``WRITE_NEEDS`` ``image_size``), or a rescale (``--scale``/``--width``).
    Written images read their file anyway; a flip is checked by the selection."""
    if "image_size" in spec.write_needs:
        return f"{spec.name} labels (normalised by the image size)"
    if img["scale"] not in (None, 1) or img["width"] is not None:
        return "--scale/--width"
    return None


def _usable(table: pd.DataFrame, spec, img: dict) -> tuple[pd.DataFrame, list[dict], list[str]]:
    """The micrographs this export can write, the dropped ones (listed) and those kept without
    an image to link.

    Micrographs may be gone (DESIGN.md): an image mode that writes files (png, jpg, mrc) drops
    micrographs whose file is missing or unreadable; ``link`` keeps them, without a link; where
    the labels need a size (:func:`needs_size`), micrographs without one are dropped. Each
    reason is one warning line (count + first names); nothing left is an ExportError."""
    mode = img["images"]
    exists = table["abs_path"].map(lambda p: isinstance(p, str) and os.path.isfile(p))
    dropped: list[dict] = []
    keep = pd.Series(True, index=table.index)
    reasons = []
    if mode in ("png", "jpg", "mrc"):
        bad = ~exists | ~sizes.has_size(table)
        if bad.any():
            reasons.append(f"--images {mode} needs each micrograph file, missing or unreadable "
                           f"for {sizes.shown(table.loc[bad, 'key'])}; pass --images none "
                           "(labels only) or --images link")
            for r in table[bad].itertuples():
                dropped.append({"micrograph": r.mic, "path": str(r.abs_path),
                                "reason": "image file missing or unreadable"})
            keep &= ~bad
    need = needs_size(spec, img)
    if need is not None:
        bad = keep & ~sizes.has_size(table)
        if bad.any():
            reasons.append(sizes.missing_line(need, table.loc[bad, "key"]))
            for r in table[bad].itertuples():
                dropped.append({"micrograph": r.mic, "path": str(r.abs_path),
                                "reason": "size unknown"})
            keep &= ~bad
    if not keep.any():
        raise ExportError(reasons[0] if reasons else "no micrograph to export")
    for reason in reasons:
        log.warning("dropping micrographs: %s", reason)
    missing = []
    if mode == "link":
        gone = keep & ~exists
        missing = sorted(table.loc[gone, "mic"].astype(str))
        if missing:
            log.warning("not linking %s micrograph file(s) that are gone; their labels are "
                        "exported", sizes.shown(table.loc[gone, "key"]))
    return table[keep].copy(), dropped, missing


def _scaled(picks: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Picks in pixels of the exported images: ``x * nx'/nx``, ``y * ny'/ny``, diameter by the
    x ratio; with the micrograph's stem and split (Categoricals: no string per pick) and
    exported size."""
    if picks is None or picks.empty:
        return pd.DataFrame(columns=["stem", "split", "x", "y", "score", "diameter", "class_id"])
    t = table.reset_index(drop=True)
    mic = picks["mic"]
    if isinstance(mic.dtype, pd.CategoricalDtype):  # the selection's: rows via the categories
        row_of = pd.Index(t["mic"]).get_indexer(mic.cat.categories)
        codes = mic.cat.codes.to_numpy()
        row = np.where(codes >= 0, row_of[np.maximum(codes, 0)], -1)
    else:
        row = pd.Index(t["mic"]).get_indexer(mic)
    inside = row >= 0
    if not inside.all():
        picks, row = picks[inside], row[inside]
    sx = t["scale_x"].to_numpy(float)[row] if len(t) else np.zeros(0)
    sy = t["scale_y"].to_numpy(float)[row] if len(t) else np.zeros(0)
    stems = t["stem"].astype(str)
    stem = (pd.Categorical.from_codes(row, categories=stems) if stems.is_unique
            else stems.to_numpy()[row])
    splits = pd.Index(sorted(set(t["split"].astype(str))))
    split = pd.Categorical.from_codes(splits.get_indexer(t["split"].astype(str))[row],
                                      categories=splits)
    return pd.DataFrame(
        {
            "z": pd.to_numeric(picks["z"], errors="coerce").to_numpy(float)
            if "z" in picks.columns else np.nan,
            "stem": stem,
            "split": split,
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
