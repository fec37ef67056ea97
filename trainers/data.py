"""Micrographs + label files → training samples (EPicker's preprocessing), and the DataModule.

Preprocessing (pickers.md §D1, EPicker ``mrc_utils/preprocess.py``): average the frames of a
stack → Fourier crop (or pad) to ``input_width`` columns (rows scaled by the same factor) →
min–max to uint8 → histogram equalisation. Labels follow with ``x' = x · nx'/nx``,
``y' = y · ny'/ny`` (px of the micrograph file → px of the network input; DESIGN frame both).

Micrographs are ``.mrc``/``.mrcs`` (mrcfile), or ``.png``/``.jpg``/``.tif`` (OpenCV, grayscale).
A micrograph's labels come from the label location (one file per micrograph named
``<micrograph stem>.<ext>``, or a table) read through the format registry and matched by
:func:`harvest.conventions.micrograph_key`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from harvest import imageio
from harvest.conventions import micrograph_key

IMAGE_SUFFIXES = imageio.IMAGE_SUFFIXES  # the one list of readable micrograph files
# After histogram equalisation a uint8 image is close to uniform: mean 0.5, std 1/sqrt(12).
# EPicker uses 0.508/0.289 for training and 0.502/0.289 for picking; one pair is used here.
NORM_MEAN = 0.5
NORM_STD = 0.2887


class DataError(ValueError):
    """A micrograph folder, image or label set cannot be used for training or picking."""


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------


def list_micrographs(folder: str | Path) -> list[Path]:
    """Image files of a folder, sorted by name (:func:`harvest.imageio.list_micrographs`:
    hidden files skipped, an error when the folder is missing or holds none)."""
    return imageio.list_micrographs(folder)


def read_image(path: str | Path) -> np.ndarray:
    """2D float32 image in the DESIGN frame (row = y); a stack is averaged over its frames
    (:func:`harvest.imageio.read_micrograph`)."""
    return imageio.read_micrograph(path).image


def fourier_resize(img: np.ndarray, ny: int, nx: int) -> np.ndarray:
    """Resample to ``ny × nx`` by cropping (or zero-padding) the centred spectrum; coordinates
    scale by ``n'/n`` (the exporter's resampler, :func:`converters.images.fourier_resize`)."""
    from converters.images import fourier_resize as resize

    return resize(img, (ny, nx))


def equalize(img: np.ndarray) -> np.ndarray:
    """Min–max to uint8 then histogram equalisation (as ``cv2.equalizeHist``)."""
    import cv2

    lo, hi = float(np.min(img)), float(np.max(img))
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    u8 = np.clip((img - lo) * scale, 0, 255).astype(np.uint8)
    return cv2.equalizeHist(u8)


@dataclass
class Prepared:
    """A micrograph at the network input scale: uint8 ``image`` (ny', nx'), the original size and
    the per-axis scale factors ``sx = nx'/nx``, ``sy = ny'/ny``."""

    name: str
    path: Path
    image: np.ndarray
    nx: int
    ny: int
    sx: float
    sy: float


def prepare(path: str | Path, input_width: int) -> Prepared:
    """EPicker's preprocessing of one micrograph (see the module docstring)."""
    img = read_image(path)
    ny, nx = img.shape
    nx2 = int(input_width)
    ny2 = max(1, int(round(ny * nx2 / nx)))
    small = fourier_resize(img, ny2, nx2)
    return Prepared(
        name=micrograph_key(Path(path).name),
        path=Path(path),
        image=equalize(small),
        nx=nx,
        ny=ny,
        sx=nx2 / nx,
        sy=ny2 / ny,
    )


def to_tensor_image(u8: np.ndarray) -> np.ndarray:
    """uint8 image → normalised float32 (1, H, W) network input."""
    return ((u8.astype(np.float32) / 255.0 - NORM_MEAN) / NORM_STD)[None]


# ---------------------------------------------------------------------------------------------
# Labelled micrographs
# ---------------------------------------------------------------------------------------------


@dataclass
class Sample:
    """One labelled micrograph at the input scale: picks ``xy`` (n, 2) in input px, ``radius``
    (n,) in input px (NaN when unknown), ``group`` (n,) filament ids (−1 when none)."""

    prep: Prepared
    xy: np.ndarray
    radius: np.ndarray
    group: np.ndarray
    meta: dict = field(default_factory=dict)


def labelled_samples(
    data: str | Path,
    label: str | Path,
    label_type: str,
    input_width: int,
    keys: list[str] | None = None,
) -> list[Sample]:
    """Micrographs of ``data`` that have labels in ``label`` (any 2D registry format), prepared.

    Micrographs without a label file are skipped (an empty label file counts: no particles).
    Label coordinates are px of the micrograph file; they are scaled to the input scale here.
    """
    from trainers.labels import label_micrographs, read_labels

    files = list_micrographs(data)
    labels = read_labels(label, label_type)
    covered = set(label_micrographs(label, label_type))
    groups = dict(tuple(labels.groupby("key", sort=False))) if len(labels) else {}
    out = []
    for f in files:
        key = micrograph_key(f.name)
        if key not in covered or (keys is not None and key not in keys):
            continue
        prep = prepare(f, input_width)
        df = groups.get(key, labels.iloc[0:0])
        xy = df[["x", "y"]].to_numpy(np.float64) * np.array([prep.sx, prep.sy])
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
        out.append(Sample(prep=prep, xy=xy, radius=radius, group=group))
    if not out:
        raise DataError(
            f"no micrograph in {data} has a label file in {label} (labels are matched to "
            f"micrographs by name, e.g. mic_0001.mrc ↔ mic_0001.<ext>); check --label and "
            "--label_type"
        )
    return out


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


