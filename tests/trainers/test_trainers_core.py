"""The trainers core: the pick path starts without Lightning, the trainers name no label
format, the picker table builds the commands, 3D matching in evaluate."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_pick_path_imports_no_lightning(tmp_path):
    """``cryoglean pick centernet --help`` and a whole pick run load no pytorch_lightning
    (inference start-up stays short: Lightning is for training only)."""
    pytest.importorskip("torch")
    from test_trainers_helpers import use_registry, write_dataset

    use_registry()
    img, _, _ = write_dataset(tmp_path / "d", n_mics=2, n=64, count=2, radius=4)
    code = f"""
import sys
import torch
from cryoglean.cli import main
from trainers.centernet.network import CenterNet
from trainers.centernet.options import PickOptions
net = CenterNet(width=4, blocks=1, head_conv=8)
sd = {{"net." + k: v for k, v in net.state_dict().items()}}
hp = {{"width": 4, "blocks": 1, "head_conv": 8, "input_width": 64, "particle_size": 8.0}}
torch.save({{"state_dict": sd, "hyper_parameters": hp}}, {str(tmp_path / "m.ckpt")!r})
assert main(["pick", "centernet", "--help"]) == 0
assert main(["pick", "centernet", "--data", {str(img)!r}, "--load_model",
             {str(tmp_path / "m.ckpt")!r}, "--output", {str(tmp_path / "p")!r},
             "--vis_thresh", "0", "--quiet"]) == 0
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("pytorch_lightning", "lightning"))
print("LOADED", bad)
sys.exit(1 if bad else 0)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert len(list((tmp_path / "p").iterdir())) == 2


