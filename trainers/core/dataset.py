"""Labelled micrographs for training, from an export (opened by its ``manifest.json``) or from
plain folders, at a picker's network-input scale.

Two steps, both picker-neutral:

* :func:`open_labelled` finds the micrographs and reads their label set **once**: from an
  export (``converters.dataset.open_export``: the manifest's images, split, format and particle
  diameter; labels in px of the exported images) or from ``--data``/``--label``/
  ``--label_type`` folders (labels in px of the micrograph files). Nothing is guessed from
  folder names.
* :func:`make_samples` applies the picker's own view (``view(path) → Prepared``, e.g.
  CenterNet's 1024-wide equalised image) and scales the labels into it:
  ``x' = x · sx``, ``y' = y · sy`` (DESIGN frame both; 3D keeps ``z``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harvest.conventions import micrograph_key
from trainers.data import DataError, list_micrographs

if TYPE_CHECKING:  # the pick path imports Prepared from here and must not load pandas
    import pandas as pd

TRAIN, VAL = "train", "val"


@dataclass
class Prepared:
    """A micrograph as a picker's network sees it: ``image`` (ny', nx'), the size of the file
    it came from and the per-axis scale ``sx = nx'/nx``, ``sy = ny'/ny``. A tomogram adds
    ``nz`` and ``sz = nz'/nz`` (``image`` then (nz', ny', nx'))."""

    name: str
    path: Path
    image: np.ndarray
    nx: int
    ny: int
    sx: float
    sy: float
    nz: int | None = None
    sz: float = 1.0


@dataclass
class Sample:
    """One labelled micrograph at the input scale: picks ``xy`` (n, 2; (n, 3) with z) in input
    px, ``radius`` (n,) in input px (NaN when unknown), ``group`` (n,) filament ids (−1 when
    none)."""

    prep: Prepared
    xy: np.ndarray
    radius: np.ndarray
    group: np.ndarray
    meta: dict = field(default_factory=dict)


@dataclass
class Labelled:
    """A micrograph file with its labels (px of that file) and its split when known."""

    key: str
    image: Path
    labels: pd.DataFrame
    split: str | None = None


@dataclass
class Source:
    """Where labelled micrographs came from: ``export`` (with its ``root``) or ``folders``;
    the label ``format``, ``dims`` and the median particle ``diameter_px`` in px of the
    labelled images (None when unknown)."""

    kind: str
    format: str | None
    dims: int = 2
    diameter_px: float | None = None
    root: Path | None = None


def from_export(path: str | Path, keys=None) -> tuple[list[Labelled], Source]:
    """Micrographs and labels of an export (every exported micrograph, labelled or empty)."""
    from converters.dataset import open_export

    ds = open_export(path)
    mics = ds.micrographs()
    labels = ds.labels()
    groups = dict(tuple(labels.groupby("stem", sort=False))) if len(labels) else {}
    out = []
    for m in mics.itertuples():
        key = micrograph_key(str(m.key or m.stem))
        if keys is not None and key not in keys:
            continue
        if m.image is None:
            raise DataError(
                f"{ds.root}: micrograph {m.stem} has no image in the export and its original "
                f"{m.source} is missing or rescaled; export again with images (--images mrc)"
            )
        df = groups.get(m.stem, labels.iloc[0:0])
        out.append(Labelled(key=key, image=Path(m.image), labels=df, split=m.split))
    if not out:
        raise DataError(f"{ds.root}: the export lists no micrographs (manifest.json)")
    src = Source("export", ds.format, ds.dims, ds.diameter_px, ds.root)
    return out, src


def from_folders(data, label, label_type, keys=None) -> tuple[list[Labelled], Source]:
    """Micrographs of ``data`` that have labels in ``label`` (any 2D registry format).

    Micrographs without a label file are skipped (an empty label file counts: no particles).
    """
    from trainers.labels import format_name, label_micrographs, read_labels

    if not label_type:
        raise DataError("--label_type is needed with --label (a registry format name)")
    files = list_micrographs(data)
    labels = read_labels(label, label_type, images=data)
    covered = set(label_micrographs(label, label_type, labels=labels))
    groups = dict(tuple(labels.groupby("key", sort=False))) if len(labels) else {}
    out = []
    for f in files:
        key = micrograph_key(f.name)
        if key not in covered or (keys is not None and key not in keys):
            continue
        out.append(Labelled(key=key, image=f, labels=groups.get(key, labels.iloc[0:0])))
    if not out:
        raise DataError(
            f"no micrograph in {data} has a label file in {label} (labels are matched to "
            f"micrographs by name, e.g. mic_0001.mrc ↔ mic_0001.<ext>); check --label and "
            "--label_type"
        )
    fmt = format_name(label_type, label)
    d = labels["diameter"].to_numpy(float) if "diameter" in labels else np.zeros(0)
    d = d[np.isfinite(d)]
    dims = 3 if "z" in labels and labels["z"].notna().any() else 2
    return out, Source("folders", fmt, dims, float(np.median(d)) if d.size else None)


def make_samples(records: list[Labelled], view: Callable[[Path], Prepared]) -> list[Sample]:
    """Each record through the picker's ``view``, labels scaled into it."""
    out = []
    for r in records:
        prep = view(r.image)
        prep.name = r.key
        df = r.labels
        cols, scale = ["x", "y"], [prep.sx, prep.sy]
        if "z" in df.columns and df["z"].notna().any():
            cols.append("z")
            scale.append(prep.sz)
        xy = df[cols].to_numpy(np.float64).reshape(-1, len(cols)) * np.array(scale)
        if "radius" in df.columns and df["radius"].notna().any():
            radius = df["radius"].to_numpy(np.float64) * prep.sx
        elif "diameter" in df.columns and df["diameter"].notna().any():
            radius = df["diameter"].to_numpy(np.float64) * prep.sx / 2
        else:
            radius = np.full(len(df), np.nan)
        if "filament" in df.columns:
            group = df["filament"].fillna(-1).to_numpy(np.int64)
        else:
            group = np.full(len(df), -1, dtype=np.int64)
        out.append(Sample(prep=prep, xy=xy, radius=radius, group=group,
                          meta={"split": r.split}))
    return out


