"""cet_pick's losses (``models/loss.py``; pickers.md §E2–E3), re-implemented.

* :func:`focal_loss` — CenterNet's focal loss on a heatmap with peaks 1 (``_neg_loss``;
  voxels < 0 are ignored). Validation, and training with ``--pn``.
* :func:`pu_loss` — the non-negative PU focal loss with class prior τ (``_pu_neg_loss``,
  β = 0): P = {gt = 1}, S = {−1 < gt < 1}, U = {gt = −1};
  L = τ·R_p⁺ + (R_u⁻ − τ·R_p⁻), or τ·R_p⁺ alone when the bracket is negative.
* :func:`contrastive_loss` — the debiased contrastive regularisation (``UnbiasedConLoss``) on
  L2-normalised voxel embeddings of a crop and its flipped view (flipped back), returning
  (L_sup, L_unsup); cet_pick adds ``L_sup + 0.1·L_unsup``.
* :func:`consistency_loss` — MSE between the two views' heatmaps.

With ``--pn`` there are no unlabelled (−1) voxels, so ``--contrastive`` keeps only the
supervised debiased term (cet_pick switches to another supervised loss, ``SupConLossV2_more``,
which is not re-implemented here).

**Deviation (memory).** cet_pick builds the full (2N)² similarity matrix of every voxel of
both views (N = 2·6·32·32 → 24.6k², ~2.4 GB fp32 per step). Every term of the loss is a
mean over *anchor rows* of a function of that row alone (the row's means over all columns),
so here only a uniform random subset of the unlabelled anchor rows is formed (every positive
anchor is kept), against all columns: memory ``rows × 2N``. Each sampled row's term is exact,
and the mean over a uniform sample is an unbiased estimate of the mean over all rows
(conditionally on the pseudo-label group being sampled at all; tested). ``samples=0`` forms
every row (the exact loss).
"""

from __future__ import annotations

import math

import numpy as np
import torch

EPS = 1e-4


def prob(logits: torch.Tensor) -> torch.Tensor:
    """Sigmoid clamped to [1e-4, 1 − 1e-4] (cet_pick ``_sigmoid``)."""
    return torch.clamp(torch.sigmoid(logits), min=EPS, max=1 - EPS)


