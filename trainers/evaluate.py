"""Evaluate picks against reference picks: Hungarian matching, P/R/F1, PR curve, AUPRC, RMSE.

Conventions (pickers.md §G; formulas from Topaz ``topaz/algorithms.py::match_coordinates`` and
``topaz/metrics.py::precision_recall_curve``, re-implemented here):

* Coordinates are pixels of the micrograph both tables refer to (DESIGN frame: x = column,
  y = row; 3D adds z = section, in voxels). Both tables must be in the same pixel frame;
  nothing is rescaled here. Matching is 3D when both tables have a ``z`` column with values,
  2D otherwise (``summary['dims']`` says which).
* Matching, per micrograph: ``scipy.optimize.linear_sum_assignment`` on the cost
  ``min(0, d² − r²)``, i.e. it maximises Σ(r² − d²) over pick/target pairs closer than ``r``;
  an assigned pair with cost < 0 (d < r) is a true positive. Each pick and each target is used
  at most once.
* The PR curve and AUPRC follow Topaz: all picks are matched once (independent of score), then
  sorted by descending score; picks with equal scores form one bucket; AUPRC = Σ_buckets
  precision(bucket) · Δrecall(bucket) with recall = TP / N, N = number of targets.
* P/R/F1 at a fixed ``threshold`` are computed from the picks with score ≥ threshold, matched
  again on their own (exactly what a picker run at that threshold would be scored as).
* "Pooled" numbers are micro-averages: every pick and target of every micrograph counted together
  (one PR curve over all picks, N = all targets). ``per_micrograph`` has each micrograph alone;
  ``summary['macro_f1']`` is their unweighted mean F1 at the threshold, for reference.
* RMSE = sqrt(mean d²) over matched pairs (px).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harvest.conventions import micrograph_key


class EvaluationError(ValueError):
    """Inputs to evaluation are unusable (missing columns, bad radius)."""


@dataclass
class EvalResult:
    """Result of :func:`evaluate_picks`.

    ``curve``: DataFrame[threshold, precision, recall, f1] (pooled, one row per score bucket,
    descending threshold). ``summary``: pooled numbers (micro-average). ``per_micrograph``:
    DataFrame, one row per micrograph. ``matches``: per pick, its micrograph key, score, whether
    it matched (full matching of all picks) and the distance to its target.
    """

    curve: pd.DataFrame
    summary: dict
    per_micrograph: pd.DataFrame
    matches: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)

    def to_json(self, indent: int | None = 2) -> str:
        def clean(v):
            if isinstance(v, (np.floating, float)):
                v = float(v)
                return None if math.isnan(v) else v
            if isinstance(v, np.integer):
                return int(v)
            return v

        doc = {
            "summary": {k: clean(v) for k, v in self.summary.items()},
            "per_micrograph": [
                {k: clean(v) for k, v in row.items()}
                for row in self.per_micrograph.to_dict(orient="records")
            ],
            "curve": {c: [clean(v) for v in self.curve[c].tolist()] for c in self.curve.columns},
        }
        return json.dumps(doc, indent=indent)


def match_picks(
    picks_xy: np.ndarray, truth_xy: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hungarian matching of picks to targets within ``radius`` px (Topaz's cost), on
    (n, 2) or (n, 3) coordinates (both the same width).

    Returns ``(matched, target_index, dist)``: per pick, a bool, the index of its target (−1 when
    unmatched) and the distance to it (NaN when unmatched).
    """
    from scipy.optimize import linear_sum_assignment

    picks_xy = np.asarray(picks_xy, dtype=np.float64)
    truth_xy = np.asarray(truth_xy, dtype=np.float64)
    shaped = [a.shape[-1] for a in (picks_xy, truth_xy) if a.ndim == 2 and a.size]
    dims = shaped[0] if shaped else 2
    picks_xy = picks_xy.reshape(-1, dims)
    truth_xy = truth_xy.reshape(-1, dims)
    n = len(picks_xy)
    matched = np.zeros(n, dtype=bool)
    target = np.full(n, -1, dtype=np.int64)
    dist = np.full(n, np.nan)
    if n == 0 or len(truth_xy) == 0:
        return matched, target, dist
    d2 = np.sum((picks_xy[:, None, :] - truth_xy[None, :, :]) ** 2, axis=2)
    cost = np.minimum(d2 - radius * radius, 0.0)
    rows, cols = linear_sum_assignment(cost)
    ok = cost[rows, cols] < 0
    rows, cols = rows[ok], cols[ok]
    matched[rows] = True
    target[rows] = cols
    dist[rows] = np.sqrt(d2[rows, cols])
    return matched, target, dist


