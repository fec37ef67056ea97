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
                       replay: bool = False):
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
            item["replay"] = np.float32(replay)
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
            item["replay"] = np.float32(0)
            return item

    return _EvalImages()


def make_datamodule(
    train_samples,
    val_samples,
    encoder,
    augmenter,
    to_input: Callable,
    batch_size: int,
    num_workers: int = 0,
    repeat: int = 1,
    replay_samples=None,
    replay_batches: Callable | None = None,
    multiple: int = 32,
):
    """Lightning DataModule: augmented training views and whole validation micrographs (batch
    size 1). ``replay_samples`` (e.g. a continual learner's exemplars) are training views too,
    flagged ``item["replay"] = 1``; ``replay_batches(n_new, n_replay, batch_size, rng)`` returns
    the epoch's index batches over ``ConcatDataset([new, replay])`` (the picker's schedule)."""
    import pytorch_lightning as pl
    import torch

    collate = _collate(encoder)

    class _Schedule(torch.utils.data.Sampler):
        def __init__(self, n_new, n_replay):
            self.n_new, self.n_replay = n_new, n_replay

        def __iter__(self):
            rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,))))
            yield from replay_batches(self.n_new, self.n_replay, batch_size, rng)

        def __len__(self):
            return len(replay_batches(self.n_new, self.n_replay, batch_size,
                                      np.random.default_rng(0)))

    class PickerDataModule(pl.LightningDataModule):
        def train_dataloader(self):
            new = make_train_dataset(train_samples, augmenter, encoder, to_input, repeat)
            if replay_samples:
                if replay_batches is None:
                    raise ValueError("replay samples need a replay_batches schedule")
                ex = make_train_dataset(replay_samples, augmenter, encoder, to_input, 1,
                                        replay=True)
                return torch.utils.data.DataLoader(
                    torch.utils.data.ConcatDataset([new, ex]),
                    batch_sampler=_Schedule(len(new), len(ex)),
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
