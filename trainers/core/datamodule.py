"""torch datasets and the Lightning DataModule over :class:`trainers.core.dataset.Sample` s.

A picker supplies an ``augmenter`` (random training views, :class:`trainers.augment.Augmenter`),
an ``encoder`` (``encode(image, xy, radius, group) → dict`` of targets, optional ``collate``)
and ``to_input`` (its view image → the float32 (C, H, W) network input). torch and Lightning
are imported only when these are used.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def pad_to_multiple(img: np.ndarray, multiple: int) -> np.ndarray:
    """Pad the last two axes (rows, columns) at their far ends to a multiple of ``multiple``
    px with the image mean; coordinates keep (a tomogram's sections are left as they are)."""
    h, w = img.shape[-2:]
    H = -(-h // multiple) * multiple
    W = -(-w // multiple) * multiple
    if (H, W) == (h, w):
        return img
    fill = float(img.mean())
    if np.issubdtype(img.dtype, np.integer):
        fill = int(round(fill))
    out = np.full((*img.shape[:-2], H, W), fill, dtype=img.dtype)
    out[..., :h, :w] = img
    return out


def _collate(encoder):
    fn = getattr(encoder, "collate", None)
    if fn is not None:
        return fn
    from torch.utils.data import default_collate

    return default_collate


def make_train_dataset(samples, augmenter, encoder, to_input: Callable, repeat: int = 1,
                       exemplar: bool = False):
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
            item["input"] = to_input(view)
            item["exemplar"] = np.float32(exemplar)
            return item

    return _TrainViews()


def make_eval_dataset(samples, encoder, to_input: Callable, multiple: int = 32):
    """Whole micrographs (padded to a multiple of the network stride) with their targets."""
    import torch

    class _EvalImages(torch.utils.data.Dataset):
        def __len__(self):
            return len(samples)

        def __getitem__(self, i):
            s = samples[i]
            img = pad_to_multiple(s.prep.image, multiple)
            item = encoder.encode(img, s.xy, s.radius, s.group)
            item["input"] = to_input(img)
            item["index"] = i
            item["exemplar"] = np.float32(0)
            return item

    return _EvalImages()


def interleaved_batches(n_new: int, n_ex: int, batch_size: int, every: int, rng) -> list[list[int]]:
    """Replay schedule (EPicker's continual learning, pickers.md §D2) as index batches over
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
    to_input: Callable,
    batch_size: int,
    num_workers: int = 0,
    repeat: int = 1,
    exemplar_samples=None,
    exemplar_every: int = 8,
    multiple: int = 32,
):
    """Lightning DataModule: augmented training views (interleaved with exemplar replay when
    ``exemplar_samples`` is given) and whole validation micrographs (batch size 1)."""
    import pytorch_lightning as pl
    import torch

    collate = _collate(encoder)

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
            new = make_train_dataset(train_samples, augmenter, encoder, to_input, repeat)
            if exemplar_samples:
                ex = make_train_dataset(exemplar_samples, augmenter, encoder, to_input, 1,
                                        exemplar=True)
                ds = torch.utils.data.ConcatDataset([new, ex])
                return torch.utils.data.DataLoader(
                    ds,
                    batch_sampler=_Interleaved(len(new), len(ex)),
                    num_workers=num_workers,
                    collate_fn=collate,
                )
            return torch.utils.data.DataLoader(
                new,
                batch_size=batch_size,
                shuffle=True,
                drop_last=len(new) > batch_size and len(new) % batch_size == 1,
                num_workers=num_workers,
                collate_fn=collate,
                persistent_workers=num_workers > 0,
            )

        def val_dataloader(self):
            if not val_samples:
                return []
            return torch.utils.data.DataLoader(
                make_eval_dataset(val_samples, encoder, to_input, multiple),
                batch_size=1,
                num_workers=num_workers,
                collate_fn=collate,
            )

    return PickerDataModule()
