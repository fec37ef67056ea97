"""DynamicDet's losses (pickers.md §A2): per-head detection loss with a SimOTA assigner, the
joint step-1 loss and the step-2 adaptive router loss with its running-median offset.

Per head and image (YOLOv7's ``ComputeLossOTA`` shape, single class so no class loss):
``lbox`` = mean(1 − CIoU) over assigned cells, ``lobj`` = Σ_levels w_level · mean BCE(objectness,
IoU.detach().clamp(0) at assigned cells, 0 elsewhere) with the YOLOv7 level weights; the image's
loss is ``box_gain·lbox + obj_gain·lobj`` with ``box_gain = 0.05·3/nl`` and
``obj_gain = 0.7·(img/640)²·3/nl``. A batch's head loss is the sum over its images (YOLO's
mean × batch size).

Assigner: SimOTA (the dynamic-k simplification of OTA that YOLOv7's ``ComputeLossOTA`` and
YOLOX use): candidate cells of a particle are those whose centre lies in its box or within
2.5 strides of its centre; cost = BCE(objectness, 1) + 3·(−log IoU) (+10⁵ unless both
conditions hold); each particle takes its k lowest-cost candidates with k = ⌊Σ top-10 IoU⌋ ≥ 1;
a cell claimed by several particles goes to the cheapest. This is the dynamic-k matching
YOLOv7's OTA loss runs (not the Sinkhorn OTA of Ge et al. 2021); its candidate regions are
YOLOX's because the heads are anchor-free (``network``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from trainers.dynamicdet.boxes import box_iou, ciou, cxcywh_to_xyxy
from trainers.dynamicdet.network import LEVEL_WEIGHTS, decode_level

CENTRE_RADIUS = 2.5  # strides
TOPK_IOU = 10
IOU_COST = 3.0


def grid_info(outs: list[torch.Tensor], strides: list[int]):
    """Cell centres (N, 2) in px, each cell's stride (N,) and level (N,)."""
    centres, cell_stride, level = [], [], []
    for i, (p, s) in enumerate(zip(outs, strides)):
        h, w = p.shape[-2:]
        gy, gx = torch.meshgrid(torch.arange(h, device=p.device),
                                torch.arange(w, device=p.device), indexing="ij")
        c = (torch.stack([gx, gy], -1).reshape(-1, 2).float() + 0.5) * s
        centres.append(c)
        cell_stride.append(torch.full((h * w,), float(s), device=p.device))
        level.append(torch.full((h * w,), i, device=p.device, dtype=torch.long))
    return torch.cat(centres), torch.cat(cell_stride), torch.cat(level)


@torch.no_grad()
def simota(pred_xyxy, obj_logit, centres, cell_stride, gt_xyxy):
    """Assignment for one image: (foreground mask (N,), matched particle index (N,))."""
    n, m = pred_xyxy.shape[0], gt_xyxy.shape[0]
    fg = torch.zeros(n, dtype=torch.bool, device=pred_xyxy.device)
    match = torch.full((n,), -1, dtype=torch.long, device=pred_xyxy.device)
    if m == 0:
        return fg, match
    cx, cy = centres[:, 0:1], centres[:, 1:2]
    in_box = ((cx > gt_xyxy[:, 0]) & (cx < gt_xyxy[:, 2]) & (cy > gt_xyxy[:, 1])
              & (cy < gt_xyxy[:, 3])).T  # (m, N)
    gc = (gt_xyxy[:, :2] + gt_xyxy[:, 2:]) / 2
    r = CENTRE_RADIUS * cell_stride
    in_ctr = (((cx.T - gc[:, 0:1]).abs() < r) & ((cy.T - gc[:, 1:2]).abs() < r))
    cand = (in_box | in_ctr).any(0)
    ci = torch.nonzero(cand).squeeze(1)
    if ci.numel() == 0:
        return fg, match
    iou = box_iou(gt_xyxy, pred_xyxy[ci])  # (m, c)
    obj_cost = F.binary_cross_entropy_with_logits(
        obj_logit[ci], torch.ones_like(obj_logit[ci]), reduction="none")
    cost = (obj_cost[None, :] + IOU_COST * -torch.log(iou + 1e-8)
            + 1e5 * (~(in_box[:, ci] & in_ctr[:, ci])).float())
    k = torch.clamp(iou.topk(min(TOPK_IOU, ci.numel()), dim=1).values.sum(1).int(), min=1)
    matching = torch.zeros_like(cost, dtype=torch.bool)
    for g in range(m):
        sel = torch.topk(cost[g], int(min(k[g], ci.numel())), largest=False).indices
        matching[g, sel] = True
    several = matching.sum(0) > 1
    if several.any():
        best = cost[:, several].argmin(0)
        matching[:, several] = False
        matching[best, torch.nonzero(several).squeeze(1)] = True
    pos = matching.any(0)
    fg[ci[pos]] = True
    match[ci[pos]] = matching[:, pos].float().argmax(0)
    return fg, match


