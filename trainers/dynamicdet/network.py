"""The DynamicDet network (pickers.md §A1): two backbones, two detection heads, composite
connections and the adaptive router, with routed inference.

Sizes come from one table, :data:`SIZES`: ``tiny`` (CPU tests and the demo), ``yolov7``-like
(P3–P5, 640 px) and ``w6``-like (P3–P6, 1280 px, PartiNet's default). The backbones are
YOLO-style (stride-2 conv + residual SiLU blocks per stage), lighter than YOLOv7's ELAN blocks
(pickers.md §H1 allows it as long as composite connections, router and two heads are kept).

**Anchor-free heads** (YOLOX-style: per cell objectness and a box ``(x, y, w, h)`` with
``xy = (grid + 2·σ(t) − 0.5)·stride``, ``wh = exp(t)·stride``). Why not k-means anchors:
cryo-EM labels are squares of one particle diameter per data set, so fitted anchors collapse to
one size that must be refitted whenever the magnification or the particle changes; an
anchor-free head with the SimOTA assigner (:mod:`trainers.dynamicdet.loss`) chooses the level
per particle by cost instead, and a checkpoint keeps working on another particle size.

Composite connections (CBNetV2 "dense higher-level composition", as DynamicDet's
``CBLinear``/``CBFuse``): every backbone-1 stage output goes through one 1×1 conv (with bias, no
BN) whose output is split into one chunk per backbone-2 stage at or below its level; each chunk
is nearest-upsampled to that stage's resolution and summed into the stage right after its
stride-2 downsampling. Backbone 2 starts from the raw image through its own stem
(``keep_input: True`` as ``dy-yolov7``).

Router: global average pool of every backbone-1 stage, concatenated → 1×1 conv C→C/4 → ReLU →
1×1 conv → sigmoid = the "easy" score (1 − difficulty). Routing: an image whose score is at
least the threshold runs backbone 1 + head 1 only; the others run backbone 2 + head 2.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

# name → stage widths (stride 2, 4, 8, …), residual blocks per stage, detection levels (the
# last ``levels`` stages: P3–P5 or P3–P6), neck width, default input size (PartiNet letterboxes
# to --img-size with stride 64)
SIZES: dict[str, dict] = {
    "tiny": {"widths": [16, 24, 32, 48, 64], "depth": 1, "levels": 3, "neck": 32,
             "img_size": 640, "ch": 3},
    "yolov7": {"widths": [32, 64, 128, 256, 512], "depth": 2, "levels": 3, "neck": 128,
               "img_size": 640, "ch": 3},
    "w6": {"widths": [32, 64, 128, 256, 384, 512], "depth": 2, "levels": 4, "neck": 128,
           "img_size": 1280, "ch": 3},
}
# BCE objectness weights per level (YOLOv7's balance: P3–P5, P3–P6)
LEVEL_WEIGHTS = {3: [4.0, 1.0, 0.4], 4: [4.0, 1.0, 0.25, 0.06]}
OBJ_PRIOR = -4.6  # sigmoid ≈ 0.01: few cells hold a particle


def config_of(size: str) -> dict:
    if size not in SIZES:
        raise ValueError(f"--cfg {size!r}: unknown model size (known: {', '.join(SIZES)})")
    return {"name": size, **SIZES[size]}


def conv(cin: int, cout: int, k: int = 3, s: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.SiLU(inplace=True))


class Residual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.a, self.b = conv(c, c, 1), conv(c, c, 3)

    def forward(self, x):
        return x + self.b(self.a(x))


class Backbone(nn.Module):
    """Stages at strides 2, 4, 8, …; stage 0 is the stem. ``forward(x, fuse)`` adds
    ``fuse[k]`` (a tensor or None) right after stage k's stride-2 conv."""

    def __init__(self, ch: int, widths: list[int], depth: int):
        super().__init__()
        self.down = nn.ModuleList()
        self.body = nn.ModuleList()
        cin = ch
        for i, w in enumerate(widths):
            self.down.append(conv(cin, w, 3, 2))
            self.body.append(nn.Sequential(*[Residual(w) for _ in range(depth if i else 0)]))
            cin = w
        self.images_seen = 0  # images that ran through this backbone (routing tests count)

    def forward(self, x, fuse=None):
        self.images_seen += int(x.shape[0])
        feats = []
        for k, (down, body) in enumerate(zip(self.down, self.body)):
            x = down(x)
            if fuse is not None and fuse[k] is not None:
                x = x + fuse[k]
            x = body(x)
            feats.append(x)
        return feats


class Composite(nn.Module):
    """1×1 projections of backbone-1 stage j into chunks for backbone-2 stages k ≤ j
    (``CBLinear``), and their nearest-upsampled sums at each backbone-2 stage (``CBFuse``)."""

    def __init__(self, widths: list[int]):
        super().__init__()
        self.widths = list(widths)
        self.proj = nn.ModuleList(nn.Conv2d(widths[j], sum(widths[: j + 1]), 1, bias=True)
                                  for j in range(len(widths)))

    def forward(self, feats1: list[torch.Tensor], shapes: list[tuple[int, int]]):
        chunks = [torch.split(p(f), self.widths[: j + 1], dim=1)
                  for j, (p, f) in enumerate(zip(self.proj, feats1))]
        fuse = []
        for k, hw in enumerate(shapes):
            parts = [F.interpolate(chunks[j][k], size=hw, mode="nearest") if j > k
                     else chunks[j][k] for j in range(k, len(chunks))]
            fuse.append(torch.stack(parts).sum(0))
        return fuse


