"""Micrograph/label loading at the network input scale, splits, decoding filters, fibers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_trainers_helpers import disc_image, use_registry, write_mrc


def test_labels_scaled_to_input_width_and_unlabelled_skipped(tmp_path, monkeypatch):
    use_registry(monkeypatch)
    import functools

    from trainers.centernet.view import prepare
    from trainers.core.dataset import labelled_samples, samples_frame
    from trainers.labels import write_labels

    (tmp_path / "img").mkdir()
    # 256 x 192 (ny x nx) micrograph -> input width 96: scale 0.5 on both axes
    write_mrc(tmp_path / "img" / "mic_a.mrc", disc_image(256, [(40, 100)])[:, :192])
    stack = np.stack([disc_image(64, [(20, 30)], seed=s) for s in range(3)])
    write_mrc(tmp_path / "img" / "mic_b.mrc", stack)  # a frame stack: averaged
    write_mrc(tmp_path / "img" / "mic_c.mrc", disc_image(64))  # no label file: skipped
    labels = pd.DataFrame({"micrograph": ["mic_a", "mic_b"], "x": [40.0, 20.0],
                           "y": [100.0, 30.0]})
    write_labels(labels, tmp_path / "lab", "thi")
    s = labelled_samples(tmp_path / "img", tmp_path / "lab", "thi",
                         functools.partial(prepare, input_width=96))
    assert [x.prep.name for x in s] == ["mic_a", "mic_b"]
    a, b = s
    assert a.prep.image.shape == (128, 96) and a.prep.image.dtype == np.uint8
    assert (a.prep.sx, a.prep.sy) == (0.5, 0.5)
    np.testing.assert_allclose(a.xy, [[20.0, 50.0]])
    # the disc is where the scaled label says
    from scipy.ndimage import uniform_filter

    sm = uniform_filter(a.prep.image.astype(float), 5)
    y, x = np.unravel_index(np.argmax(sm), sm.shape)
    assert abs(x - 20) <= 1 and abs(y - 50) <= 1
    assert b.prep.image.shape == (96, 96)
    np.testing.assert_allclose(b.xy, [[30.0, 45.0]])
    back = samples_frame(s)  # back in micrograph px
    np.testing.assert_allclose(back[["x", "y"]].to_numpy(), labels[["x", "y"]].to_numpy())


def test_split_keys():
    from trainers.core.dataset import split_keys

    keys = [f"m{i}" for i in range(10)]
    sp = split_keys(keys, 70, 20, 10, seed=1)
    assert (len(sp["train"]), len(sp["val"]), len(sp["test"])) == (7, 2, 1)
    assert sorted(sp["train"] + sp["val"] + sp["test"]) == sorted(keys)
    assert split_keys(keys, 70, 20, 10, seed=1) == sp
    sp = split_keys(["only"], 70, 20, 10, seed=1)
    assert sp["train"] == ["only"]


def test_decode_filters():
    torch = pytest.importorskip("torch")
    from trainers.centernet.decode import decode, greedy_min_distance

    hm = torch.full((1, 1, 16, 16), -10.0)
    hm[0, 0, 1, 8] = 3.0  # y = 4 px: inside a 6 px edge -> dropped
    hm[0, 0, 8, 8] = 2.0
    hm[0, 0, 8, 10] = 1.0  # 8 px from the previous one
    hm[0, 0, 12, 3] = -1.0  # score 0.27 < 0.3
    out = {"hm": hm, "reg": torch.zeros(1, 2, 16, 16), "wh": torch.zeros(1, 2, 16, 16)}
    p = decode(out, K=10, vis_thresh=0.3, edge=6)[0]
    np.testing.assert_allclose(p["xy"], [[32, 32], [40, 32]])
    p = decode(out, K=10, vis_thresh=0.3, edge=6, min_distance=10)[0]
    np.testing.assert_allclose(p["xy"], [[32, 32]])
    assert greedy_min_distance(np.array([[0, 0], [3, 0], [6, 0]], float), 4).tolist() == [0, 2]


def test_fiber_densify_and_link():
    from trainers.centernet.decode import densify_filaments, link_fibers

    xy, g = densify_filaments(np.array([[0, 0], [20, 0], [100, 100]], float),
                              np.array([0, 0, -1]), step=5)
    assert len(xy) == 6 and (g == 0).sum() == 5
    np.testing.assert_allclose(xy[g == 0][:, 0], [0, 5, 10, 15, 20])
    # two straight filaments crossing at a right angle + one isolated point
    a = np.stack([np.arange(0, 100, 10.0), np.full(10, 50.0)], 1)
    b = np.stack([np.full(8, 45.0), np.arange(0, 160, 20.0) + 60], 1)
    pts = np.concatenate([a, b, [[300.0, 300.0]]])
    group = link_fibers(pts, np.linspace(1, 0.5, len(pts)), max_dist=25, max_turn=0.3)
    assert len(set(group[:10])) == 1 and len(set(group[10:18])) == 1
    assert group[0] != group[10] and group[-1] == -1


def test_edge_and_min_distance_are_at_the_1024_scale():
    from trainers.centernet.view import to_input

    assert to_input(25, {"input_width": 512}) == 12.5
    assert to_input(25, {"input_width": 1024}) == 25