def labelled_samples(data, label, label_type, view: Callable[[Path], Prepared],
                     keys=None) -> list[Sample]:
    """:func:`from_folders` then :func:`make_samples`."""
    records, _ = from_folders(data, label, label_type, keys)
    return make_samples(records, view)


def split_keys(
    keys: list[str], train_pct: float, val_pct: float, test_pct: float, seed: int
) -> dict[str, list[str]]:
    """EPicker-style random split of micrographs by percentage (at least one for training)."""
    total = train_pct + val_pct + test_pct
    if total <= 0:
        raise DataError("--train_pct, --val_pct and --test_pct must not all be 0")
    rng = np.random.default_rng(seed)
    order = [keys[i] for i in rng.permutation(len(keys))]
    n = len(order)
    n_val = int(round(n * val_pct / total))
    n_test = int(round(n * test_pct / total))
    if n - n_val - n_test < 1:
        n_val = min(n_val, max(n - 1, 0))
        n_test = max(0, n - 1 - n_val)
    return {
        "val": sorted(order[:n_val]),
        "test": sorted(order[n_val : n_val + n_test]),
        "train": sorted(order[n_val + n_test :]),
    }


def training_data(opts, view: Callable[[Path], Prepared], dims: int = 2):
    """(train samples, val samples, split, source) from a picker's options (the common
    :class:`trainers.core.options.TrainOptions` fields).

    ``--dataset``: the manifest's split (train/val). ``--val_data``/``--val_label``: that
    folder validates. Otherwise micrographs are split by ``--train_pct/--val_pct/--test_pct``.
    """
    if opts.dataset and (opts.data or opts.label or opts.val_data):
        raise DataError("give either --dataset (an export) or --data/--label folders, not both")
    if opts.dataset:
        records, src = from_export(opts.dataset)
        if src.dims != dims:
            raise DataError(f"{opts.dataset}: the export holds {src.dims}D picks; this picker "
                            f"trains on {dims}D data")
        samples = make_samples(records, view)
        train = [s for s in samples if s.meta["split"] != VAL]
        val = [s for s in samples if s.meta["split"] == VAL]
        split = {TRAIN: [s.prep.name for s in train], VAL: [s.prep.name for s in val],
                 "test": []}
        return train, val, split, src
    if not (opts.data and opts.label):
        raise DataError("give --dataset OUT (an export directory) or --data DIR with --label "
                        "PATH and --label_type FORMAT")
    records, src = from_folders(opts.data, opts.label, opts.label_type)
    if opts.val_data:
        if not opts.val_label:
            raise DataError("--val_data needs --val_label")
        train = make_samples(records, view)
        vrec, _ = from_folders(opts.val_data, opts.val_label, opts.label_type)
        val = make_samples(vrec, view)
        split = {TRAIN: [s.prep.name for s in train], VAL: [s.prep.name for s in val],
                 "test": []}
        return train, val, split, src
    split = split_keys([r.key for r in records], opts.train_pct, opts.val_pct, opts.test_pct,
                       opts.seed)
    used = set(split[TRAIN]) | set(split[VAL])
    samples = make_samples([r for r in records if r.key in used], view)
    train = [s for s in samples if s.prep.name in split[TRAIN]]
    val = [s for s in samples if s.prep.name in split[VAL]]
    return train, val, split, src


def write_split(path: Path, split: dict[str, list[str]]) -> None:
    path.write_text(json.dumps(split, indent=1))


def samples_frame(samples: list[Sample]) -> pd.DataFrame:
    """Labels of samples in original micrograph px (for evaluation); ``z`` when 3D."""
    import pandas as pd

    frames = []
    for s in samples:
        xy = np.asarray(s.xy, dtype=np.float64)
        scale = [s.prep.sx, s.prep.sy] + ([s.prep.sz] if xy.shape[1:] == (3,) else [])
        back = xy / np.array(scale) if len(xy) else xy.reshape(0, len(scale))
        df = pd.DataFrame(back, columns=["x", "y", "z"][: len(scale)])
        df.insert(0, "micrograph", s.prep.name)
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["micrograph", "x", "y"])
    return pd.concat(frames, ignore_index=True)
