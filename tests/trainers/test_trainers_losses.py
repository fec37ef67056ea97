"""Loss values on hand-built tensors (focal, EPicker sparse, nnPU, continual terms) and the
exemplar interleaving schedule."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from trainers.centernet import losses as L  # noqa: E402
from trainers.centernet.exemplar import interleaved_batches  # noqa: E402

# pred: one centre (gt 1, p .5), one shell pixel (gt .5, p .2), two unlabelled (p .9, p .1)
PRED = torch.tensor([[0.5, 0.2], [0.9, 0.1]])
GT = torch.tensor([[1.0, 0.5], [0.0, 0.0]])
ln = math.log


def test_focal_loss_by_hand():
    pos = 0.25 * ln(0.5)  # (1-p)^2 log p
    neg = 0.0625 * 0.04 * ln(0.8) + 0.81 * ln(0.1) + 0.01 * ln(0.9)  # (1-gt)^4 p^2 log(1-p)
    assert L.focal_loss(PRED, GT).item() == pytest.approx(-(pos + neg), rel=1e-6)
    # no centre: only the negative part, not divided
    gt0 = torch.zeros(2, 2)
    neg0 = 0.25 * ln(0.5) + 0.04 * ln(0.8) + 0.81 * ln(0.1) + 0.01 * ln(0.9)
    assert L.focal_loss(PRED, gt0).item() == pytest.approx(-neg0, rel=1e-6)


def test_sparse_loss_by_hand():
    # centre: focal term; shell p .2 <= .7: negative, weight .01 * (1-.5)^4;
    # p .9 > .7: pseudo-positive -.01 log .9; p .1: negative -.01 log .9; all / N_pos = 1
    want = -(0.25 * ln(0.5) + 0.01 * 0.0625 * ln(0.8) + 0.01 * ln(0.9) + 0.01 * ln(0.9))
    assert L.sparse_loss(PRED, GT).item() == pytest.approx(want, rel=1e-6)
    # far smaller than the focal loss on the same confident unlabelled peak (p .9)
    assert L.sparse_loss(PRED, GT).item() < L.focal_loss(PRED, GT).item() / 4


def test_nnpu_loss_by_hand():
    tau = 0.1
    r_pos = -(0.25 * ln(0.5)) - (0.04 * 0.0625 * ln(0.8))
    r_pos_neg = -(0.25 * ln(0.5)) - (0.64 * 0.0625 * ln(0.2))
    r_unl = -(0.81 * ln(0.1) + 0.01 * ln(0.9)) / 2
    assert r_unl - tau * r_pos_neg > 0
    want = tau * r_pos + r_unl - tau * r_pos_neg
    assert L.nnpu_loss(PRED, GT, tau).item() == pytest.approx(want, rel=1e-6)


def test_nnpu_drops_negative_risk_when_below_zero():
    tau = 0.5
    pred = torch.tensor([[0.5, 0.2], [1e-4, 1e-4]])
    r_pos = -(0.25 * ln(0.5)) - (0.04 * 0.0625 * ln(0.8))
    # R_u- ~ 1e-12 while tau * R_p- > 0: the negative part is negative -> only tau R_p+
    assert L.nnpu_loss(pred, GT, tau).item() == pytest.approx(tau * r_pos, rel=1e-5)


def test_offset_l1_at_centres():
    out = torch.zeros(1, 2, 2, 2)
    out[0, :, 1, 0] = torch.tensor([0.3, 0.6])  # cell index 2
    ind = torch.tensor([[2, 0]])
    mask = torch.tensor([[1.0, 0.0]])
    target = torch.tensor([[[0.5, 0.5], [9.0, 9.0]]])
    # |0.3-0.5| + |0.6-0.5| = 0.3 over 2 masked entries (+1e-4)
    assert L.reg_l1(out, mask, ind, target).item() == pytest.approx(0.3 / (2 + 1e-4), rel=1e-6)


def test_continual_terms():
    new = {"fea_deep": torch.ones(2, 2, 2, 2), "fea": torch.full((2, 1, 2, 2), 2.0)}
    old = {"fea_deep": torch.zeros(2, 2, 2, 2), "fea": torch.zeros(2, 1, 2, 2)}
    # sum over the batch / per-image size: 16/8 + (4*8)/4 = 2 + 8
    assert L.distillation_loss(new, old).item() == pytest.approx(10.0)
    from trainers.centernet.network import CenterNet

    net = CenterNet(width=4, head_conv=8)
    names = L.anchor_names(net)
    assert names and all("bn" not in n and not n.endswith("bias") for n in names)
    old_params = {n: p.detach().clone() for n, p in net.named_parameters() if n in names}
    assert L.anchor_loss(net, old_params).item() == 0.0
    with torch.no_grad():
        net.stem[0].weight.add_(0.5)
    want = 0.25 * net.stem[0].weight.numel()
    assert L.anchor_loss(net, old_params).item() == pytest.approx(want, rel=1e-5)


def test_interleaved_schedule():
    rng = np.random.default_rng(0)
    b = interleaved_batches(20, 3, 2, rng, every=8)  # 10 new batches > 8: exemplar pass after 8
    kinds = ["ex" if min(x) >= 20 else "new" for x in b]
    assert kinds == ["new"] * 8 + ["ex", "ex"] + ["new"] * 2
    assert sorted(i for x in b if min(x) >= 20 for i in x) == [20, 21, 22]
    assert sorted(i for x in b if min(x) < 20 for i in x) == list(range(20))
    b = interleaved_batches(6, 5, 4, rng, every=8)  # 2 new batches <= 8: one pass at the end
    kinds = ["ex" if min(x) >= 6 else "new" for x in b]
    assert kinds == ["new", "new", "ex", "ex"]
