"""Tomogram picker pieces against cet_pick's definitions: Gaussian radius per bbox, PU and
contrastive losses against a direct computation, voxel sampling unbiased, loader axes and
compress, decoding, tomo-files."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from test_tomopicker_helpers import write_mrc  # noqa: E402

from trainers.tomopicker import losses as L  # noqa: E402
from trainers.tomopicker import targets as T  # noqa: E402
from trainers.tomopicker import volume as V  # noqa: E402


def test_gaussian_radius_per_bbox_as_cet_pick():
    assert T.radius_for_bbox(16) == 2 and T.radius_for_bbox(32) == 4
    g = T.gaussian3d(2)
    assert g.shape == (5, 5, 5) and g[2, 2, 2] == 1 and (g == 1).sum() == 1
    assert g[2, 2, 3] == pytest.approx(math.exp(-1 / (2 * (5 / 6) ** 2)), rel=1e-6)
    hm = T.make_heatmap((6, 40, 40), np.array([[5, 6, 2]]), 16, unlabelled=True)
    assert hm.shape == (6, 20, 20) and hm[2, 6, 5] == 1 and hm[0, 0, 0] == -1
    assert ((hm > 0) & (hm < 1)).sum() > 0


def _direct_pu(p, gt, tau):
    p, gt = p.double(), gt.double()
    P, S, U = gt == 1, (gt > -1) & (gt < 1), gt == -1
    rp = -(torch.log(p[P]) * (1 - p[P]) ** 2).mean() - (
        torch.log(1 - p[S]) * p[S] ** 2 * (1 - gt[S]) ** 4).mean()
    rpn = -(torch.log(1 - p[P]) * p[P] ** 2).mean() - (
        torch.log(p[S]) * (1 - p[S]) ** 2 * gt[S] ** 4).mean()
    ru = -(torch.log(1 - p[U]) * p[U] ** 2).mean()
    neg = ru - tau * rpn
    return tau * rp if neg < 0 else tau * rp + neg


def test_pu_loss_equals_direct_computation():
    g = torch.Generator().manual_seed(0)
    gt = torch.full((2, 4, 6, 6), -1.0)
    gt[0, 1, 2, 2] = 1
    gt[1, 2, 3, 4] = 1
    gt[0, 1, 2, 3] = 0.4
    gt[1, 2, 3, 3] = 0.6
    for scale in (0.2, 3.0):  # small predictions: bracket ≥ 0; large: negative part dropped
        p = L.prob(torch.randn(gt.shape, generator=g) * scale - (2 if scale < 1 else -1))
        got = L.pu_loss(p, gt, 0.01)
        assert float(got) == pytest.approx(float(_direct_pu(p, gt, 0.01)), rel=1e-5)
    # plain focal: CenterNet's formula
    gt0 = gt.clamp(min=0)
    p = L.prob(torch.randn(gt.shape, generator=g))
    pos = gt0 == 1
    want = -((torch.log(p[pos]) * (1 - p[pos]) ** 2).sum() + (
        torch.log(1 - p[~pos]) * p[~pos] ** 2 * (1 - gt0[~pos]) ** 4).sum()) / pos.sum()
    assert float(L.focal_loss(p, gt0)) == pytest.approx(float(want), rel=1e-5)


def _direct_contrastive(labels, p1, p2, f1, f2, temp, tau, thresh):
    """cet_pick's UnbiasedConLoss written out on the full (2N)² matrix."""
    n = len(labels)
    f = torch.cat([f1, f2]).double()
    lab = torch.cat([labels, labels]).double()
    pr = torch.cat([p1, p2]).double()
    s = f @ f.t() / temp
    s = s - s.max(1, keepdim=True).values
    s = s * (1 - torch.eye(2 * n, dtype=s.dtype))
    e = torch.exp(s)
    pos = (lab > thresh).double()
    other = (lab < thresh).double()
    floor = math.exp(-1 / temp)
    sup = []
    for i in range(2 * n):
        if lab[i] > thresh:
            pm = (e[i] * pos).sum() / (pos.sum() - 1)
            rm = (e[i] * other).sum() / other.sum()
            ng = max(float((rm - tau * pm) / (1 - tau)), floor)
            sup.append(-math.log(pm / (pm + ng)))
    nneg = 2 * (n - float((labels > thresh).sum()))
    tp, tn, groups = [], [], {"hi": [], "lo": [], "mid": []}
    for i in range(2 * n):
        if lab[i] < 0:
            j = i + n if i < n else i - n
            pm = float(e[i, j])
            rm = float((e[i].sum() - e[i, j]) / nneg)
            ngp = max((rm - tau * pm) / (1 - tau), floor)
            ngn = max((rm - (1 - tau) * pm) / tau, floor)
            p = float(pr[i])
            a = -math.log(pm / (pm + ngp)) * p
            b = -math.log(pm / (pm + ngn)) * (1 - p)
            key = "hi" if p > 0.99 else "lo" if p < 0.01 else "mid"
            groups[key].append((a, b))
    uns = 0.0
    if groups["hi"]:
        uns += np.mean([a for a, _ in groups["hi"]])
    if groups["lo"]:
        uns += np.mean([b for _, b in groups["lo"]])
    if groups["mid"]:
        uns += np.mean([a for a, _ in groups["mid"]]) + np.mean([b for _, b in groups["mid"]])
    del tp, tn
    return float(np.mean(sup)), float(uns)


