"""cet_pick's refinement network (``models/networks/unet_small.py`` ``TomoConvUNet`` with the
ELEKTRONN3 2-D U-Net it uses; pickers.md §E1), re-implemented.

Every D slice goes through the same 2-D stem (conv 7×7 stride 2, BN, ReLU; 1 → 16 channels)
and a 2-D U-Net (``n_blocks`` 4 or 5 = ``--arch unet_4|unet_5``, start 32 filters doubling per
block, BN + ReLU after each 3×3 conv, transposed-conv up-sampling, concat merges, 1×1 to 32
channels). The slices are stacked back into a volume for a 3-D head: two Conv3d 3×3×3 with
dilation (1, 4, 4) + ReLU, then Conv3d (3, 1, 1) heads ``hm`` (1 channel, logits) and ``proj``
(``head_conv`` channels, L2-normalised per voxel). Output stride 2 in H and W, 1 in D.

``last_k`` is kept as an option for cet_pick's command lines; its network does not use it
(the layer that would is commented out upstream) and neither does this one.
"""

from __future__ import annotations

import torch
from torch import nn

ARCHS = {"unet_4": 4, "unet_5": 5}


def n_blocks_of(arch: str) -> int:
    if arch not in ARCHS:
        raise ValueError(f"--arch {arch!r}: choose one of {', '.join(ARCHS)}")
    return ARCHS[arch]


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


class _Down(nn.Sequential):
    def __init__(self, cin, cout):
        super().__init__(*_conv_bn_relu(cin, cout), *_conv_bn_relu(cout, cout))


class _Up(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, 2, stride=2)
        self.norm = nn.Sequential(nn.BatchNorm2d(cout), nn.ReLU(inplace=True))
        self.conv = nn.Sequential(*_conv_bn_relu(2 * cout, cout), *_conv_bn_relu(cout, cout))

    def forward(self, enc, dec):
        up = self.up(dec)
        # odd encoder sizes: max-pool with ceil_mode made the up-sampled map one larger
        up = up[..., : enc.shape[-2], : enc.shape[-1]]
        return self.conv(torch.cat([self.norm(up), enc], dim=1))


class UNet2d(nn.Module):
    def __init__(self, cin: int = 16, cout: int = 32, n_blocks: int = 4, start: int = 32):
        super().__init__()
        chans = [start * 2 ** i for i in range(n_blocks)]
        self.down = nn.ModuleList(
            _Down(cin if i == 0 else chans[i - 1], chans[i]) for i in range(n_blocks))
        self.pool = nn.MaxPool2d(2, ceil_mode=True)
        self.up = nn.ModuleList(_Up(chans[i], chans[i - 1]) for i in range(n_blocks - 1, 0, -1))
        self.final = nn.Conv2d(chans[0], cout, 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.xavier_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x):
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            if i < len(self.down) - 1:
                skips.append(x)
                x = self.pool(x)
        for block in self.up:
            x = block(skips.pop(), x)
        return self.final(x)


def _small_init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.normal_(m.weight, std=0.001)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class TomoNet(nn.Module):
    """Input (B, D, H, W) (or (D, H, W) for one volume); output ``{"hm": (B, 1, D, H/2,
    W/2) logits, "proj": (B, head_conv, D, H/2, W/2) unit vectors}``."""

    def __init__(self, arch: str = "unet_4", head_conv: int = 32, last_k: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 7, stride=2, padding=3, bias=False),
                                  nn.BatchNorm2d(16), nn.ReLU(inplace=True))
        self.unet = UNet2d(16, 32, n_blocks_of(arch))
        self.feature_head = nn.Sequential(
            nn.Conv3d(32, head_conv, 3, dilation=(1, 4, 4), padding=(1, 4, 4), bias=False),
            nn.ReLU(inplace=True),
            nn.Conv3d(head_conv, head_conv, 3, dilation=(1, 4, 4), padding=(1, 4, 4),
                      bias=False),
            nn.ReLU(inplace=True),
        )
        self.hm = nn.Conv3d(head_conv, 1, (3, 1, 1), padding=(1, 0, 0), bias=False)
        self.proj = nn.Conv3d(head_conv, head_conv, (3, 1, 1), padding=(1, 0, 0), bias=False)
        for m in (self.feature_head, self.hm, self.proj):
            _small_init(m)

    def forward(self, x, heads=("hm", "proj")):
        if x.dim() == 3:
            x = x[None]
        b, d, h, w = x.shape
        y = self.unet(self.stem(x.reshape(b * d, 1, h, w)))
        _, c, hh, ww = y.shape
        y = y.reshape(b, d, c, hh, ww).permute(0, 2, 1, 3, 4)
        y = self.feature_head(y)
        out = {}
        if "hm" in heads:
            out["hm"] = self.hm(y)
        if "proj" in heads:
            out["proj"] = nn.functional.normalize(self.proj(y), dim=1)
        return out
