"""CenterNet losses: focal heatmap loss (plain, EPicker's sparse variant, nnPU), offset/size L1,
and EPicker's continual-learning terms. Heatmap predictions ``pred`` are probabilities
(sigmoid outputs clamped to [1e-4, 1 − 1e-4] as in CenterNet); ``gt`` is the Gaussian target.
"""

from __future__ import annotations

import torch

EPS = 1e-4


def prob(logits: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(logits).clamp(EPS, 1 - EPS)


def focal_loss(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """CornerNet focal loss (α = 2, β = 4), normalised by the number of centres:
    −[Σ_{gt=1} (1−p)² log p + Σ_{gt<1} (1−gt)⁴ p² log(1−p)] / N_pos."""
    pos = gt.eq(1).float()
    neg = 1 - pos
    pos_loss = (torch.log(pred) * (1 - pred) ** 2 * pos).sum()
    neg_loss = (torch.log(1 - pred) * pred**2 * (1 - gt) ** 4 * neg).sum()
    n = pos.sum()
    if n == 0:
        return -neg_loss
    return -(pos_loss + neg_loss) / n


def sparse_loss(pred: torch.Tensor, gt: torch.Tensor, weight: float = 0.01,
                pseudo: float = 0.7) -> torch.Tensor:
    """EPicker's ``--sparse_anno`` loss (pickers.md §D3): focal positive term at centres; every
    other pixel weighted by ``weight``·(1−gt)⁴ and treated as a pseudo-positive (−log p) where
    p > ``pseudo``, else as a negative (−log(1−p), no p² factor); all / N_pos."""
    pos = gt.eq(1).float()
    other = 1 - pos
    w = weight * (1 - gt) ** 4 * other
    hi = (pred > pseudo).float()
    pos_loss = (torch.log(pred) * (1 - pred) ** 2 * pos).sum()
    pseudo_loss = (w * hi * torch.log(pred)).sum()
    neg_loss = (w * (1 - hi) * torch.log(1 - pred)).sum()
    n = pos.sum().clamp(min=1)
    return -(pos_loss + pseudo_loss + neg_loss) / n


def _mean(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    n = m.sum()
    return (x * m).sum() / n if n > 0 else x.sum() * 0


def nnpu_loss(pred: torch.Tensor, gt: torch.Tensor, prior: float, beta: float = 0.0) -> torch.Tensor:
    """Non-negative PU loss with CenterNet focal terms (cet_pick ``_pu_neg_loss``, pickers.md
    §E2, here in 2D). P = centres (gt = 1), S = Gaussian shells (0 < gt < 1), U = the rest
    (unlabelled, gt = 0). With τ = ``prior``:

    R_p⁺ = −mean_P[(1−p)² log p] − mean_S[p²(1−gt)⁴ log(1−p)]
    R_p⁻ = −mean_P[p² log(1−p)] − mean_S[(1−p)² gt⁴ log p]
    R_u⁻ = −mean_U[p² log(1−p)]
    L = τ·R_p⁺ + (R_u⁻ − τ·R_p⁻), and only τ·R_p⁺ when R_u⁻ − τ·R_p⁻ < −β.
    """
    P = gt.eq(1).float()
    S = ((gt > 0) & (gt < 1)).float()
    U = gt.eq(0).float()
    lp, l1p = torch.log(pred), torch.log(1 - pred)
    r_pos = -_mean((1 - pred) ** 2 * lp, P) - _mean(pred**2 * (1 - gt) ** 4 * l1p, S)
    r_pos_neg = -_mean(pred**2 * l1p, P) - _mean((1 - pred) ** 2 * gt**4 * lp, S)
    r_unl = -_mean(pred**2 * l1p, U)
    neg = r_unl - prior * r_pos_neg
    if neg.item() < -beta:
        return prior * r_pos
    return prior * r_pos + neg


def gather(feat: torch.Tensor, ind: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) map at flat cell indices ``ind`` (B, K) → (B, K, C)."""
    b, c = feat.shape[:2]
    flat = feat.view(b, c, -1).permute(0, 2, 1)
    return flat.gather(1, ind.unsqueeze(2).expand(-1, -1, c))


def reg_l1(out: torch.Tensor, mask: torch.Tensor, ind: torch.Tensor, target: torch.Tensor):
    """L1 between the map ``out`` at the centres and ``target``, averaged over the centres
    (CenterNet ``RegL1Loss``)."""
    pred = gather(out, ind)
    m = mask.unsqueeze(2).expand_as(pred)
    return (torch.abs(pred * m - target * m)).sum() / (m.sum() + 1e-4)


def distillation_loss(new: dict, old: dict) -> torch.Tensor:
    """EPicker's feature distillation (pickers.md §D2): squared differences of the deepest
    backbone feature and of the neck feature, each summed and divided by its per-image size
    C·H·W (EPicker: 512·32·32 and 64·256·256)."""
    total = 0
    for k in ("fea_deep", "fea"):
        a, b = new[k], old[k].detach()
        total = total + ((a - b) ** 2).sum() / a[0].numel()
    return total


def anchor_loss(model: torch.nn.Module, old_params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Σ (θ − θ_old)² over convolution weights (parameters named ``weight`` with ≥ 2 dims,
    i.e. not BatchNorm), EPicker's uniform-weight EWC-like anchor."""
    total = 0
    for name, p in model.named_parameters():
        if name in old_params:
            total = total + ((p - old_params[name]) ** 2).sum()
    return total


def anchor_names(model: torch.nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if n.endswith("weight") and p.dim() >= 2]