def write_split(path: Path, split: dict[str, list[str]]) -> None:
    path.write_text(json.dumps(split, indent=1))


def samples_frame(samples: list[Sample]) -> pd.DataFrame:
    """Labels of samples in original micrograph px (for evaluation)."""
    rows = []
    for s in samples:
        for x, y in s.xy:
            rows.append((s.prep.name, x / s.prep.sx, y / s.prep.sy))
    return pd.DataFrame(rows, columns=["micrograph", "x", "y"])


# ---------------------------------------------------------------------------------------------
# torch datasets and the DataModule (torch and Lightning are imported only when these are used)
# ---------------------------------------------------------------------------------------------


def pad_to_multiple(u8: np.ndarray, multiple: int) -> np.ndarray:
    """Pad right/bottom to a multiple of ``multiple`` px with the image mean (coordinates keep)."""
    h, w = u8.shape
    H = -(-h // multiple) * multiple
    W = -(-w // multiple) * multiple
    if (H, W) == (h, w):
        return u8
    out = np.full((H, W), int(round(float(u8.mean()))), dtype=u8.dtype)
    out[:h, :w] = u8
    return out


def make_train_dataset(samples, augmenter, encoder, repeat: int = 1, exemplar: bool = False):
    """Random augmented views of labelled micrographs, encoded as training targets."""
    import torch

    class _TrainViews(torch.utils.data.Dataset):
        def __len__(self):
            return len(samples) * repeat

        def __getitem__(self, i):
            s = samples[i % len(samples)]
            rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,))))
            view, xy, keep = augmenter(s.prep.image, s.xy, rng)
            item = encoder.encode(view, xy, s.radius[keep], s.group[keep])
            item["input"] = to_tensor_image(view)
            item["exemplar"] = np.float32(exemplar)
            return item

    return _TrainViews()


def make_eval_dataset(samples, encoder, multiple: int = 32):
    """Whole micrographs (padded to a multiple of the network stride) with their targets."""
    import torch

    class _EvalImages(torch.utils.data.Dataset):
        def __len__(self):
            return len(samples)

        def __getitem__(self, i):
            s = samples[i]
            img = pad_to_multiple(s.prep.image, multiple)
            item = encoder.encode(img, s.xy, s.radius, s.group)
            item["input"] = to_tensor_image(img)
            item["index"] = i
            item["exemplar"] = np.float32(0)
            return item

    return _EvalImages()


def interleaved_batches(n_new: int, n_ex: int, batch_size: int, every: int, rng) -> list[list[int]]:
    """EPicker's continual schedule (pickers.md §D2) as a list of index batches over
    ``ConcatDataset([new, exemplar])``: new-data batches, and after every ``every`` of them one
    full pass over the exemplars (batch size ``min(n_ex, batch_size)``); ``every`` is 8 when an
    epoch has more than 8 new batches, else the exemplar pass comes once, at the end."""
    order = rng.permutation(n_new)
    new = [order[i : i + batch_size].tolist() for i in range(0, n_new, batch_size)]
    if n_ex == 0:
        return new
    eb = max(1, min(n_ex, batch_size))
    every = every if len(new) > every else len(new)
    out: list[list[int]] = []
    for j, b in enumerate(new, 1):
        out.append(b)
        if j % every == 0:
            ex = rng.permutation(n_ex) + n_new
            out.extend(ex[i : i + eb].tolist() for i in range(0, n_ex, eb))
    return out


def make_datamodule(
    train_samples,
    val_samples,
    encoder,
    augmenter,
    batch_size: int,
    num_workers: int = 0,
    repeat: int = 1,
    exemplar_samples=None,
    exemplar_every: int = 8,
):
    """Lightning DataModule: augmented training views (interleaved with exemplar replay when
    ``exemplar_samples`` is given) and whole validation micrographs (batch size 1)."""
    import pytorch_lightning as pl
    import torch

    class _Interleaved(torch.utils.data.Sampler):
        def __init__(self, n_new, n_ex):
            self.n_new, self.n_ex, self.epoch = n_new, n_ex, 0

        def __iter__(self):
            rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,))))
            yield from interleaved_batches(
                self.n_new, self.n_ex, batch_size, exemplar_every, rng
            )

        def __len__(self):
            return len(
                interleaved_batches(
                    self.n_new, self.n_ex, batch_size, exemplar_every, np.random.default_rng(0)
                )
            )

    class PickerDataModule(pl.LightningDataModule):
        def train_dataloader(self):
            new = make_train_dataset(train_samples, augmenter, encoder, repeat)
            if exemplar_samples:
                ex = make_train_dataset(exemplar_samples, augmenter, encoder, 1, exemplar=True)
                ds = torch.utils.data.ConcatDataset([new, ex])
                return torch.utils.data.DataLoader(
                    ds,
                    batch_sampler=_Interleaved(len(new), len(ex)),
                    num_workers=num_workers,
                    collate_fn=encoder.collate,
                )
            return torch.utils.data.DataLoader(
                new,
                batch_size=batch_size,
                shuffle=True,
                drop_last=len(new) > batch_size and len(new) % batch_size == 1,
                num_workers=num_workers,
                collate_fn=encoder.collate,
                persistent_workers=num_workers > 0,
            )

        def val_dataloader(self):
            if not val_samples:
                return []
            return torch.utils.data.DataLoader(
                make_eval_dataset(val_samples, encoder),
                batch_size=1,
                num_workers=num_workers,
                collate_fn=encoder.collate,
            )

    return PickerDataModule()
