"""DynamicDet's network, assigner, losses, step 2 and routing on tiny cases."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pytorch_lightning")

from trainers.dynamicdet import loss as L  # noqa: E402
from trainers.dynamicdet.network import DynamicDet, config_of  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(n)


def tiny():
    return DynamicDet(config_of("tiny"))


def test_simota_assigns_cells_near_each_particle_and_each_cell_once():
    net = tiny()
    outs = net(torch.randn(1, 3, 128, 128))["p1"]
    centres, stride, _ = L.grid_info(outs, net.strides)
    gt = torch.tensor([[20.0, 20.0, 40.0, 40.0], [80.0, 80.0, 100.0, 100.0]])
    pred = torch.cat([centres - 10, centres + 10], 1)  # every cell predicts a 20 px box
    obj = torch.zeros(len(centres))
    fg, match = L.simota(pred, obj, centres, stride, gt)
    assert fg.any()
    for g in (0, 1):
        cells = centres[fg & (match == g)]
        assert len(cells) >= 1
        c = (gt[g, :2] + gt[g, 2:]) / 2
        s = stride[fg & (match == g)]
        assert bool(((cells - c).abs() < L.CENTRE_RADIUS * s[:, None]).all())
        assert bool(((cells >= gt[g, :2]) & (cells <= gt[g, 2:])).all())
    assert set(match[fg].tolist()) == {0, 1}
    assert not L.simota(pred, obj, centres, stride, gt[:0])[0].any()


def test_head_loss_without_particles_is_the_weighted_objectness_bce():
    net = tiny()
    outs = [torch.randn(2, 5, 16 // 2**i, 16 // 2**i) for i in range(3)]
    per_image, _ = L.head_loss(outs, net.strides, torch.zeros((0, 5)), 128.0)
    gain = 0.7 * (128 / 640) ** 2
    for i in range(2):
        want = sum(w * torch.nn.functional.binary_cross_entropy_with_logits(
            o[i, 0].flatten(), torch.zeros(o[i, 0].numel())) for w, o in
            zip([4.0, 1.0, 0.4], outs))
        assert float(per_image[i]) == pytest.approx(float(gain * want), rel=1e-5)


def test_head_loss_box_term_is_one_minus_ciou_at_assigned_cells():
    net = tiny()
    outs = net(torch.randn(1, 3, 128, 128))["p2"]
    tg = torch.tensor([[0, 64.0, 64.0, 20.0, 20.0]])
    _, parts = L.head_loss(outs, net.strides, tg, 128.0)
    assert 0 < float(parts["lbox"]) <= 2


def test_gradients_reach_backbone1_through_the_composite_connections_from_head2():
    net = tiny()
    out = net(torch.randn(2, 3, 128, 128))
    tg = torch.tensor([[0, 40.0, 40.0, 20.0, 20.0], [1, 80.0, 70.0, 20.0, 20.0]])
    l2, _ = L.head_loss(out["p2"], net.strides, tg, 128.0)
    l2.sum().backward()

    def grad(m):
        return sum(float(p.grad.abs().sum()) for p in m.parameters() if p.grad is not None)

    assert grad(net.composite) > 0
    assert grad(net.backbone1) > 0  # only the composite connections link it to head 2
    assert grad(net.head1) == 0


def test_router_loss_is_the_formula_with_the_running_median_offset():
    off = L.MedianOffset()
    s = torch.tensor([0.7, 0.2], requires_grad=True)
    l1, l2 = torch.tensor([3.0, 1.0]), torch.tensor([1.0, 2.0])
    loss, _ = L.router_loss(s, l1, l2, off)
    d = 0.5  # median of L1 − L2 = median(2, −1)
    want = (0.7 * (3 - d / 2) + 0.3 * (1 + d / 2) + 0.2 * (1 - d / 2) + 0.8 * (2 + d / 2)) / 2
    assert float(loss.detach()) == pytest.approx(want)
    loss.backward()
    np.testing.assert_allclose(s.grad.numpy(), [(2 - d) / 2, (-1 - d) / 2], rtol=1e-6)
    # the median runs over every image seen: now (2, −1, 4) → 2
    loss, parts = L.router_loss(torch.tensor([0.5]), torch.tensor([5.0]), torch.tensor([1.0]),
                                off)
    assert float(parts["delta"]) == 2.0
    assert float(loss) == pytest.approx(0.5 * (5 - 1) + 0.5 * (1 + 1))


def _task(stage):
    from trainers.dynamicdet.task import DynamicDetTask

    return DynamicDetTask({"model_cfg": config_of("tiny"), "stage": stage, "lr": 1e-2,
                           "img_size": 128, "diameter": 20.0})


def test_step2_changes_only_the_router_and_no_batchnorm_statistic():
    task = _task("step2")
    before = {k: v.clone() for k, v in task.net.state_dict().items()}
    opt = task.configure_optimizers()
    task.train()
    batch = {"input": torch.randn(2, 3, 128, 128),
             "targets": torch.tensor([[0, 40.0, 40.0, 20.0, 20.0], [1, 80.0, 70.0, 20, 20]])}
    for _ in range(3):
        loss, _ = task.compute_loss(task(batch["input"]), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = task.net.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed and all(k.startswith("router.") for k in changed), changed
    assert all(p.requires_grad == n.startswith("router.") for n, p in
               task.net.named_parameters())
    assert len(task.offset.diffs) == 6


class FixedRouter(torch.nn.Module):
    """Scores from the image brightness (so routes are known and per image)."""

    def forward(self, feats1):
        return torch.sigmoid(feats1[0].mean((1, 2, 3)) * 50)


def test_easy_images_never_run_backbone2_and_batches_equal_single_images():
    net = tiny().eval()
    net.router = FixedRouter()
    x = torch.randn(6, 3, 128, 128) + torch.tensor([-1, 1, -1, 1, 1, -1.0])[:, None, None, None]
    with torch.no_grad():
        score = net.router(net.backbone1(x))
    thr = float(score.median())
    n_hard = int((score < thr).sum())
    assert 0 < n_hard < 6
    seen1, seen2 = net.backbone1.images_seen, net.backbone2.images_seen
    pred, s = net.infer(x, thr)
    assert net.backbone2.images_seen - seen2 == n_hard
    assert net.backbone1.images_seen - seen1 == 6
    for i in range(6):
        p1, s1 = net.infer(x[i : i + 1], thr)
        torch.testing.assert_close(p1[0], pred[i], rtol=1e-4, atol=1e-4)
    seen2 = net.backbone2.images_seen
    net.infer(x, float("-inf"))  # everything easy
    assert net.backbone2.images_seen == seen2
    # the hard path is head 2 on backbone 2: the same as the training forward's p2
    from trainers.dynamicdet.network import decode_head

    full = decode_head(net(x)["p2"], net.strides)
    pred, _ = net.infer(x, float("inf"))
    torch.testing.assert_close(pred, full, rtol=1e-4, atol=1e-4)


def test_threshold_from_easy_fraction():
    from trainers.dynamicdet.detect import DetectError, threshold

    calib = {"percentiles": list(np.linspace(0.0, 1.0, 101))}
    assert threshold(None, 0.9, calib) == pytest.approx(0.1)
    assert threshold(None, 0.5, calib) == pytest.approx(0.5)
    assert threshold(None, 1.0, calib) == float("-inf")
    assert threshold(None, 0.0, calib) == float("inf")
    assert threshold(0.3, None, calib) == 0.3
    assert threshold(None, None, None) == 0.5
    with pytest.raises(DetectError, match="not both"):
        threshold(0.3, 0.9, calib)
    with pytest.raises(DetectError, match="step-2"):
        threshold(None, 0.9, None)


@pytest.mark.parametrize("size", ["yolov7", "w6"])
def test_gpu_sizes_build_and_route(size):
    net = DynamicDet(config_of(size)).eval()
    assert len(net.strides) == (4 if size == "w6" else 3)
    pred, s = net.infer(torch.randn(1, 3, 128, 128), 0.5)
    assert pred.shape[-1] == 5 and s.shape == (1,)
