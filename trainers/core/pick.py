"""The generic pick loop: micrographs of a folder (or one ``--shard`` of them) → a picker's
``pick_one`` → one label file per micrograph through the format registry.

Imports no Lightning, pandas, OpenCV or matplotlib until a feature needs them (every Slurm
array task pays the start-up again; issue 16): a picker supplies only ``pick_one(path)``
returning its picks in px of that micrograph file (DESIGN frame), as a pandas picks frame or as
a mapping of numpy columns (``micrograph`` may be one string), written without pandas.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


def parse_shard(shard: str | None, n: int) -> list[int]:
    """``K/N`` → indices of the K-th (0-based) of N contiguous chunks of ``n`` items (the rule
    of :mod:`converters.shard`, shared with ``cryoglean denoise``); all indices without K/N."""
    from converters.shard import parse_shard as parse
    from converters.shard import shard_items

    if not shard:
        return list(range(n))
    k, m = parse(shard)
    return shard_items(range(n), k, m)


def as_picks(picks):
    """A picker's picks as a writer takes them: a pandas frame as it is, a mapping of numpy
    columns as :class:`converters.registry.PickColumns` (no pandas import)."""
    if isinstance(picks, Mapping):
        from converters.registry import PickColumns

        return PickColumns(dict(picks))
    return picks


def write_picks_file(df, out: Path, fmt: str, stem: str,
                     image_size: tuple[int, int] | None = None) -> None:
    """One label file per micrograph (an empty one when there are no picks); ``df``: a picks
    frame or a mapping of numpy columns (:func:`as_picks`); ``image_size`` ``(nx, ny)`` for
    formats that store coordinates relative to it."""
    from trainers.labels import write_labels

    opts = {"image_size": {stem: image_size}} if image_size is not None else {}
    write_labels(as_picks(df), out, fmt, micrographs=[stem], **opts)


def _draw(path: Path, df, dest: Path, trained: dict | None = None) -> None:
    from converters.formats._common import column
    from trainers.data import read_image
    from trainers.plots import plot_picks

    df = as_picks(df)
    if "radius" in df.columns:
        r = column(df, "radius")
    elif "diameter" in df.columns:
        r = column(df, "diameter") / 2
    else:
        r = np.full(len(df), 4.0)
    xy = np.stack([column(df, "x"), column(df, "y")], axis=1)
    # the median of the present radii, as pandas' Series.median (NaN skipped)
    radius = float(np.nanmedian(r)) if len(df) and not np.isnan(r).all() else float("nan")
    plot_picks(read_image(path), xy, dest, radius if len(df) else 4.0,
               warning=scale_warning(path, trained))


def trained_geometry(checkpoint: str | Path) -> dict | None:
    """What the model of ``checkpoint`` was trained on, from its run directory
    (``RUN/weights/*.ckpt``; ``RUN/options.yaml`` names the export or the folder):
    ``{"sizes": {(nx, ny), ...}, "pixel_sizes": [Å, ...]}``, or None when unknown."""
    from trainers.core.driver import saved_options

    opts = saved_options(Path(checkpoint).resolve().parent.parent)
    sizes: set[tuple[int, int]] = set()
    pixel_sizes: list[float] = []
    try:
        if opts.get("dataset"):
            from converters.dataset import open_export

            mics = open_export(opts["dataset"]).micrographs()
            for r in mics.itertuples():
                for nx, ny in ((r.nx, r.ny), (r.out_nx, r.out_ny)):
                    if nx == nx and ny == ny and nx is not None and ny is not None:
                        sizes.add((int(nx), int(ny)))
            pixel_sizes = sorted({float(v) for v in mics["pixel_size"].dropna()})
        elif opts.get("data"):
            from trainers.labels import sizes_from_images

            sizes = set(sizes_from_images(opts["data"]).values())
    except (OSError, ValueError):
        return None  # the training data moved: nothing to compare with
    return {"sizes": sizes, "pixel_sizes": pixel_sizes} if sizes or pixel_sizes else None


def _mrc_pixel_size(path: Path) -> float | None:
    if path.suffix.lower() not in (".mrc", ".mrcs"):
        return None
    import mrcfile

    with mrcfile.open(path, header_only=True, permissive=True) as m:
        v = float(m.voxel_size.x)
    return v if v > 0 else None


def scale_warning(path: Path, trained: dict | None, tolerance: float = 0.1) -> str | None:
    """A warning when micrograph ``path`` differs in size or pixel size (beyond ``tolerance``)
    from what the model was trained on (:func:`trained_geometry`); None when it matches or
    nothing is known."""
    if not trained:
        return None
    from trainers.labels import image_size

    nx, ny = image_size(path)
    sizes = trained.get("sizes") or set()
    if sizes and not any(abs(nx - a) <= tolerance * a and abs(ny - b) <= tolerance * b
                         for a, b in sizes):
        shown = ", ".join(f"{a}x{b}" for a, b in sorted(sizes)[:3])
        return f"scale warning: {nx}x{ny} px, the model was trained on {shown} px"
    px = _mrc_pixel_size(Path(path))
    known = trained.get("pixel_sizes") or []
    if px and known and not any(abs(px - k) <= tolerance * k for k in known):
        return (f"scale warning: pixel size {px:.3g} A, the model was trained on "
                f"{', '.join(f'{k:.3g}' for k in known)} A")
    return None


def micrograph_files(data=None, dataset=None, split=None) -> list[Path]:
    """The micrographs to pick, sorted: the image files of folder ``data``, or the images of an
    export ``dataset`` (its manifest; only ``split`` when given)."""
    from trainers.data import DataError, list_micrographs

    if bool(data) == bool(dataset):
        raise DataError("give the micrographs to pick: --data DIR or --dataset OUT (an export)")
    if split and not dataset:
        raise DataError("--split needs --dataset (it selects micrographs of an export)")
    if data:
        return list_micrographs(data)
    from converters.dataset import open_export

    mics = open_export(dataset).micrographs(split)
    files = sorted(Path(p) for p in mics["image"] if p)
    if not files:
        raise DataError(f"{dataset}: no micrograph images{f' in split {split}' if split else ''} "
                        "(export with images, or pick the originals with --data)")
    return files


def pick_folder(
    pick_one: Callable[[Path], pd.DataFrame | Mapping[str, np.ndarray]],
    data: str | Path | None,
    output: str | Path,
    output_type: str,
    shard: str | None = None,
    visual: bool = False,
    quiet: bool = False,
    dataset: str | Path | None = None,
    split: str | None = None,
    trained: dict | None = None,
) -> dict:
    """Pick every micrograph of ``data`` (or of export ``dataset``, see
    :func:`micrograph_files`; or shard ``K/N`` of the sorted list) with ``pick_one`` and write
    one ``output_type`` label file per micrograph into ``output`` (``visual``: also
    ``<stem>.png`` with the picks drawn, a scale warning on it when the micrograph differs from
    ``trained``, :func:`trained_geometry`). Returns counts and timing."""
    from harvest.progress import progress
    from trainers.labels import format_name

    if not output_type:
        raise ValueError("--output_type is needed: the registry format of the written picks")
    from trainers.labels import image_size, registry

    fmt = format_name(output_type)
    # a format that needs image sizes to read its coordinates needs them to write them too
    sized = "image_size" in registry().get(fmt).read_needs
    files = micrograph_files(data, dataset, split)
    files = [files[i] for i in parse_shard(shard, len(files))]
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    total, t0 = 0, time.time()
    for f in progress(files, desc="pick", unit="micrographs", enabled=not quiet):
        df = as_picks(pick_one(f))
        total += len(df)
        write_picks_file(df, out, fmt, f.stem, image_size(f) if sized else None)
        if visual:
            _draw(f, df, out / f"{f.stem}.png", trained)
    dt = time.time() - t0
    return {"micrographs": len(files), "picks": total, "seconds": dt,
            "micrographs_per_s": len(files) / dt if dt > 0 else float("nan")}
