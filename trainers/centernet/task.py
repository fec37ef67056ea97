"""CenterNet picker task (EPicker-like): network, losses per mode, continual-learning terms and
decoding, on top of :class:`trainers.core.task.BasePickerTask`."""

from __future__ import annotations

import torch

from trainers.centernet import losses as L
from trainers.centernet.decode import decode
from trainers.centernet.network import CenterNet
from trainers.centernet.view import to_input
from trainers.core.task import BasePickerTask

# EPicker's continual-learning coefficients (pickers.md §D2)
DISTILL_WEIGHT = 0.1
ANCHOR_WEIGHT = 0.01
SIZE_WEIGHT = 0.1  # vesicle mode: L = hm + 0.1·wh + off


class CenterNetTask(BasePickerTask):
    """Options used (``hparams``): width, blocks, head_conv, mode, particle_size, lr, lr_step,
    sparse_anno, pu_prior, K, vis_thresh, edge, min_distance, continual."""

    def __init__(self, options: dict, old_state: dict | None = None):
        super().__init__(options)
        self.old_net = None
        if options.get("continual"):
            # the frozen old model; its weights are also the anchor θ_old
            self.old_net = self.build_network()
            if old_state is not None:
                self.old_net.load_state_dict(old_state)
            for p in self.old_net.parameters():
                p.requires_grad_(False)
            self._anchor = set(L.anchor_names(self.net))

    def build_network(self):
        h = self.hparams
        return CenterNet(width=int(h["width"]), blocks=int(h["blocks"]),
                         head_conv=int(h["head_conv"]))

    def train(self, mode: bool = True):
        super().train(mode)
        if self.old_net is not None:
            self.old_net.eval()  # frozen BN statistics
        return self

    def eval_diameter(self) -> float:
        return float(self.hparams["particle_size"])

    def val_threshold(self) -> float | None:
        return self.hparams.get("vis_thresh") or None

    def schedule(self, optimizer):
        steps = [int(s) for s in str(self.hparams.get("lr_step") or "").split(",") if s.strip()]
        if not steps:
            return None
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=steps, gamma=0.1)

    def heatmap_loss(self, pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        h = self.hparams
        if h.get("pu_prior"):
            return L.nnpu_loss(pred, gt, float(h["pu_prior"]))
        if h.get("sparse_anno"):
            return L.sparse_loss(pred, gt)
        return L.focal_loss(pred, gt)

    def compute_loss(self, out, batch):
        pred = L.prob(out["hm"])
        is_ex = bool(batch["replay"].max() > 0) if "replay" in batch else False
        # replayed exemplars are fully labelled: plain focal loss on them
        hm = L.focal_loss(pred, batch["hm"]) if is_ex else self.heatmap_loss(pred, batch["hm"])
        off = L.reg_l1(out["reg"], batch["mask"], batch["ind"], batch["reg"])
        parts = {"hm_loss": hm.detach(), "off_loss": off.detach()}
        loss = hm + off
        if self.hparams["mode"] == "vesicle":
            wh = L.reg_l1(out["wh"], batch["wh_mask"], batch["ind"], batch["wh"])
            loss = loss + SIZE_WEIGHT * wh
            parts["wh_loss"] = wh.detach()
        if self.old_net is not None and is_ex and self.training:
            with torch.no_grad():
                old = self.old_net(batch["input"])
            fea = DISTILL_WEIGHT * L.distillation_loss(out, old)
            old_params = {n: p for n, p in self.old_net.named_parameters() if n in self._anchor}
            anchor = ANCHOR_WEIGHT * L.anchor_loss(self.net, old_params)
            loss = loss + fea + anchor
            parts["distill_loss"] = fea.detach()
            parts["anchor_loss"] = anchor.detach()
        return loss, parts

    def decode_batch(self, out, valid_hw):
        h = self.hparams
        picks = decode(
            out, K=int(h["K"]), vis_thresh=0.0, edge=to_input(h["edge"], h),
            min_distance=to_input(h["min_distance"], h), valid_hw=tuple(valid_hw),
        )
        if h["mode"] == "particle":
            for p in picks:
                p["radius"][:] = float(h["particle_size"]) / 2
        return picks

    def state_dict_for_picking(self) -> dict:
        return self.net.state_dict()
