"""Augmentation and preprocessing move coordinates exactly with the image (tests first: a wrong
flip silently ruins training)."""

from __future__ import annotations

import numpy as np
import pytest

from converters.images import fourier_resize as _resize
from trainers.augment import Augmenter, crop, hflip, inside, rot90, vflip


def fourier_resize(img, ny, nx):
    return _resize(img, (ny, nx))


def _marked(h=7, w=11):
    """Image with distinct values; point (x, y) = (3, 1) marked with 100."""
    img = np.zeros((h, w), dtype=np.float32)
    img[1, 3] = 100
    return img, np.array([[3.0, 1.0]])


def _at(img, xy):
    x, y = np.round(xy).astype(int)
    return img[y, x]


def test_hflip_moves_column():
    img, xy = _marked()
    out, p = hflip(img, xy)
    assert p.tolist() == [[7.0, 1.0]]  # 11 - 1 - 3
    assert out[1, 7] == 100


def test_vflip_moves_row():
    img, xy = _marked()
    out, p = vflip(img, xy)
    assert p.tolist() == [[3.0, 5.0]]  # 7 - 1 - 1
    assert out[5, 3] == 100


@pytest.mark.parametrize("k", [0, 1, 2, 3, 5, -1])
def test_rot90_every_quarter_turn(k):
    img, xy = _marked()
    out, p = rot90(img, xy, k)
    assert np.array_equal(out, np.rot90(img, k))
    assert _at(out, p[0]) == 100
    if k % 4 == 1:  # (x, y) -> (y, W - 1 - x): (3, 1) -> (1, 7) in a 11 x 7 (H x W) output
        assert p.tolist() == [[1.0, 7.0]]


def test_crop_with_padding_shifts_points():
    img, xy = _marked()
    out, p = crop(img, xy, -2, -3, 8, 8, fill=-5)
    assert p.tolist() == [[5.0, 4.0]]
    assert out[4, 5] == 100
    assert out[0, 0] == -5  # outside the image: fill
    out, p = crop(img, xy, 4, 0, 4, 4, fill=0)
    assert not inside(p, 4, 4)[0]  # (3,1) - (4,0) = (-1, 1): outside the window


def test_augmenter_keeps_every_point_on_its_pixel():
    rng = np.random.default_rng(0)
    h, w = 90, 130
    img = np.zeros((h, w), dtype=np.float32)
    pts = np.stack([rng.integers(0, w, 40), rng.integers(0, h, 40)], 1).astype(float)
    pts = np.unique(pts, axis=0)
    for i, (x, y) in enumerate(pts):
        img[int(y), int(x)] = i + 1
    aug = Augmenter(crop=64, margin=16, fill=0)
    seen_flip = seen_rot = False
    for seed in range(60):
        view, p, keep = aug(img, pts, np.random.default_rng(seed))
        assert view.shape == (64, 64)
        for (x, y), k in zip(p, keep):
            assert view[int(round(y)), int(round(x))] == k + 1
        # every marked pixel visible in the view is one of the kept points
        assert set(view[view > 0].astype(int) - 1) == set(keep.tolist())
        seen_flip |= len(keep) > 0
        seen_rot |= True
    assert seen_flip and seen_rot


def test_fourier_resize_scales_coordinates():
    # Gaussian blob at (x, y) = (100.0, 60.0) in a 256 x 200 (H x W... here ny=200, nx=256)
    ny, nx = 200, 256
    yy, xx = np.mgrid[0:ny, 0:nx]
    img = np.exp(-((xx - 100.0) ** 2 + (yy - 60.0) ** 2) / (2 * 6.0**2))
    small = fourier_resize(img, 100, 128)  # factor 1/2: expect the peak at (50, 30)
    sy, sx = np.mgrid[0:100, 0:128]
    w = np.clip(small, 0, None)
    cx, cy = (w * sx).sum() / w.sum(), (w * sy).sum() / w.sum()
    assert cx == pytest.approx(50.0, abs=0.05)
    assert cy == pytest.approx(30.0, abs=0.05)
    assert fourier_resize(img, ny, nx).shape == (ny, nx)
    big = fourier_resize(small, 200, 256)  # padding: back to the original grid
    assert np.unravel_index(np.argmax(big), big.shape) == (60, 100)


def test_encode_decode_roundtrip_exact():
    torch = pytest.importorskip("torch")
    from trainers.centernet.decode import decode
    from trainers.centernet.targets import CenterNetEncoder, gaussian_radius

    # EPicker default: particle 19 px at 1024 -> 4.75 output px -> radius 1 (pickers.md §D1)
    assert int(gaussian_radius(4.75, 4.75, 0.7)) == 1
    enc = CenterNetEncoder(particle_size=16)
    xy = np.array([[37.3, 50.9], [100.0, 20.25], [12.0, 110.6]])
    t = enc.encode(np.zeros((128, 128), np.uint8), xy, np.full(3, np.nan))
    assert t["hm"].shape == (1, 32, 32)
    assert t["hm"].max() == 1.0 and (t["hm"] == 1).sum() == 3
    # a network output that reproduces the targets: logits high at centres, offsets at centres
    hm = np.where(t["hm"] == 1, 10.0, -10.0).astype(np.float32)
    reg = np.zeros((2, 32 * 32), np.float32)
    reg[:, t["ind"][:3]] = t["reg"][:3].T
    out = {"hm": torch.from_numpy(hm)[None], "reg": torch.from_numpy(reg.reshape(1, 2, 32, 32)),
           "wh": torch.zeros(1, 2, 32, 32)}
    res = decode(out, K=10, vis_thresh=0.5, edge=0)[0]
    got = res["xy"][np.lexsort(res["xy"].T[::-1])]
    want = xy[np.lexsort(xy.T[::-1])]
    np.testing.assert_allclose(got, want, atol=1e-5)