def head_loss(outs: list[torch.Tensor], strides: list[int], targets: torch.Tensor,
              img_size: float) -> tuple[torch.Tensor, dict]:
    """Per-image losses (B,) of one head. ``targets`` (n, 5): image index, cx, cy, w, h (px).
    Also returns the batch means of ``lbox`` and ``lobj`` for logging."""
    nl = len(outs)
    box_gain = 0.05 * 3 / nl
    obj_gain = 0.7 * (img_size / 640) ** 2 * 3 / nl
    weights = LEVEL_WEIGHTS.get(nl, [1.0] * nl)
    dec = torch.cat([decode_level(p, s) for p, s in zip(outs, strides)], 1)  # (B, N, 5)
    centres, cell_stride, level = grid_info(outs, strides)
    b = dec.shape[0]
    per_image = []
    lbox_all, lobj_all = [], []
    for i in range(b):
        t = targets[targets[:, 0] == i, 1:5]
        gt = cxcywh_to_xyxy(t)
        pred = cxcywh_to_xyxy(dec[i, :, 1:5])
        fg, match = simota(pred.detach(), dec[i, :, 0].detach(), centres, cell_stride, gt)
        tobj = torch.zeros_like(dec[i, :, 0])
        if fg.any():
            c = ciou(pred[fg], gt[match[fg]])
            lbox = (1.0 - c).mean()
            tobj[fg] = c.detach().clamp(0).to(tobj.dtype)
        else:
            lbox = dec.new_zeros(())
        bce = F.binary_cross_entropy_with_logits(dec[i, :, 0], tobj, reduction="none")
        lobj = sum(weights[lv] * bce[level == lv].mean() for lv in range(nl))
        per_image.append(box_gain * lbox + obj_gain * lobj)
        lbox_all.append(lbox.detach())
        lobj_all.append(lobj.detach())
    parts = {"lbox": torch.stack(lbox_all).mean(), "lobj": torch.stack(lobj_all).mean()}
    return torch.stack(per_image), parts


class MedianOffset:
    """Δ: the running median of L1 − L2 over every image seen so far (recomputed at each
    update for the first 10 000 updates, then every 1 000, as DynamicDet)."""

    def __init__(self):
        self.diffs: list[float] = []
        self.value = 0.0
        self.updates = 0

    def update(self, diffs) -> float:
        self.diffs.extend(float(d) for d in np.atleast_1d(diffs))
        self.updates += 1
        if self.updates <= 10_000 or self.updates % 1_000 == 0:
            self.value = float(np.median(self.diffs))
        return self.value

    def state(self) -> dict:
        return {"diffs": list(self.diffs), "value": self.value, "updates": self.updates}

    def load(self, st: dict) -> None:
        self.diffs = list(st.get("diffs", []))
        self.value = float(st.get("value", 0.0))
        self.updates = int(st.get("updates", 0))


def router_loss(score: torch.Tensor, l1: torch.Tensor, l2: torch.Tensor,
                offset: MedianOffset) -> tuple[torch.Tensor, dict]:
    """L = mean over images of s·(L1 − Δ/2) + (1 − s)·(L2 + Δ/2), L1 and L2 detached, Δ the
    running median of L1 − L2 after adding this batch's images."""
    l1, l2 = l1.detach(), l2.detach()
    delta = offset.update((l1 - l2).cpu().numpy())
    loss = (score * (l1 - delta / 2) + (1 - score) * (l2 + delta / 2)).mean()
    return loss, {"diff": (l1 - l2).mean(), "s": score.mean().detach(),
                  "delta": torch.tensor(delta)}