def test_trainers_name_no_format():
    """Formats come from the registry: no registry format name is a string literal anywhere in
    trainers/ (a picker's default format is chosen by capabilities)."""
    from converters import registry

    names = set(registry.names())
    found = []
    for path in sorted((ROOT / "trainers").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not found, found


def test_centernet_default_format_holds_every_mode():
    from converters import registry
    from trainers.centernet.options import LABEL_CAPABILITIES, native_format

    assert LABEL_CAPABILITIES <= registry.get(native_format()).capabilities


def test_commands_come_from_the_picker_table(monkeypatch):
    from click.testing import CliRunner

    from trainers import pickers
    from trainers.cli import pick_group, train_group

    r = CliRunner().invoke(train_group, ["--help"])
    assert all(name in r.output for name in pickers.names())
    monkeypatch.setitem(pickers.PICKERS, "other", "trainers.centernet.options")
    r = CliRunner().invoke(pick_group, ["--help"])
    assert "other" in r.output
    with pytest.raises(ValueError, match="did you mean centernet"):
        pickers.get("centernett")
    # every option has help text from its dataclass field
    import dataclasses

    for name in pickers.names():
        spec = pickers.get(name)
        for cls in (spec.train_options, spec.pick_options):
            missing = [f.name for f in dataclasses.fields(cls) if not f.metadata.get("help")]
            assert not missing, (name, cls.__name__, missing)


# --- 3D matching ------------------------------------------------------------------------------
def test_match_3d_uses_z():
    from trainers.evaluate import match_picks

    truth = np.array([[10.0, 10.0, 10.0], [50.0, 50.0, 20.0]])
    # pick 0: 3 px off in z only -> within r = 4; pick 1: right x, y but 5 px off in z -> out
    picks = np.array([[10.0, 10.0, 13.0], [50.0, 50.0, 25.0]])
    matched, target, dist = match_picks(picks, truth, radius=4.0)
    assert matched.tolist() == [True, False]
    assert target.tolist() == [0, -1]
    assert dist[0] == pytest.approx(3.0)
    # in 2D (z ignored) both would match
    m2, _, _ = match_picks(picks[:, :2], truth[:, :2], radius=4.0)
    assert m2.tolist() == [True, True]


def test_match_3d_hungarian_prefers_the_better_total():
    """Two picks compete for one target: cost d² − r² (Topaz) assigns the target to the pick
    that leaves the larger total Σ(r² − d²); the other pick takes its own target."""
    from trainers.evaluate import match_picks

    r = 5.0
    truth = np.array([[0.0, 0.0, 0.0], [6.0, 0.0, 0.0]])
    # pick A at (2,0,2): d to t0 = √8, to t1 = √20; pick B at (3,0,0): d to t0 = 3, to t1 = 3
    picks = np.array([[2.0, 0.0, 2.0], [3.0, 0.0, 0.0]])
    # A→t0, B→t1: (25−8) + (25−9) = 33; A→t1, B→t0: (25−20) + (25−9) = 21
    matched, target, dist = match_picks(picks, truth, r)
    assert target.tolist() == [0, 1]
    np.testing.assert_allclose(dist, [np.sqrt(8), 3.0])
    # d exactly r does not match (cost 0, not < 0)
    m, _, _ = match_picks(np.array([[0.0, 0.0, 5.0]]), truth[:1], r)
    assert m.tolist() == [False]


def test_evaluate_picks_3d_counts():
    from trainers.evaluate import evaluate_picks

    truth = pd.DataFrame({"micrograph": ["t1"] * 3, "x": [10.0, 40.0, 70.0],
                          "y": [10.0, 40.0, 70.0], "z": [5.0, 15.0, 25.0]})
    picks = pd.DataFrame({"micrograph": ["t1"] * 3, "x": [10.0, 40.0, 70.0],
                          "y": [11.0, 40.0, 70.0], "z": [5.0, 30.0, 27.0],
                          "score": [0.9, 0.8, 0.7]})
    res = evaluate_picks(picks, truth, radius=3.0)
    s = res.summary
    assert s["dims"] == 3
    # pick 2 is 15 voxels off in z: FP; picks 1 and 3 match (d = 1 and 2)
    assert (s["tp"], s["fp"], s["fn"]) == (2, 1, 1)
    assert s["rmse"] == pytest.approx(np.sqrt((1 + 4) / 2))
    # Topaz AUPRC: TP (P 1, +1/3), FP, TP (P 2/3, +1/3) -> (1 + 2/3) / 3
    assert s["auprc"] == pytest.approx((1 + 2 / 3) / 3)
    flat = evaluate_picks(picks.drop(columns="z"), truth, radius=3.0).summary
    assert flat["dims"] == 2 and flat["tp"] == 3


def test_samples_keep_z_and_scale_back():
    """Labels with z (a tomogram) scale per axis into the picker's view and back."""
    from trainers.core.dataset import Labelled, Prepared, make_samples, samples_frame

    labels = pd.DataFrame({"x": [40.0, 8.0], "y": [20.0, 4.0], "z": [10.0, 2.0]})

    def view(path):
        return Prepared("t", path, np.zeros((8, 16, 32), np.float32), nx=64, ny=32,
                        sx=0.5, sy=0.5, nz=16, sz=0.5)

    (s,) = make_samples([Labelled("tomo_1", Path("tomo_1.mrc"), labels, "train")], view)
    assert s.prep.name == "tomo_1" and s.meta["split"] == "train"
    np.testing.assert_allclose(s.xy, [[20, 10, 5], [4, 2, 1]])
    back = samples_frame([s])
    np.testing.assert_allclose(back[["x", "y", "z"]].to_numpy(), labels.to_numpy())


def test_evaluate_counts_micrographs_under_both_option_names(tmp_path):
    """``--micrographs union`` (and ``--images union``, its earlier name) count micrographs
    that only the picks have."""
    from click.testing import CliRunner

    from trainers import pickers
    from trainers.evaluate_cli import evaluate_command
    from trainers.labels import write_labels

    fmt = pickers.get("centernet").default_format()
    truth = pd.DataFrame({"micrograph": ["m1"], "x": [10.0], "y": [10.0]})
    picks = pd.DataFrame({"micrograph": ["m1", "m2"], "x": [10.0, 5.0], "y": [10.0, 5.0]})
    write_labels(truth, tmp_path / "t", fmt)
    write_labels(picks, tmp_path / "p", fmt)
    base = ["--picks", str(tmp_path / "p"), "--truth", str(tmp_path / "t"), "--radius", "3",
            "--json"]
    import json

    for extra, n in (([], 1), (["--micrographs", "union"], 2), (["--images", "union"], 2)):
        r = CliRunner().invoke(evaluate_command, [*base, *extra], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        assert json.loads(r.output)["summary"]["micrographs"] == n, extra
