"""The tomogram picker's Lightning task: cet_pick's ``TomoCRSemiLoss`` on the shared core.

Training batches hold pairs of crops (B, 2, 6, 64, 64) and their flipped views; validation
batches whole volumes (1, D, H, W). Loss: PU focal (``--tau``; plain focal with ``--pn``), and
with ``--contrastive`` + ``cr_weight``·(L_sup + 0.1·L_unsup) + MSE between the views'
heatmaps. Validation: plain focal loss, decoded picks scored by the core at radius 0.5·bbox,
and one debug picture per validation tomogram (``debug/``). Every epoch writes cet_pick-style
``model_last_contrastive.pth``; every validation ``model_N.pth`` (``--save_all``) or
``model_last.pth``, and ``val_metrics.json`` (the driver writes it again at the end).

What the validation's best-F1 threshold means (``summary.best_threshold``): a heatmap peak
score, sigmoid of the ``hm`` head at a local maximum, the very number ``pick tomo
--out_thresh`` filters on. Validation decodes the whole volume as ``pick tomo`` does (the same
top-``K``, ``nms`` kernel, ``cutoff_z`` and edge) with no score threshold; cutting the top-K
list at T afterwards is what ``pick --out_thresh T`` does, so the picks of score > T are
``pick``'s (with the run's ``K``, ``nms`` and ``cutoff_z``). The evaluation counts scores ≥ T,
so a pick scored exactly T is the one difference. A run that validates on its training
tomograms (no validation list, as cet_pick) writes ``train_metrics.json`` instead: a threshold
fitted to the training data is no pick threshold (``hparams['val_on_train']``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from trainers.core import VAL_METRICS
from trainers.core.task import BasePickerTask
from trainers.tomopicker import losses as L
from trainers.tomopicker.decode import EDGE, decode
from trainers.tomopicker.network import TomoNet

UNSUP_WEIGHT = 0.1  # cet_pick: cr = L_sup + 0.1·L_unsup
# the validation summary of a run validated on its training tomograms (same format)
TRAIN_METRICS = "train_metrics.json"


class TomoTask(BasePickerTask):
    def __init__(self, options: dict):
        super().__init__(options)
        self.debug_dir: Path | None = None
        self._debug: list = []
        self._gen = torch.Generator().manual_seed(int(options.get("seed", 317)))

    def build_network(self):
        h = self.hparams
        return TomoNet(h["arch"], int(h["head_conv"]), int(h["last_k"]))

    def forward(self, x):
        if x.dim() == 5:  # (B, 2, D, H, W) pairs of crops
            x = x.reshape(-1, *x.shape[2:])
        heads = ("hm", "proj") if self.training and self.hparams["contrastive"] else ("hm",)
        return self.net(x, heads)

    def eval_diameter(self) -> float:
        return float(self.hparams["bbox"])

    def val_threshold(self) -> float | None:
        return float(self.hparams["out_thresh"])

    def compute_loss(self, out, batch):
        h = self.hparams
        pred = L.prob(out["hm"])[:, 0]
        gt = batch["hm"].reshape(pred.shape)
        if not self.training:
            loss = L.focal_loss(pred, gt)
            return loss, {"hm_loss": loss.detach()}
        hm = L.focal_loss(pred, gt) if h["pn"] else L.pu_loss(pred, gt, float(h["tau"]))
        parts = {"hm_loss": hm.detach()}
        if not h["contrastive"]:
            return hm, parts
        aug = batch["input_aug"]
        out2 = self.net(aug.reshape(-1, *aug.shape[2:]), ("hm", "proj"))
        flip = batch["flip_ud"].reshape(-1).repeat_interleave(aug.shape[1])
        labels, p1, p2, f1, f2 = L.flatten_views(out, out2, gt, flip)
        rows = L.sample_rows(labels, float(h["thresh"]), int(h["cr_samples"]), self._gen)
        l_sup, l_unsup = L.contrastive_loss(labels, p1, p2, f1, f2, float(h["temp"]),
                                            float(h["tau"]), float(h["thresh"]),
                                            rows.to(labels.device))
        cr = l_sup + UNSUP_WEIGHT * l_unsup
        cons = L.consistency_loss(p1, p2)
        parts.update(cr_loss=cr.detach(), consis_loss=cons.detach())
        return hm + float(h["cr_weight"]) * cr + cons, parts

    def decode_batch(self, out, valid_hw):
        h = self.hparams
        heat = L.prob(out["hm"])[0, 0]
        p = decode(heat, int(h["K"]), int(h["nms"]), 0.0, int(h["cutoff_z"]),
                   edge=int(h.get("edge", EDGE)), valid_dhw=tuple(valid_hw))
        if self.debug_dir is not None:
            self._debug.append((heat.detach().cpu().numpy(), p))
        return [p]

    # --- cet_pick-style outputs ----------------------------------------------------------
    def on_validation_epoch_start(self):
        super().on_validation_epoch_start()
        self._debug = []

    def on_validation_epoch_end(self):
        super().on_validation_epoch_end()
        if self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        epoch = self.current_epoch + 1
        if self.debug_dir is not None:
            from trainers.tomopicker.debug import debug_picture

            by_name = {s.prep.name: s for s in self.val_samples}
            for name, (heat, picks) in zip(self._val_seen, self._debug):
                s = by_name[name]
                debug_picture(s, heat, picks, int(self.hparams["bbox"]),
                              self.debug_dir / f"epoch{epoch:03d}_{name}.png")
        self._debug = []
        mark = epoch if self.hparams["save_all"] else "last"
        self.save_pth(f"model_{mark}.pth")
        run_dir = self.hparams.get("run_dir")
        if self.last_eval is not None and run_dir:
            (Path(run_dir) / self.metrics_name()).write_text(self.last_eval.to_json())

    def metrics_name(self) -> str:
        """The file of this run's validation summary (see the module docstring)."""
        return TRAIN_METRICS if self.hparams.get("val_on_train") else VAL_METRICS

    def on_train_epoch_end(self):
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            self.save_pth("model_last_contrastive.pth")

    def save_pth(self, name: str) -> None:
        run_dir = self.hparams.get("run_dir")
        if not run_dir:
            return
        opts = self.trainer.optimizers
        torch.save({"epoch": self.current_epoch + 1,
                    "state_dict": self.net.state_dict(),
                    "optimizer": opts[0].state_dict() if opts else None,
                    "hyper_parameters": dict(self.hparams)}, Path(run_dir) / name)