def pr_curve(
    matched: np.ndarray, scores: np.ndarray, n_targets: int
) -> tuple[pd.DataFrame, float]:
    """Topaz-style PR curve over score buckets and AUPRC (see module docstring).

    Returns (DataFrame[threshold, precision, recall, f1] in descending threshold, auprc).
    A bucket's threshold is its score: picks with score ≥ threshold are counted.
    """
    matched = np.asarray(matched, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) == 0:
        empty = pd.DataFrame({c: np.zeros(0) for c in ("threshold", "precision", "recall", "f1")})
        return empty, 0.0
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    m = matched[order]
    last = np.ones(len(s), dtype=bool)  # last element of each bucket of equal scores
    last[:-1] = s[:-1] != s[1:]
    tp = np.cumsum(m)[last]
    pp = (np.nonzero(last)[0] + 1).astype(np.float64)
    gain = np.diff(np.concatenate([[0.0], tp]))
    precision = tp / pp
    if n_targets > 0:
        recall = tp / n_targets
        auprc = float(np.sum(precision * gain) / n_targets)
    else:
        recall = np.zeros_like(tp)
        auprc = float("nan")
    denom = precision + recall
    f1 = np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1), 0.0)
    curve = pd.DataFrame(
        {"threshold": s[last], "precision": precision, "recall": recall, "f1": f1}
    )
    return curve, auprc


def _prf(tp: int, n_picks: int, n_truth: int) -> tuple[float, float, float]:
    p = tp / n_picks if n_picks else (1.0 if n_truth == 0 else 0.0)
    r = tp / n_truth if n_truth else (1.0 if n_picks == 0 else 0.0)
    f = 2 * p * r / (p + r) if (p + r) > 0 else 0.0
    return p, r, f


def _check(frame: pd.DataFrame, name: str, need: tuple[str, ...]) -> pd.DataFrame:
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise EvaluationError(
            f"{name} table lacks column(s) {missing}; it needs {list(need)} "
            "(read it with converters.registry.read_picks)"
        )
    return frame


def _has_z(frame: pd.DataFrame) -> bool:
    return "z" in frame.columns and bool(frame["z"].notna().any())


