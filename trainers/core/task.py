"""The one Lightning task every picker subclasses (torchgeo's shape).

A picker provides ``build_network``, ``compute_loss``, ``decode_batch`` and
``eval_diameter``; optionally ``val_threshold`` and ``schedule``. The base class runs
training/validation, decodes validation micrographs, scores them with
:func:`trainers.evaluate.evaluate_picks` at radius 0.5 × particle diameter (2D or 3D, from the
picks' columns) and logs ``val/f1``, ``val/best_f1``, ``val/auprc``, ``val/precision``,
``val/recall`` and losses. ``hparams`` holds the run options (a plain dict saved in the
checkpoints; ``lr`` is the Adam learning rate).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch

from trainers.evaluate import evaluate_picks


def _one(out, i: int, n: int):
    """Image ``i`` of a batch's network output (a tensor or a dict of tensors; any other
    output, e.g. a tuple of heads, as it is when the batch holds one image)."""
    if n == 1:
        return out
    if isinstance(out, dict):
        return {k: v[i : i + 1] for k, v in out.items()}
    return out[i : i + 1]


class BasePickerTask(pl.LightningModule):
    """Base task; ``val_samples`` (set by the driver) are the validation micrographs."""

    def __init__(self, options: dict):
        super().__init__()
        self.save_hyperparameters(dict(options))
        self.net = self.build_network()
        self.val_samples: list = []  # data, not model state: not saved
        self._val_picks: list[pd.DataFrame] = []
        self._val_seen: list[str] = []
        self.last_eval = None

    # --- hooks for pickers ---------------------------------------------------------------
    def build_network(self) -> torch.nn.Module:
        raise NotImplementedError

    def compute_loss(self, out, batch: dict) -> tuple[torch.Tensor, dict]:
        """Returns (total loss, {name: tensor} parts to log)."""
        raise NotImplementedError

    def decode_batch(self, out, valid_hw: tuple[int, ...]) -> list[dict]:
        """Picks per image at the input scale: dicts with ``xy`` (n, 2) or (n, 3) and
        ``score`` (n,)."""
        raise NotImplementedError

    def eval_diameter(self) -> float:
        """Particle diameter in input px, for the validation matching radius."""
        raise NotImplementedError

    def val_threshold(self) -> float | None:
        """Score threshold of the logged precision/recall/F1 (None: every pick)."""
        return None

    def schedule(self, optimizer):
        """A learning-rate scheduler for ``optimizer`` (None: constant)."""
        return None

    # --- Lightning -----------------------------------------------------------------------
    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        out = self(batch["input"])
        loss, parts = self.compute_loss(out, batch)
        bs = batch["input"].shape[0]
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=bs)
        for k, v in parts.items():
            self.log(f"train/{k}", v, on_step=False, on_epoch=True, batch_size=bs)
        return loss

    def on_validation_epoch_start(self):
        self._val_picks = []
        self._val_seen = []

    def validation_step(self, batch, batch_idx):
        out = self(batch["input"])
        loss, _ = self.compute_loss(out, batch)
        self.log("val/loss", loss, on_epoch=True, batch_size=1, sync_dist=True)
        index = batch["index"].tolist()
        for i, idx in enumerate(index):
            s = self.val_samples[idx]
            self._val_seen.append(s.prep.name)
            p = self.decode_batch(_one(out, i, len(index)), s.prep.image.shape)[0]
            xy = np.asarray(p["xy"], dtype=np.float64)
            scale = [s.prep.sx, s.prep.sy, s.prep.sz][: xy.shape[1]]
            cols = {c: xy[:, j] / scale[j] for j, c in enumerate(("x", "y", "z")[: xy.shape[1]])}
            self._val_picks.append(
                pd.DataFrame({"micrograph": s.prep.name, **cols, "score": p["score"]})
            )

    def on_validation_epoch_end(self):
        if not self.val_samples or self.trainer.sanity_checking or not self._val_picks:
            return
        from trainers.core.dataset import samples_frame

        picks = pd.concat(self._val_picks, ignore_index=True)
        # under DDP each rank scores the micrographs it decoded; the logged numbers are the
        # ranks' mean (sync_dist), exact on one device
        seen = set(self._val_seen)
        samples = [s for s in self.val_samples if s.prep.name in seen]
        truth = samples_frame(samples)
        scale = float(np.mean([s.prep.sx for s in samples]))
        radius = 0.5 * self.eval_diameter() / scale
        res = evaluate_picks(picks, truth, radius, threshold=self.val_threshold(),
                             micrographs=sorted(seen))
        self.last_eval = res
        for k in ("best_f1", "auprc", "precision", "recall", "f1"):
            v = res.summary[k]
            self.log(f"val/{k}", float(v) if v == v else 0.0, sync_dist=True)

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.net.parameters(), lr=float(self.hparams["lr"]))
        sched = self.schedule(opt)
        if sched is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": sched}
