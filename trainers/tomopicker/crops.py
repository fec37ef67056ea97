"""cet_pick's training samples (``datasets/particle_moco.py``, task ``semi``), re-implemented.

One item per label: a crop of 6 slices × 64 × 64 input px (3 × 32 × 32 heatmap voxels … 6 ×
32 × 32) centred on that label jittered by ±4 heatmap voxels in x and y (cet_pick applies no z
jitter), paired with a crop around another label (PU: 80 % jitter ±5 voxels, 20 % ±bbox/2
px; ``--pn``: 50 % a random place anywhere) with z jitter ±2. Centres are clipped so that
crops stay inside the volume. The contrastive view is the pair flipped left–right or up–down
(50 % each). Coordinates here are heatmap voxels (x // 2, y // 2, z).
"""

from __future__ import annotations

import numpy as np

CROP_D, CROP_HM = 6, 32  # slices, heatmap voxels (64 input px)
TRANSLATION_RATIO = 0.5


class CropError(ValueError):
    """A tomogram too small for cet_pick's training crops."""


def _centre(x, y, z, shape_hm):
    d, h, w = shape_hm
    x = int(np.clip(x, 17, w - 17))
    y = int(np.clip(y, 17, h - 17))
    z = int(np.clip(z, 3, d - 3))
    return x, y, z


def crop(vol: np.ndarray, hm: np.ndarray, centre) -> tuple[np.ndarray, np.ndarray]:
    x, y, z = centre
    t = vol[z - 3:z + 3, 2 * y - 32:2 * y + 32, 2 * x - 32:2 * x + 32]
    g = hm[z - 3:z + 3, y - 16:y + 16, x - 16:x + 16]
    return t, g


def check_size(name: str, vol: np.ndarray) -> None:
    d, h, w = vol.shape
    if d < CROP_D or h < 68 or w < 68:
        raise CropError(f"{name}: the volume as loaded is {d}×{h}×{w} (D×H×W); training crops "
                        "need at least 6 slices and 68×68 px (check --order and --compress)")


def make_dataset(volumes, heatmaps, labels, bbox: int, pn: bool):
    """torch Dataset of training items over ``labels`` = [(tomogram index, x, y, z)] in
    heatmap voxels; ``volumes``/``heatmaps`` per tomogram."""
    import torch

    labels = np.asarray(labels, dtype=np.int64).reshape(-1, 4)
    trans = int(bbox * TRANSLATION_RATIO)

    class _Crops(torch.utils.data.Dataset):
        def __len__(self):
            return len(labels)

        def __getitem__(self, i):
            rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,))))
            t, x, y, z = labels[i]
            vol, hm = volumes[t], heatmaps[t]
            c1 = _centre(x + rng.integers(-4, 5), y + rng.integers(-4, 5), z, hm.shape)
            others = [j for j in range(len(labels)) if j != i] or [i]
            j = others[int(rng.integers(len(others)))]
            t2, x2, y2, z2 = labels[j]
            p = rng.random()
            if pn and p <= 0.5:
                d2, h2, w2 = heatmaps[t2].shape
                x2, y2, z2 = rng.integers(0, w2), rng.integers(0, h2), rng.integers(0, d2)
            elif (pn and p > 0.5) or (not pn and p > 0.8):
                x2 += rng.integers(-trans, max(trans, 1 - trans))
                y2 += rng.integers(-trans, max(trans, 1 - trans))
                z2 += rng.integers(-2, 2)
            else:
                x2 += rng.integers(-5, 5)
                y2 += rng.integers(-5, 5)
                z2 += rng.integers(-2, 2)
            c2 = _centre(x2, y2, z2, heatmaps[t2].shape)
            a, ga = crop(vol, hm, c1)
            b, gb = crop(volumes[t2], heatmaps[t2], c2)
            inp = np.stack([a, b]).astype(np.float32)
            gt = np.stack([ga, gb]).astype(np.float32)
            flip_ud = bool(rng.random() > 0.5)
            axis = -2 if flip_ud else -1
            return {"input": inp, "hm": gt,
                    "input_aug": np.ascontiguousarray(np.flip(inp, axis)),
                    "hm_aug": np.ascontiguousarray(np.flip(gt, axis)),
                    "flip_ud": flip_ud}

    return _Crops()
