"""Evaluation: Hungarian matching, P/R/F1, Topaz AUPRC, RMSE (numbers worked by hand)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from trainers.evaluate import EvaluationError, evaluate_picks, match_picks, pr_curve


def frame(mic, xy, scores=None):
    d = pd.DataFrame({"micrograph": mic, "x": [p[0] for p in xy], "y": [p[1] for p in xy]})
    if scores is not None:
        d["score"] = scores
    return d


def test_hand_worked_single_micrograph():
    # targets (0,0) (10,0) (20,0); radius 5
    # picks (1,0) s.9 -> (0,0) d=1; (10,3) s.8 -> (10,0) d=3; (50,50) s.7 unmatched;
    # (20,0) s.6 -> (20,0) d=0.
    # descending score: TP TP FP TP; N=3
    # buckets: precision 1, 1, 2/3, 3/4; recall 1/3, 2/3, 2/3, 1; recall gain 1,1,0,1 (/3)
    # AUPRC = (1 + 1 + 0 + 3/4) / 3 = 11/12
    # F1 per bucket: 1/2, 4/5, 2/3, 6/7 -> best 6/7 at threshold 0.6
    # all picks: P 3/4, R 1, F1 6/7, RMSE sqrt((1 + 9 + 0)/3)
    truth = frame("mic_1", [(0, 0), (10, 0), (20, 0)])
    picks = frame("mic_1", [(1, 0), (10, 3), (50, 50), (20, 0)], [0.9, 0.8, 0.7, 0.6])
    res = evaluate_picks(picks, truth, radius=5)
    s = res.summary
    assert s["auprc"] == pytest.approx(11 / 12, abs=1e-12)
    assert s["precision"] == pytest.approx(0.75)
    assert s["recall"] == pytest.approx(1.0)
    assert s["f1"] == pytest.approx(6 / 7)
    assert s["best_f1"] == pytest.approx(6 / 7)
    assert s["best_threshold"] == pytest.approx(0.6)
    assert s["rmse"] == pytest.approx(math.sqrt(10 / 3))
    assert res.curve["precision"].tolist() == pytest.approx([1, 1, 2 / 3, 3 / 4])
    assert res.curve["recall"].tolist() == pytest.approx([1 / 3, 2 / 3, 2 / 3, 1])
    assert res.curve["f1"].tolist() == pytest.approx([0.5, 0.8, 2 / 3, 6 / 7])
    # threshold 0.75 keeps the first two picks: P 1, R 2/3, F1 4/5, RMSE sqrt((1 + 9)/2)
    res = evaluate_picks(picks, truth, radius=5, threshold=0.75)
    s = res.summary
    assert (s["tp"], s["fp"], s["fn"]) == (2, 0, 1)
    assert s["precision"] == pytest.approx(1.0)
    assert s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(0.8)
    assert s["rmse"] == pytest.approx(math.sqrt(5))
    assert s["auprc"] == pytest.approx(11 / 12)  # the curve always uses every pick


def test_ties_form_one_bucket():
    # two picks with the same score: one TP, one FP -> one bucket, precision 1/2, recall 1/1
    # AUPRC = 1/2 * 1 / 1 = 0.5 (not 1*1 as an arbitrary ordering TP-first would give)
    curve, auprc = pr_curve(np.array([True, False]), np.array([0.5, 0.5]), 1)
    assert len(curve) == 1
    assert auprc == pytest.approx(0.5)


def test_hungarian_beats_greedy_nearest():
    # targets A(0,0), B(8,0), radius 5; pick p1 (4.2,0) score .9 is nearer to B (3.8 < 4.2);
    # pick p2 (11.5,0) score .8 can only reach B (3.5). Greedy by score takes p1->B and leaves
    # p2 without a target (A is 11.5 away): 1 TP. Hungarian: p1->A, p2->B: 2 TP,
    # sum(d^2 - r^2) = (17.64-25) + (12.25-25) = -20.11 < -10.56.
    truth = frame("m", [(0, 0), (8, 0)])
    picks = frame("m", [(4.2, 0), (11.5, 0)], [0.9, 0.8])

    def greedy(pxy, txy, r):
        used, tp = set(), 0
        for p in pxy:  # already sorted by score
            d = np.hypot(*(txy - p).T)
            d[list(used)] = np.inf
            j = int(np.argmin(d))
            if d[j] < r:
                used.add(j)
                tp += 1
        return tp

    pxy = picks[["x", "y"]].to_numpy()
    txy = truth[["x", "y"]].to_numpy()
    assert greedy(pxy, txy, 5) == 1
    matched, target, dist = match_picks(pxy, txy, 5)
    assert matched.tolist() == [True, True]
    assert target.tolist() == [0, 1]
    assert dist.tolist() == pytest.approx([4.2, 3.5])
    res = evaluate_picks(picks, truth, radius=5)
    assert res.summary["recall"] == 1.0
    assert res.summary["rmse"] == pytest.approx(math.sqrt((4.2**2 + 3.5**2) / 2))


def test_pooled_is_micro_average_and_per_micrograph():
    # mic a: 1 target, 1 correct pick -> P 1 R 1 F1 1
    # mic b: 3 targets, 1 correct + 1 wrong pick -> P 1/2, R 1/3, F1 2/5
    # pooled (micro): TP 2, picks 3, targets 4 -> P 2/3, R 1/2, F1 4/7; macro F1 (1 + .4)/2
    truth = pd.concat([frame("a", [(10, 10)]), frame("b", [(10, 10), (50, 50), (90, 90)])])
    picks = pd.concat(
        [frame("a", [(11, 10)], [1.0]), frame("b", [(10, 12), (200, 200)], [0.9, 0.8])]
    )
    res = evaluate_picks(picks, truth, radius=4)
    pm = res.per_micrograph.set_index("micrograph")
    assert pm.loc["a", ["precision", "recall", "f1"]].tolist() == pytest.approx([1, 1, 1])
    assert pm.loc["b", ["precision", "recall", "f1"]].tolist() == pytest.approx([0.5, 1 / 3, 0.4])
    s = res.summary
    assert (s["precision"], s["recall"]) == pytest.approx((2 / 3, 0.5))
    assert s["f1"] == pytest.approx(4 / 7)
    assert s["macro_f1"] == pytest.approx(0.7)
    assert s["averaging"].startswith("micro")


def test_micrographs_matched_by_key_and_restricted():
    truth = frame("J3/motioncorrected/012345678901234567890_mic_0001_patch_aligned.mrc",
                  [(5, 5)])
    picks = pd.concat([frame("mic_0001", [(5, 6)], [1.0]), frame("other", [(1, 1)], [1.0])])
    res = evaluate_picks(picks, truth, radius=3, micrographs=["mic_0001"])
    assert res.summary["tp"] == 1 and res.summary["fp"] == 0
    res = evaluate_picks(picks, truth, radius=3)  # union: the pick on 'other' is a FP
    assert res.summary["fp"] == 1


def test_bad_inputs():
    with pytest.raises(EvaluationError, match="radius"):
        evaluate_picks(frame("m", [(0, 0)], [1]), frame("m", [(0, 0)]), radius=0)
    with pytest.raises(EvaluationError, match="lacks column"):
        evaluate_picks(pd.DataFrame({"x": [1.0]}), frame("m", [(0, 0)]), radius=3)


def test_json_roundtrip():
    import json

    res = evaluate_picks(frame("m", [(0, 0)], [1]), frame("m", [(0, 0), (9, 9)]), radius=3)
    doc = json.loads(res.to_json())
    assert doc["summary"]["recall"] == 0.5
    assert doc["per_micrograph"][0]["micrograph"] == "m"
    assert doc["summary"]["rmse"] == 0.0


def test_same_auprc_as_topaz():
    topaz_metrics = pytest.importorskip("topaz.metrics", reason="topaz-em not installed")
    from topaz.algorithms import match_coordinates

    rng = np.random.default_rng(3)
    truths, picks = [], []
    for i in range(4):
        t = rng.uniform(0, 300, size=(40, 2))
        near = t[:28] + rng.normal(0, 4, size=(28, 2))
        far = rng.uniform(0, 300, size=(15, 2))
        p = np.concatenate([near, far])
        # float32 scores (Topaz sorts in float32) with a few exact ties
        sc = rng.random(len(p)).astype(np.float32)
        sc[:5] = np.float32(0.5)
        truths.append(frame(f"mic_{i}", t))
        picks.append(frame(f"mic_{i}", p, sc.astype(np.float64)))
    truth = pd.concat(truths, ignore_index=True)
    pk = pd.concat(picks, ignore_index=True)
    radius = 6.0
    res = evaluate_picks(pk, truth, radius=radius)

    matches, scores = [], []
    for i in range(4):
        t = truth[truth.micrograph == f"mic_{i}"][["x", "y"]].to_numpy()
        p = pk[pk.micrograph == f"mic_{i}"]
        m, _ = match_coordinates(t, p[["x", "y"]].to_numpy(), radius)
        matches.append(m)
        scores.append(p["score"].to_numpy(np.float32))
    pr, re, thr, auprc = topaz_metrics.precision_recall_curve(
        np.concatenate(matches), np.concatenate(scores), N=len(truth)
    )
    assert res.summary["auprc"] == pytest.approx(auprc, abs=1e-9)
    np.testing.assert_allclose(res.curve["precision"], pr, atol=1e-9)
    np.testing.assert_allclose(res.curve["recall"], re, atol=1e-9)
    np.testing.assert_allclose(res.curve["threshold"], thr, atol=1e-7)