class Head(nn.Module):
    """FPN top-down neck over the last ``levels`` stages and a 1×1 output per level:
    5 channels (objectness, tx, ty, tw, th) per cell."""

    def __init__(self, widths: list[int], levels: int, neck: int):
        super().__init__()
        self.levels = levels
        ins = widths[-levels:]
        self.lateral = nn.ModuleList(nn.Conv2d(c, neck, 1) for c in ins)
        self.smooth = nn.ModuleList(conv(neck, neck, 3) for _ in ins)
        self.out = nn.ModuleList(nn.Conv2d(neck, 5, 1) for _ in ins)
        for o in self.out:
            nn.init.constant_(o.bias, 0.0)
            with torch.no_grad():
                o.bias[0] = OBJ_PRIOR

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        feats = feats[-self.levels:]
        y = self.lateral[-1](feats[-1])
        ys = [None] * self.levels
        ys[-1] = self.smooth[-1](y)
        for i in range(self.levels - 2, -1, -1):
            y = F.interpolate(y, size=feats[i].shape[-2:], mode="nearest") + self.lateral[i](feats[i])
            ys[i] = self.smooth[i](y)
        return [o(v) for o, v in zip(self.out, ys)]


class Router(nn.Module):
    """GAP of every backbone-1 stage → 1×1 conv C→C/4 → ReLU → 1×1 conv → sigmoid."""

    def __init__(self, widths: list[int]):
        super().__init__()
        c = sum(widths)
        self.mlp = nn.Sequential(nn.Linear(c, max(c // 4, 1)), nn.ReLU(inplace=True),
                                 nn.Linear(max(c // 4, 1), 1))

    def forward(self, feats1: list[torch.Tensor]) -> torch.Tensor:
        pooled = torch.cat([f.mean((2, 3)) for f in feats1], dim=1)
        return torch.sigmoid(self.mlp(pooled)).squeeze(1)


def decode_level(p: torch.Tensor, stride: int) -> torch.Tensor:
    """(B, 5, H, W) raw head output → (B, H·W, 5): objectness logit, cx, cy, w, h (input px)."""
    b, _, h, w = p.shape
    p = p.permute(0, 2, 3, 1).reshape(b, h * w, 5)
    gy, gx = torch.meshgrid(torch.arange(h, device=p.device), torch.arange(w, device=p.device),
                            indexing="ij")
    grid = torch.stack([gx, gy], -1).reshape(1, h * w, 2).to(p.dtype)
    xy = (grid + 2.0 * torch.sigmoid(p[..., 1:3]) - 0.5) * stride
    wh = torch.exp(p[..., 3:5].clamp(-6.0, 6.0)) * stride
    return torch.cat([p[..., :1], xy, wh], -1)


def decode_head(outs: list[torch.Tensor], strides: list[int]) -> torch.Tensor:
    return torch.cat([decode_level(p, s) for p, s in zip(outs, strides)], 1)


class DynamicDet(nn.Module):
    """Two cascaded detectors and the router. ``forward(x)`` (training, validation) runs both
    and returns ``{"p1", "p2", "score"}``; :meth:`infer` routes each image."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.cfg = dict(cfg)
        w, d = list(cfg["widths"]), int(cfg["depth"])
        levels = int(cfg["levels"])
        self.backbone1 = Backbone(int(cfg["ch"]), w, d)
        self.backbone2 = Backbone(int(cfg["ch"]), w, d)
        self.composite = Composite(w)
        self.head1 = Head(w, levels, int(cfg["neck"]))
        self.head2 = Head(w, levels, int(cfg["neck"]))
        self.router = Router(w)
        n = len(w)
        self.strides = [2 ** (i + 1) for i in range(n)][-levels:]
        self.max_stride = 2 ** n

    def second(self, x: torch.Tensor, feats1: list[torch.Tensor]) -> list[torch.Tensor]:
        shapes, h, wd = [], x.shape[-2], x.shape[-1]
        for _ in feats1:
            h, wd = (h + 1) // 2, (wd + 1) // 2
            shapes.append((h, wd))
        return self.backbone2(x, self.composite(feats1, shapes))

    def forward(self, x: torch.Tensor) -> dict:
        f1 = self.backbone1(x)
        f2 = self.second(x, f1)
        return {"p1": self.head1(f1), "p2": self.head2(f2), "score": self.router(f1)}

    @torch.no_grad()
    def infer(self, x: torch.Tensor, thres: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Routed inference: (decoded predictions (B, N, 5), router scores (B,)). Images with
        score ≥ ``thres`` use backbone 1 + head 1 only; the rest backbone 2 + head 2. The batch
        is split by route, so every image gets what it would get alone."""
        f1 = self.backbone1(x)
        score = self.router(f1)
        easy = score >= thres
        out = None
        for mask, hard in ((easy, False), (~easy, True)):
            if not bool(mask.any()):
                continue
            idx = torch.nonzero(mask).squeeze(1)
            feats = [f[idx] for f in f1]
            raw = self.head2(self.second(x[idx], feats)) if hard else self.head1(feats)
            dec = decode_head(raw, self.strides)
            if out is None:
                out = dec.new_zeros((x.shape[0], *dec.shape[1:]))
            out[idx] = dec
        return out, score