def _case(n=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.full((n,), -1.0)
    labels[[3, 17, 33]] = 1.0
    labels[[4, 18]] = 0.5
    p1 = torch.rand(n, generator=g)
    p1[:10] = 0.995
    p1[10:25] = 0.005
    p2 = torch.rand(n, generator=g)
    f1 = torch.nn.functional.normalize(torch.randn(n, 8, generator=g), dim=1)
    f2 = torch.nn.functional.normalize(f1 + 0.3 * torch.randn(n, 8, generator=g), dim=1)
    return labels, p1, p2, f1, f2


def test_contrastive_loss_equals_direct_computation():
    labels, p1, p2, f1, f2 = _case()
    sup, uns = L.contrastive_loss(labels, p1, p2, f1, f2, 0.07, 0.01, 0.85)
    want_sup, want_uns = _direct_contrastive(labels, p1, p2, f1, f2, 0.07, 0.01, 0.85)
    assert float(sup) == pytest.approx(want_sup, rel=1e-4)
    assert float(uns) == pytest.approx(want_uns, rel=1e-4)
    # consistency: MSE of the two views
    assert float(L.consistency_loss(p1, p2)) == pytest.approx(float(((p1 - p2) ** 2).mean()))


def _dense_contrastive(labels, p1, p2, f1, f2, temp, tau, thresh):
    """The full loss written with autograd on the dense (2N)² matrix, as cet_pick forms it
    (self logit zeroed before exp, masked means): the reference for gradients."""
    n = len(labels)
    f = torch.cat([f1, f2])
    lab = torch.cat([labels, labels])
    pr = torch.cat([p1, p2])
    s = f @ f.t() / temp
    s = s - s.max(1, keepdim=True).values.detach()
    e = torch.exp(s * (1 - torch.eye(2 * n, dtype=s.dtype)))
    pos, other = (lab > thresh).to(s.dtype), (lab < thresh).to(s.dtype)
    floor = math.exp(-1 / temp)
    ip = lab > thresh
    pm = (e[ip] * pos).sum(1) / (pos.sum() - 1)
    rm = (e[ip] * other).sum(1) / other.sum()
    sup = (-torch.log(pm / (pm + torch.clamp((rm - tau * pm) / (1 - tau), min=floor)))).mean()
    iu = lab < 0
    idx = torch.nonzero(iu).flatten()
    part = torch.where(idx < n, idx + n, idx - n)
    pm = e[idx, part]
    rm = (e[idx].sum(1) - pm) / (2 * (n - float((labels > thresh).sum())))
    gp = torch.clamp((rm - tau * pm) / (1 - tau), min=floor)
    gn = torch.clamp((rm - (1 - tau) * pm) / tau, min=floor)
    p = pr[idx]
    tp = -torch.log(pm / (pm + gp)) * p
    tn = -torch.log(pm / (pm + gn)) * (1 - p)
    hi, lo = p > 0.99, p < 0.01
    mid = ~hi & ~lo
    uns = tp[hi].mean() + tn[lo].mean() + tp[mid].mean() + tn[mid].mean()
    return sup, uns


def test_contrastive_loss_gradient_equals_dense_autograd():
    """The row-sum form (one block, custom backward) has the dense form's gradient (float64,
    so that the comparison is not float32 rounding)."""
    labels, p1, p2, f1, f2 = (t.double() for t in _case())
    grads = []
    for fn in (L.contrastive_loss, _dense_contrastive):
        leaves = [t.clone().requires_grad_() for t in (p1, p2, f1, f2)]
        a, b, c, d = leaves
        sup, uns = fn(labels, a, b, torch.nn.functional.normalize(c, dim=1),
                      torch.nn.functional.normalize(d, dim=1), 0.07, 0.01, 0.85)
        (sup + 0.1 * uns).backward()
        grads.append([t.grad for t in leaves])
    for got, want in zip(*grads):
        assert torch.allclose(got, want, rtol=1e-7, atol=1e-9 * float(want.abs().max()))
        assert float(want.abs().max()) > 0


def test_sampled_contrastive_loss_is_unbiased():
    """Mean over random anchor-row samples → the full loss (each group large enough to be
    sampled every time; tolerance ≈ 4 standard errors)."""
    labels, p1, p2, f1, f2 = _case(n=40, seed=1)
    p1[:] = 0.995
    p1[20:] = 0.3  # two groups among unlabelled rows of view 1; view 2 random
    full = sum(L.contrastive_loss(labels, p1, p2, f1, f2, 0.5, 0.1, 0.85))
    g = torch.Generator().manual_seed(2)
    vals = []
    for _ in range(400):
        rows = L.sample_rows(labels, 0.85, 40, g)
        vals.append(float(sum(L.contrastive_loss(labels, p1, p2, f1, f2, 0.5, 0.1, 0.85,
                                                 rows))))
    vals = np.array(vals)
    se = vals.std() / math.sqrt(len(vals))
    assert vals.std() > 0  # the sample does vary
    assert abs(vals.mean() - float(full)) < 4 * se + 1e-6


def test_loader_orders_and_compress_round_trip(tmp_path):
    """A marker at a known file voxel lands at the coordinates the tables use for each
    --order, and back; --compress keeps the max of each slice pair."""
    vol = np.zeros((10, 12, 14), np.float32)  # (z, y, x) of the file
    fx, fy, fz = 5, 7, 3
    vol[fz, fy, fx] = 10
    path = write_mrc(tmp_path / "t.mrc", vol)
    for order in V.ORDERS:
        loaded, shape = V.load_volume(path, order)
        assert shape == (10, 12, 14)
        x, y, z = V.file_to_loaded(np.array([[fx, fy, fz]]), order)[0].astype(int)
        assert loaded[z, y, x] == loaded.max()
        assert np.allclose(V.loaded_to_file([[x, y, z]], order), [[fx, fy, fz]])
        comp, _ = V.load_volume(path, order, compress=True)
        assert comp.shape[0] == math.ceil(loaded.shape[0] / 2)
        assert comp[z // 2, y, x] == comp.max()
    # xzy = IMOD (col, row, section) of the file → cet_pick x, z, y (as generate_train_file)
    assert np.allclose(V.file_to_loaded([[fx, fy, fz]], "xzy"), [[fx, fz, fy]])


def test_decode_keeps_peaks_inside_cutoffs():
    from trainers.tomopicker.decode import decode

    heat = torch.zeros(20, 40, 40)
    heat[10, 20, 15] = 0.9   # kept: x = 30, y = 40
    heat[10, 20, 16] = 0.5   # suppressed by NMS
    heat[1, 20, 20] = 0.8    # below cutoff_z
    heat[10, 5, 20] = 0.7    # within 20 px of the y border
    p = decode(heat, K=10, out_thresh=0.2, cutoff_z=3)
    assert p["xy"].tolist() == [[30.0, 40.0, 10.0]]
    assert p["score"][0] == pytest.approx(0.9)
    # --edge 4 (small tomograms): the peak 10 px from the y border is kept; one in the outermost
    # heatmap row (input px 0) is still dropped
    heat[10, 0, 25] = 0.6
    p = decode(heat, K=10, out_thresh=0.2, cutoff_z=3, edge=4)
    assert p["xy"].tolist() == [[30.0, 40.0, 10.0], [40.0, 10.0, 10.0]]


def test_tomo_files_as_generate_train_file(tmp_path):
    from click.testing import CliRunner

    from cryoglean.cli import cli
    from trainers.tomopicker.volume import read_coords, read_image_list

    write_mrc(tmp_path / "TS_1.rec", np.zeros((8, 8, 8), np.float32))
    (tmp_path / "TS_1.txt").write_text("10.7 4.2 30.9\n12 5 31\n")
    r = CliRunner().invoke(cli, ["tomo-files", "-d", str(tmp_path), "-o", "s", "-r", "xzy"])
    assert r.exit_code == 0, r.output
    assert list(read_image_list(tmp_path / "s_train_imgs.txt")) == ["TS_1"]
    c = read_coords(tmp_path / "s_train_coords.txt")["TS_1"]
    assert c.tolist() == [[10, 30, 4], [12, 31, 5]]  # x=c0, y=c2, z=c1
    r = CliRunner().invoke(cli, ["tomo-files", "-d", str(tmp_path), "-o", "s", "-r", "zxy",
                                 "--compress"])
    assert r.exit_code == 0, r.output
    c = read_coords(tmp_path / "s_train_coords.txt")["TS_1"]
    assert c.tolist() == [[4, 30, 20], [5, 31, 24]]  # x=c1, y=c2, z=2·c0
    r = CliRunner().invoke(cli, ["tomo-files", "-d", str(tmp_path), "-o", "s", "-c"])
    assert r.exit_code == 0 and (tmp_path / "s_test_imgs.txt").is_file()
