"""The best-F1 score threshold of picks against targets, written out independently of
``trainers.evaluate`` for the validation-threshold tests (no tests here)."""

from __future__ import annotations

import numpy as np


def best_threshold(picks: dict, truth: dict, radius: float) -> tuple[float, float]:
    """(best F1, its threshold) of picks {name: (coords (n, 2|3), score (n,))} against targets
    {name: (m, 2|3)} more than 2·radius apart, so that a pick lies within ``radius`` of one
    target at most. Each target is matched once, to its nearest pick closer than ``radius``
    whatever that pick's score (Topaz's curve); at threshold t the true positives are the
    matched picks scoring ≥ t and the predictions all picks scoring ≥ t; F1 = 2PR/(P+R); the
    best F1 at the highest t that reaches it."""
    scores, matched, n_truth = [], [], 0
    for name, (xy, sc) in picks.items():
        xy = np.asarray(xy, dtype=np.float64)
        targets = np.asarray(truth[name], dtype=np.float64)
        n_truth += len(targets)
        hit = np.zeros(len(sc), bool)
        for c in targets:
            d = np.linalg.norm(xy - c, axis=1)
            if len(d) and d.min() < radius:
                hit[int(d.argmin())] = True
        scores.append(np.asarray(sc, dtype=np.float64))
        matched.append(hit)
    scores, matched = np.concatenate(scores), np.concatenate(matched)
    best = (-1.0, float("nan"))
    for t in sorted(set(scores.tolist()), reverse=True):
        keep = scores >= t
        tp = int(matched[keep].sum())
        p, r = tp / keep.sum(), tp / n_truth
        f1 = 2 * p * r / (p + r) if tp else 0.0
        if f1 > best[0]:
            best = (f1, t)
    return best


def far_apart(truth: dict, radius: float) -> bool:
    """Whether the targets of every micrograph are more than 2·radius apart (the rule's
    premise)."""
    for t in truth.values():
        t = np.asarray(t, dtype=np.float64)
        d = np.linalg.norm(t[:, None] - t[None], axis=2) + np.eye(len(t)) * 1e9
        if len(t) > 1 and d.min() <= 2 * radius:
            return False
    return True
