"""Box geometry in torch (no torchvision here): conversions, IoU, CIoU and greedy NMS.

Boxes are ``(x1, y1, x2, y2)`` in px unless a name says ``cxcywh``.
"""

from __future__ import annotations

import math

import torch

MAX_DET = 30_000  # PartiNet raised YOLOv7's 300 to 30 000 picks per image


def cxcywh_to_xyxy(b: torch.Tensor) -> torch.Tensor:
    half = b[..., 2:4] / 2
    return torch.cat([b[..., :2] - half, b[..., :2] + half], -1)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU (n, m) of xyxy boxes."""
    area_a = (a[:, 2] - a[:, 0]).clamp(0) * (a[:, 3] - a[:, 1]).clamp(0)
    area_b = (b[:, 2] - b[:, 0]).clamp(0) * (b[:, 3] - b[:, 1]).clamp(0)
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(0).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter + 1e-9)


def ciou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Complete IoU of matched xyxy boxes (n,) (Zheng et al., AAAI 2020):
    IoU − ρ²/c² − α·v with ρ the centre distance, c the diagonal of the enclosing box,
    v = 4/π²·(atan(w_b/h_b) − atan(w_a/h_a))² and α = v / (1 − IoU + v)."""
    w1, h1 = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1] + eps
    w2, h2 = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1] + eps
    iw = (torch.min(a[:, 2], b[:, 2]) - torch.max(a[:, 0], b[:, 0])).clamp(0)
    ih = (torch.min(a[:, 3], b[:, 3]) - torch.max(a[:, 1], b[:, 1])).clamp(0)
    inter = iw * ih
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    cw = torch.max(a[:, 2], b[:, 2]) - torch.min(a[:, 0], b[:, 0])
    ch = torch.max(a[:, 3], b[:, 3]) - torch.min(a[:, 1], b[:, 1])
    c2 = cw**2 + ch**2 + eps
    rho2 = ((a[:, 0] + a[:, 2] - b[:, 0] - b[:, 2]) ** 2
            + (a[:, 1] + a[:, 3] - b[:, 1] - b[:, 3]) ** 2) / 4
    v = (4 / math.pi**2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)) ** 2
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_thres: float,
        max_det: int = MAX_DET) -> torch.Tensor:
    """Greedy NMS: indices of kept boxes, best first. A box is dropped when its IoU with a
    better kept box is above ``iou_thres``; at most ``max_det`` are kept."""
    order = torch.argsort(scores, descending=True)
    boxes = boxes[order]
    n = boxes.shape[0]
    alive = torch.ones(n, dtype=torch.bool, device=boxes.device)
    keep = []
    for i in range(n):
        if not alive[i]:
            continue
        keep.append(i)
        if len(keep) >= max_det:
            break
        if i + 1 < n:
            iou = box_iou(boxes[i : i + 1], boxes[i + 1 :])[0]
            alive[i + 1 :] &= iou <= iou_thres
    return order[torch.tensor(keep, dtype=torch.long, device=boxes.device)]


def postprocess(pred: torch.Tensor, conf_thres: float, iou_thres: float,
                max_det: int = MAX_DET) -> list[torch.Tensor]:
    """Decoded predictions (B, N, 5: objectness logit, cx, cy, w, h) → per image (k, 6):
    ``x1 y1 x2 y2 conf cls`` (cls 0), confidence > ``conf_thres``, after NMS."""
    out = []
    for p in pred:
        conf = torch.sigmoid(p[:, 0])
        m = conf > conf_thres
        b = cxcywh_to_xyxy(p[m, 1:5])
        c = conf[m]
        k = nms(b, c, iou_thres, max_det)
        out.append(torch.cat([b[k], c[k, None], torch.zeros_like(c[k, None])], 1))
    return out
