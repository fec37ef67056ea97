"""CenterNet network trained from scratch: a small ResNet-style backbone (strides 2–32), an
IDA/FPN-like upsampling neck back to stride 4, and 3×3→1×1 heads (EPicker's DLA-34 + DCN
replaced by a configurable, download-free backbone; pickers.md §H4).

``forward`` returns ``{"hm", "reg", "wh", "fea_deep", "fea"}``: heatmap logits (B,1,H/4,W/4),
centre offsets (B,2,...) in output cells, box sizes (B,2,...) in output cells, the deepest
backbone feature (stride 32) and the neck feature (stride 4) — the two features EPicker's
continual learning distils.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

HM_BIAS = -2.19  # CenterNet/EPicker: sigmoid(-2.19) ≈ 0.1 prior on the heatmap


def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.down is None else self.down(x)), inplace=True)


class CenterNet(nn.Module):
    """Backbone widths ``width·(1, 2, 4, 8, 8)`` at strides 2, 4, 8, 16, 32; ``blocks`` residual
    blocks per stage; neck width ``2·width``; heads of ``head_conv`` channels."""

    stride = 4

    def __init__(self, width: int = 16, blocks: int = 1, head_conv: int = 64, in_ch: int = 1):
        super().__init__()
        w = width
        chans = [w, 2 * w, 4 * w, 8 * w, 8 * w]
        self.stem = _conv_bn(in_ch, chans[0], 2)  # stride 2
        stages = []
        cin = chans[0]
        for c in chans[1:]:
            layers = [BasicBlock(cin, c, 2)] + [BasicBlock(c, c) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layers))
            cin = c
        self.stages = nn.ModuleList(stages)  # strides 4, 8, 16, 32
        neck = 2 * w
        self.lateral = nn.ModuleList([nn.Conv2d(c, neck, 1) for c in chans[1:]])
        self.smooth = nn.ModuleList([_conv_bn(neck, neck) for _ in chans[1:-1]])
        self.heads = nn.ModuleDict(
            {
                name: nn.Sequential(
                    nn.Conv2d(neck, head_conv, 3, 1, 1), nn.ReLU(inplace=True),
                    nn.Conv2d(head_conv, out, 1),
                )
                for name, out in (("hm", 1), ("reg", 2), ("wh", 2))
            }
        )
        nn.init.constant_(self.heads["hm"][-1].bias, HM_BIAS)
        self.width, self.blocks, self.head_conv = width, blocks, head_conv

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        y = self.lateral[-1](feats[-1])
        for i in range(len(feats) - 2, -1, -1):  # 16 → 8 → 4
            y = F.interpolate(y, size=feats[i].shape[-2:], mode="nearest")
            y = self.smooth[i](y + self.lateral[i](feats[i]))
        out = {name: head(y) for name, head in self.heads.items()}
        out["fea_deep"] = feats[-1]
        out["fea"] = y
        return out
