"""Pictures people can check by eye: pick overlays of big micrographs at a sane size with
visible circles, a message when there are no picks, scale warnings; loss plots with labels."""

from __future__ import annotations

import mrcfile
import numpy as np
import pandas as pd
import pytest

cv2 = pytest.importorskip("cv2")


def test_big_micrograph_overlay_is_small_and_circles_show(tmp_path):
    from trainers.plots import MAX_SIDE, plot_picks

    rng = np.random.default_rng(0)
    image = rng.normal(size=(4096, 4096)).astype(np.float32)
    xy = np.array([[1000.0, 1000.0], [3000.0, 2000.0]])
    out = plot_picks(image, xy, tmp_path / "p.png", radius=60)
    png = cv2.imread(str(out))
    assert max(png.shape[:2]) == MAX_SIDE
    assert out.stat().st_size < 3_500_000  # white noise, the worst case for PNG (was 34 MB)
    green = (png[:, :, 1] == 255) & (png[:, :, 0] == 0) & (png[:, :, 2] == 0)
    # the circle at (1000, 1000) px is at (250, 250) in the 1024 px picture, radius 15 px
    ys, xs = np.nonzero(green)
    near = np.hypot(xs - 250, ys - 250)
    assert ((near > 12) & (near < 18)).sum() > 60, "circle not drawn where the pick is"


def test_no_picks_and_warning_are_written_on_the_picture(tmp_path):
    from trainers.plots import plot_picks

    image = np.zeros((300, 400), np.float32)
    plain = cv2.imread(str(plot_picks(image, [[10.0, 10.0]], tmp_path / "a.png", 5)))
    empty = cv2.imread(str(plot_picks(image, np.zeros((0, 2)), tmp_path / "b.png", 5)))
    # the banner's yellow text is there only on the picture without picks
    yellow = lambda im: ((im[:, :, 2] > 200) & (im[:, :, 1] > 200) & (im[:, :, 0] < 60)).sum()  # noqa: E731
    assert yellow(plain) == 0 and yellow(empty) > 30


def test_scale_warning(tmp_path):
    from trainers.core.pick import scale_warning

    p = tmp_path / "m.mrc"
    with mrcfile.new(p) as m:
        m.set_data(np.zeros((400, 500), np.float32))
        m.voxel_size = 1.0
    assert scale_warning(p, None) is None
    assert scale_warning(p, {"sizes": {(500, 400)}, "pixel_sizes": [1.02]}) is None
    w = scale_warning(p, {"sizes": {(4096, 4096)}, "pixel_sizes": []})
    assert "4096x4096" in w and "500x400" in w
    w = scale_warning(p, {"sizes": {(500, 400)}, "pixel_sizes": [2.0]})
    assert "pixel size 1" in w


def test_loss_plot_has_labelled_axes_and_human_names(tmp_path):
    import matplotlib

    matplotlib.use("Agg", force=True)
    from trainers.plots import human_name, plot_losses

    assert human_name("train/loss_epoch") == "training loss (epoch mean)"
    assert human_name("val/hm_loss") == "validation heatmap loss"
    metrics = pd.DataFrame({"epoch": [0, 0, 1, 1], "train/loss_step": [3.0, 2.0, 1.5, 1.0],
                            "train/loss_epoch": [None, 2.5, None, 1.2],
                            "val/loss": [None, 2.0, None, 1.1]})
    seen = {}
    import matplotlib.figure

    real = matplotlib.figure.Figure.savefig

    def spy(fig, *a, **k):
        ax = fig.axes[0]
        seen["x"], seen["y"] = ax.get_xlabel(), ax.get_ylabel()
        seen["labels"] = [t.get_text() for t in ax.get_legend().get_texts()]
        return real(fig, *a, **k)

    matplotlib.figure.Figure.savefig = spy
    try:
        assert plot_losses(metrics, tmp_path / "loss.png").is_file()
    finally:
        matplotlib.figure.Figure.savefig = real
    assert seen["x"] == "epoch" and "loss" in seen["y"]
    assert seen["labels"] == ["training loss (epoch mean)", "validation loss"]