def focal_loss(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """CenterNet focal loss; ``gt`` peaks 1, negatives in [0, 1), ignored where < 0."""
    pos = gt.eq(1).float()
    neg = ((gt < 1) & (gt > -1)).float()
    neg_w = torch.pow(1 - gt, 4)
    pos_loss = (torch.log(pred) * torch.pow(1 - pred, 2) * pos).sum()
    neg_loss = (torch.log(1 - pred) * torch.pow(pred, 2) * neg_w * neg).sum()
    n = pos.sum()
    if n == 0:
        return -neg_loss
    return -(pos_loss + neg_loss) / n


def pu_loss(pred: torch.Tensor, gt: torch.Tensor, tau: float, beta: float = 0.0) -> torch.Tensor:
    """Non-negative PU focal loss (see the module docstring)."""
    p_ind = gt.eq(1).float()
    s_ind = ((gt > -1) & (gt < 1)).float()
    u_ind = gt.eq(-1).float()
    n_p, n_s, n_u = p_ind.sum(), s_ind.sum(), u_ind.sum()
    zero = pred.sum() * 0
    log_p, log_n = torch.log(pred), torch.log(1 - pred)

    def mean(x, ind, n):
        return (x * ind).sum() / n if n > 0 else zero

    r_pos = -mean(log_p * (1 - pred) ** 2, p_ind, n_p) \
        - mean(log_n * pred ** 2 * (1 - gt) ** 4, s_ind, n_s)
    r_pos_neg = -mean(log_n * pred ** 2, p_ind, n_p) \
        - mean(log_p * (1 - pred) ** 2 * gt ** 4, s_ind, n_s)
    r_unl = -mean(log_n * pred ** 2, u_ind, n_u)
    neg = r_unl - tau * r_pos_neg
    if neg < -beta:
        return tau * r_pos
    return tau * r_pos + neg


def consistency_loss(p1: torch.Tensor, p2: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.mse_loss(p1, p2)


def _calc_g(pos: torch.Tensor, neg: torch.Tensor, prior: float, temp: float) -> torch.Tensor:
    ng = (neg - prior * pos) / (1 - prior)
    return torch.clamp(ng, min=math.exp(-1 / temp))


class _ExpRowSum(torch.autograd.Function):
    """Row sums of exp(A Fᵀ − row max) (max detached) and the row maxima, with a backward
    that needs only the saved (R, M) block and two matmuls: d/dA = g·(E F),
    d/dF = Eᵀ (g·A). Autograd's own graph would add an elementwise product over the block."""

    @staticmethod
    def forward(ctx, a, f):
        block = a @ f.t()
        top = block.amax(dim=1)
        block.sub_(top[:, None]).exp_()
        ctx.save_for_backward(a, f, block)
        ctx.mark_non_differentiable(top)
        return block.sum(1), top

    @staticmethod
    def backward(ctx, g, _g_top):
        a, f, block = ctx.saved_tensors
        g = g[:, None]
        grad_a = g * (block @ f) if ctx.needs_input_grad[0] else None
        grad_f = block.t() @ (g * a) if ctx.needs_input_grad[1] else None
        return grad_a, grad_f


def sample_rows(labels: torch.Tensor, thresh: float, samples: int,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Anchor rows of the 2N stacked voxels (both views): every positive (label > thresh)
    and a uniform sample of ``samples`` unlabelled rows (label < 0; all when ``samples`` is
    0 or larger than their number). Returns sorted row indices."""
    all_labels = torch.cat([labels, labels])
    pos = torch.nonzero(all_labels > thresh).flatten()
    unl = torch.nonzero(all_labels < 0).flatten()
    if samples and samples < len(unl):
        pick = torch.randperm(len(unl), generator=generator)[:samples]
        unl = unl[pick.to(unl.device)]
    return torch.sort(torch.cat([pos, unl])).values


def contrastive_loss(labels: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor,
                     f1: torch.Tensor, f2: torch.Tensor, temp: float, tau: float,
                     thresh: float, rows: torch.Tensor | None = None):
    """(L_sup, L_unsup) of cet_pick's ``UnbiasedConLoss`` for N voxels of one view:
    ``labels`` (N,) targets (−1 unlabelled), ``p1``/``p2`` (N,) heatmap probabilities of the
    two views, ``f1``/``f2`` (N, C) unit embeddings (the second view flipped back). ``rows``:
    the anchor rows to form (indices into the 2N stacked voxels; None = all).

    Every term needs, per anchor row, only three sums of exp(similarity − row max) (over
    the positive columns, the other columns, all columns) and the partner's entry. So the
    (R, 2N) block is formed once, in place (matmul → − max → exp), and only summed
    (:class:`_ExpRowSum`); the few positive (and label = thresh) columns get a small block
    of their own, the other columns' sum is the rest, and the partner and self entries are
    dot products: no masked copies or gathers of the big block, whose backward would
    allocate further dense blocks (5.5× less CPU per step than that form).
    cet_pick zeroes the self logit before exp, so the self entry counts exp(0) = 1 with no
    gradient: the block's own self entry is swapped for that 1."""
    n = f1.shape[0]
    feats = torch.cat([f1, f2], dim=0)
    all_labels = torch.cat([labels, labels])
    preds = torch.cat([p1, p2])
    if rows is None:
        rows = torch.arange(2 * n, device=feats.device)
    partner = torch.where(rows < n, rows + n, rows - n)
    anchors = feats[rows]
    scaled = anchors / temp
    total, top = _ExpRowSum.apply(scaled, feats)
    pos_col = (all_labels > thresh) if thresh < 1 else all_labels.eq(1)
    other_col = all_labels < thresh

    def col_sum(mask):
        idx = torch.nonzero(mask).flatten()
        return torch.exp(scaled @ feats[idx].t() - top[:, None]).sum(1)

    pos_sum = col_sum(pos_col)
    other_sum = total - pos_sum - col_sum(~pos_col & ~other_col)
    # self entry: the block holds exp(s_ii − max); cet_pick's is exp(0) = 1
    fix = 1 - torch.exp((scaled * anchors).sum(1) - top)
    total = total + fix
    pos_sum = pos_sum + fix * pos_col[rows]
    other_sum = other_sum + fix * other_col[rows]
    sums = torch.stack([pos_sum, other_sum, total], 1)
    row_lab = all_labels[rows]
    is_pos = (row_lab > thresh) if thresh < 1 else row_lab.eq(1)
    zero = feats.sum() * 0
    n_pos_one_view = (labels > thresh).float().sum() if thresh < 1 else labels.eq(1).sum()

    l_sup = zero
    if is_pos.any():
        pos_mean = sums[is_pos, 0] / (pos_col.sum() - 1)
        rem_mean = sums[is_pos, 1] / other_col.sum()
        ng = _calc_g(pos_mean, rem_mean, tau, temp)
        l_sup = (-torch.log(pos_mean / (pos_mean + ng))).mean()

    is_unl = row_lab < 0
    l_unsup = zero
    if is_unl.any():
        pos_mean = torch.exp((scaled[is_unl] * feats[partner[is_unl]]).sum(1)
                             - top[is_unl])
        n_neg = 2 * (n - n_pos_one_view)
        rem_mean = (sums[is_unl, 2] - pos_mean) / n_neg
        ng_pos = _calc_g(pos_mean, rem_mean, tau, temp)
        ng_neg = _calc_g(pos_mean, rem_mean, 1 - tau, temp)
        p = preds[rows[is_unl]]
        term_pos = -torch.log(pos_mean / (pos_mean + ng_pos)) * p
        term_neg = -torch.log(pos_mean / (pos_mean + ng_neg)) * (1 - p)
        hi, lo = p > 0.99, p < 0.01
        mid = ~hi & ~lo
        if hi.any():
            l_unsup = l_unsup + term_pos[hi].mean()
        if lo.any():
            l_unsup = l_unsup + term_neg[lo].mean()
        if mid.any():
            l_unsup = l_unsup + term_pos[mid].mean() + term_neg[mid].mean()
    return l_sup, l_unsup


def flatten_views(out1: dict, out2: dict, gt: torch.Tensor, flip_ud: torch.Tensor):
    """Voxel rows of a batch for :func:`contrastive_loss`: labels, probabilities and unit
    embeddings of view 1 and of view 2 flipped back (``flip_ud`` per batch item: the view
    was flipped up–down (H) when true, left–right (W) otherwise)."""
    h1, h2 = prob(out1["hm"]), prob(out2["hm"])
    e1, e2 = out1["proj"], out2["proj"]
    back_h, back_e = [], []
    for i in range(h2.shape[0]):
        dim = -2 if bool(flip_ud[i]) else -1
        back_h.append(h2[i].flip(dim))
        back_e.append(e2[i].flip(dim))
    h2, e2 = torch.stack(back_h), torch.stack(back_e)
    c = e1.shape[1]
    f1 = e1.permute(1, 0, 2, 3, 4).reshape(c, -1).t()
    f2 = e2.permute(1, 0, 2, 3, 4).reshape(c, -1).t()
    return gt.reshape(-1), h1.reshape(-1), h2.reshape(-1), f1, f2


def full_similarity_bytes(n_voxels: int) -> int:
    """Bytes of cet_pick's full similarity matrix for ``n_voxels`` voxels per view."""
    return int(np.int64(2 * n_voxels) ** 2 * 4)
