"""CIoU and NMS against hand-worked cases; PartiNet's label-line text (golden)."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from trainers.dynamicdet.boxes import box_iou, ciou, nms, postprocess  # noqa: E402


def t(*rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_ciou_hand_worked():
    # identical boxes: 1
    assert float(ciou(t([0, 0, 2, 2]), t([0, 0, 2, 2]))[0]) == pytest.approx(1.0, abs=1e-6)
    # same shape, shifted by 1: IoU 2/6, enclosing diagonal² 3² + 2² = 13, centre distance² 1
    assert float(ciou(t([0, 0, 2, 2]), t([1, 0, 3, 2]))[0]) == pytest.approx(1 / 3 - 1 / 13,
                                                                              abs=1e-6)
    # different aspect: IoU 4/8, ρ²/c² = 1/20, v = 4/π²·(atan 2 − atan 1)², α = v/(1 − IoU + v)
    v = 4 / math.pi**2 * (math.atan(2) - math.atan(1)) ** 2
    want = 0.5 - 1 / 20 - v * v / (0.5 + v)
    assert float(ciou(t([0, 0, 2, 2]), t([0, 0, 4, 2]))[0]) == pytest.approx(want, abs=1e-6)
    # disjoint: IoU 0, centres 10 apart on x, enclosing box 12 × 2
    assert float(ciou(t([0, 0, 2, 2]), t([10, 0, 12, 2]))[0]) == pytest.approx(
        -100 / 148, abs=1e-6)


def test_box_iou_matrix():
    iou = box_iou(t([0, 0, 10, 10]), t([5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30]))
    np.testing.assert_allclose(iou.numpy(), [[1 / 3, 1, 0]], atol=1e-9)


def test_nms_hand_worked():
    boxes = t([0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [5, 0, 15, 10])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6], dtype=torch.float64)
    # B overlaps A with IoU 90/110 and goes; D overlaps A with IoU 1/3 and B (gone) more
    assert nms(boxes, scores, 0.5).tolist() == [0, 2, 3]
    assert nms(boxes, scores, 0.2).tolist() == [0, 2]
    # order is by score, not by input position: B first, D overlaps B with IoU 60/140 and
    # stays, A (IoU 90/110 with B) goes
    assert nms(boxes, torch.tensor([0.1, 0.8, 0.7, 0.6], dtype=torch.float64),
               0.5).tolist() == [1, 2, 3]
    assert nms(boxes, scores, 0.5, max_det=2).tolist() == [0, 2]
    assert nms(boxes[:0], scores[:0], 0.5).numel() == 0


def test_postprocess_keeps_confidence_strictly_above_the_threshold():
    logit = math.log(0.25 / 0.75)  # sigmoid = 0.25
    pred = torch.tensor([[[logit, 10, 10, 4, 4], [5.0, 50, 50, 4, 4], [-5.0, 90, 90, 4, 4]]])
    (det,) = postprocess(pred, 0.25, 0.5)
    assert det.shape == (1, 6)
    np.testing.assert_allclose(det[0, :4].numpy(), [48, 48, 52, 52])
    (det,) = postprocess(pred, 0.2, 0.5)
    assert det.shape[0] == 2


def test_label_lines_golden():
    from trainers.dynamicdet.detect import label_lines

    det = np.array([[100.0, 50.0, 200.0, 150.0, 0.912345678], [0.0, 0.0, 30.0, 60.0, 0.5]])
    assert label_lines(det, 1000, 500) == ("0 0.15 0.2 0.1 0.2 0.912346\n"
                                           "0 0.015 0.06 0.03 0.12 0.5\n")
    assert label_lines(np.zeros((0, 5)), 10, 10) == ""
