"""The DynamicDet Lightning task: ``stage`` ``step1`` (both detectors, loss L1 + L2) or
``step2`` (router only: every other parameter frozen, BatchNorm kept in eval mode so no running
statistic moves, adaptive router loss). Validation decodes head 2 in step 1 and the routed
prediction (score ≥ ``dy_thres``) in step 2, scored by the core at radius 0.5 × diameter.

What the validation's best-F1 threshold means (``val_metrics.json``, ``summary.best_threshold``,
written after every validation and at the end of training): a confidence, sigmoid(objectness)
of a box after NMS, the very number ``detect --conf-thres`` filters on. Validation keeps every
candidate above :data:`VAL_CONF`, runs the NMS of ``detect`` (``iou_thres``) on the letterboxed
micrograph ``detect`` sees, through the head ``detect`` routes it to in step 2 (the router at
``dy_thres``, as ``detect --dy-thres``, 0.5 by default; not with another ``--dy-thres`` or
``--easy-fraction``). Step 1 validates head 2 alone, while ``detect`` routes a step-1 model by
its untrained router: the pipelines read the step-2 run's threshold. Filtering before greedy
NMS keeps exactly the boxes above the threshold that NMS keeps of all candidates (a box is
suppressed only by a better one), so ``detect --conf-thres T`` gives the validation's picks of
confidence > T. The evaluation counts scores ≥ T, so a pick scored exactly T differs; and
``detect`` clips boxes to the micrograph, which moves the centres of boxes crossing its border.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from trainers.core import VAL_METRICS
from trainers.core.task import BasePickerTask
from trainers.dynamicdet import loss as L
from trainers.dynamicdet.boxes import postprocess
from trainers.dynamicdet.network import DynamicDet, decode_head

VAL_CONF = 0.001  # every candidate for the validation P/R curves (YOLOv7's test.py)


class DynamicDetTask(BasePickerTask):
    """Options used (``hparams``): model_cfg (a :data:`network.SIZES` entry), stage, lr,
    weight_decay, img_size, diameter (input px), iou_thres, dy_thres."""

    def __init__(self, options: dict):
        super().__init__(options)
        self.offset = L.MedianOffset()
        if self.stage == "step2":
            for n, p in self.net.named_parameters():
                p.requires_grad_(n.startswith("router."))

    @property
    def stage(self) -> str:
        return str(self.hparams.get("stage", "step1"))

    def build_network(self):
        return DynamicDet(dict(self.hparams["model_cfg"]))

    def train(self, mode: bool = True):
        super().train(mode)
        if self.stage == "step2":
            self._freeze_bn()
        return self

    def _freeze_bn(self):
        for m in self.net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()

    def forward(self, x):
        if self.stage != "step2":
            return self.net(x)
        net = self.net
        # Lightning restores each submodule's own mode around validation; set BN to eval at
        # every step so no running statistic moves
        self._freeze_bn()
        with torch.no_grad():  # step 2 trains the router only; the detectors are constants
            f1 = net.backbone1(x)
            p1, p2 = net.head1(f1), net.head2(net.second(x, f1))
        return {"p1": p1, "p2": p2, "score": net.router([f.detach() for f in f1])}

    def compute_loss(self, out, batch):
        img = float(self.hparams["img_size"])
        st = self.net.strides
        l1, a = L.head_loss(out["p1"], st, batch["targets"], img)
        l2, b = L.head_loss(out["p2"], st, batch["targets"], img)
        parts = {"box1": a["lbox"], "obj1": a["lobj"], "box2": b["lbox"], "obj2": b["lobj"],
                 "loss1": l1.detach().mean(), "loss2": l2.detach().mean()}
        if self.stage == "step2":
            if not self.training:
                return (l1.mean() + l2.mean()).detach(), parts
            loss, extra = L.router_loss(out["score"], l1, l2, self.offset)
            return loss, {**parts, **extra}
        return l1.sum() + l2.sum(), parts

    def decode_batch(self, out, valid_hw):
        h = self.hparams
        use2 = self.stage != "step2" or float(out["score"][0]) < float(h.get("dy_thres", 0.5))
        pred = decode_head(out["p2"] if use2 else out["p1"], self.net.strides)
        det = postprocess(pred.float(), VAL_CONF, float(h.get("iou_thres", 0.2)))[0]
        xy = ((det[:, 0:2] + det[:, 2:4]) / 2).cpu().numpy().astype(np.float64)
        ok = (xy[:, 0] < valid_hw[-1]) & (xy[:, 1] < valid_hw[-2])
        return [{"xy": xy[ok], "score": det[ok, 4].cpu().numpy()}]

    def eval_diameter(self) -> float:
        return float(self.hparams["diameter"])

    def on_validation_epoch_end(self):
        super().on_validation_epoch_end()
        # after every validation, not only at the end (the driver writes the same file then):
        # a run stopped early still tells pipelines and the report its threshold
        if self.last_eval is not None and self.trainer.is_global_zero and \
                self.hparams.get("run_dir") and not self.trainer.sanity_checking:
            (Path(self.hparams["run_dir"]) / VAL_METRICS).write_text(self.last_eval.to_json())

    def on_save_checkpoint(self, checkpoint):
        checkpoint["router_offset"] = self.offset.state()

    def on_load_checkpoint(self, checkpoint):
        self.offset.load(checkpoint.get("router_offset", {}))

    def configure_optimizers(self):
        params = [p for p in self.net.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=float(self.hparams["lr"]),
                                 weight_decay=float(self.hparams.get("weight_decay", 5e-4)))
