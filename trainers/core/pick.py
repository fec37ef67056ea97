"""The generic pick loop: micrographs of a folder (or one ``--shard`` of them) → a picker's
``pick_one`` → one label file per micrograph through the format registry.

Imports no Lightning (picking starts fast); a picker supplies only ``pick_one(path)`` returning
its picks in px of that micrograph file (DESIGN frame).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

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


def show_progress(quiet: bool) -> bool:
    import sys

    return (not quiet) and sys.stderr.isatty()


def write_picks_file(df: pd.DataFrame, out: Path, fmt: str, stem: str) -> None:
    """One label file per micrograph (an empty one when there are no picks)."""
    from trainers.labels import write_labels

    write_labels(df, out, fmt, micrographs=[stem])


def _draw(path: Path, df: pd.DataFrame, dest: Path) -> None:
    from trainers.data import read_image
    from trainers.plots import plot_picks

    if "radius" in df:
        r = df["radius"]
    elif "diameter" in df:
        r = df["diameter"] / 2
    else:
        r = pd.Series([4.0] * len(df))
    plot_picks(read_image(path), df[["x", "y"]].to_numpy(), dest,
               float(r.median()) if len(df) else 4.0)


def pick_folder(
    pick_one: Callable[[Path], pd.DataFrame],
    data: str | Path,
    output: str | Path,
    output_type: str,
    shard: str | None = None,
    visual: bool = False,
    quiet: bool = False,
) -> dict:
    """Pick every micrograph of ``data`` (or shard ``K/N`` of the sorted list) with
    ``pick_one`` and write one ``output_type`` label file per micrograph into ``output``
    (``visual``: also ``<stem>.png`` with the picks drawn). Returns counts and timing."""
    from tqdm import tqdm

    from trainers.data import list_micrographs
    from trainers.labels import format_name

    fmt = format_name(output_type)
    files = list_micrographs(data)
    files = [files[i] for i in parse_shard(shard, len(files))]
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    total, t0 = 0, time.time()
    for f in tqdm(files, desc="pick", disable=not show_progress(quiet)):
        df = pick_one(f)
        total += len(df)
        write_picks_file(df, out, fmt, f.stem)
        if visual:
            _draw(f, df, out / f"{f.stem}.png")
    dt = time.time() - t0
    return {"micrographs": len(files), "picks": total, "seconds": dt,
            "micrographs_per_s": len(files) / dt if dt > 0 else float("nan")}