def evaluate_picks(
    picks: pd.DataFrame,
    truth: pd.DataFrame,
    radius: float,
    threshold: float | None = None,
    micrographs: Iterable[str] | None = None,
) -> EvalResult:
    """Score ``picks`` (DataFrame[micrograph, x, y, (z), score]) against ``truth``
    (DataFrame[micrograph, x, y, (z)]); px of the same micrographs or tomograms (DESIGN
    frame). Distances are 3D when both have ``z`` values, else 2D.

    ``radius`` (px): a pick matches a target closer than this. ``threshold``: score threshold
    for the point P/R/F1 (None: all picks count). ``micrographs``: which micrographs to score
    (names or keys; default: every micrograph in ``truth`` or ``picks``); picks and targets on
    other micrographs are ignored. Micrographs are matched by :func:`micrograph_key`.
    A picks table without ``score`` counts every pick with score 1.
    """
    if not (radius > 0 and math.isfinite(radius)):
        raise EvaluationError(f"matching radius must be a positive number of px, got {radius!r}")
    picks = _check(picks, "picks", ("micrograph", "x", "y")).copy()
    truth = _check(truth, "truth", ("micrograph", "x", "y")).copy()
    if "score" not in picks.columns:
        picks["score"] = 1.0
    coords = ["x", "y", "z"] if _has_z(picks) and _has_z(truth) else ["x", "y"]
    picks["score"] = picks["score"].astype(np.float64).fillna(-np.inf)
    picks["_key"] = [micrograph_key(m) for m in picks["micrograph"].astype(str)]
    truth["_key"] = [micrograph_key(m) for m in truth["micrograph"].astype(str)]
    if micrographs is None:
        keys = sorted(set(truth["_key"]) | set(picks["_key"]))
    else:
        keys = sorted({micrograph_key(str(m)) for m in micrographs})

    p_groups = dict(tuple(picks.groupby("_key", sort=False)))
    t_groups = dict(tuple(truth.groupby("_key", sort=False)))
    rows, all_matched, all_scores, all_keys, all_dist = [], [], [], [], []
    tot = {"tp": 0, "n_picks": 0, "n_truth": 0, "sq": 0.0}
    empty = picks.iloc[0:0]
    for key in keys:
        p = p_groups.get(key, empty)
        t = t_groups.get(key, truth.iloc[0:0])
        pxy = p[coords].to_numpy(np.float64)
        txy = t[coords].to_numpy(np.float64)
        sc = p["score"].to_numpy(np.float64)
        matched, _, dist = match_picks(pxy, txy, radius)
        all_matched.append(matched)
        all_scores.append(sc)
        all_dist.append(dist)
        all_keys.extend([key] * len(sc))
        curve_m, auprc_m = pr_curve(matched, sc, len(txy))
        # point metrics at the threshold: rematch only the picks that pass it
        if threshold is None:
            keep = np.ones(len(sc), dtype=bool)
            m_thr, d_thr = matched, dist
        else:
            keep = sc >= threshold
            m_thr, _, d_thr = match_picks(pxy[keep], txy, radius)
        tp = int(m_thr.sum())
        n_p = int(keep.sum())
        prec, rec, f1 = _prf(tp, n_p, len(txy))
        sq = float(np.nansum(d_thr[m_thr] ** 2)) if tp else 0.0
        tot["tp"] += tp
        tot["n_picks"] += n_p
        tot["n_truth"] += len(txy)
        tot["sq"] += sq
        best = curve_m.loc[curve_m["f1"].idxmax()] if len(curve_m) else None
        rows.append(
            {
                "micrograph": key,
                "n_truth": len(txy),
                "n_picks": n_p,
                "tp": tp,
                "fp": n_p - tp,
                "fn": len(txy) - tp,
                "precision": prec,
                "recall": rec,
                "f1": f1,
                "auprc": auprc_m,
                "best_f1": float(best["f1"]) if best is not None else 0.0,
                "best_threshold": float(best["threshold"]) if best is not None else float("nan"),
                "rmse": math.sqrt(sq / tp) if tp else float("nan"),
            }
        )
    per_mic = pd.DataFrame(rows)
    matched = np.concatenate(all_matched) if all_matched else np.zeros(0, dtype=bool)
    scores = np.concatenate(all_scores) if all_scores else np.zeros(0)
    dists = np.concatenate(all_dist) if all_dist else np.zeros(0)
    curve, auprc = pr_curve(matched, scores, tot["n_truth"])
    prec, rec, f1 = _prf(tot["tp"], tot["n_picks"], tot["n_truth"])
    if len(curve):
        i = int(curve["f1"].to_numpy().argmax())
        best_f1, best_thr = float(curve["f1"].iloc[i]), float(curve["threshold"].iloc[i])
    else:
        best_f1, best_thr = 0.0, float("nan")
    summary = {
        "averaging": "micro (all micrographs pooled)",
        "dims": len(coords),
        "radius": float(radius),
        "threshold": None if threshold is None else float(threshold),
        "micrographs": len(keys),
        "n_truth": tot["n_truth"],
        "n_picks": tot["n_picks"],
        "tp": tot["tp"],
        "fp": tot["n_picks"] - tot["tp"],
        "fn": tot["n_truth"] - tot["tp"],
        "precision": prec,
        "recall": rec,
        "f1": f1,
        "auprc": auprc,
        "best_f1": best_f1,
        "best_threshold": best_thr,
        "rmse": math.sqrt(tot["sq"] / tot["tp"]) if tot["tp"] else float("nan"),
        "macro_f1": float(per_mic["f1"].mean()) if len(per_mic) else float("nan"),
    }
    matches = pd.DataFrame(
        {"micrograph": all_keys, "score": scores, "matched": matched, "distance": dists}
    )
    return EvalResult(curve=curve, summary=summary, per_micrograph=per_mic, matches=matches)
