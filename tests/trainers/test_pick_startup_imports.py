"""Inference starts without Lightning: for every picker of the table, loading and running its
``cryoglean pick`` command (and PartiNet's ``detect``) in a fresh interpreter leaves no
``lightning`` / ``pytorch_lightning`` module in ``sys.modules``, and loading the command-line
interface pulls neither torch nor pandas nor matplotlib (issue 16, item 2: every Slurm array
shard pays its start-up again)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
TRAINING_ONLY = ("lightning", "pytorch_lightning", "lightning_fabric", "torchmetrics")


def _run(code: str, tmp_path: Path) -> str:
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                       text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return r.stdout


CHECK = f"""
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {TRAINING_ONLY!r})
assert not loaded, f"the pick path imported training-only modules: {{loaded[:5]}}"
print("OK")
"""


def test_cli_and_every_pick_command_load_without_heavy_modules():
    """Building every ``pick`` and ``train`` subcommand (what ``--help`` and argument parsing
    need) imports none of torch, Lightning, pandas, matplotlib."""
    out = _run("""
        import sys
        from cryoglean.cli import main
        from trainers import pickers
        from trainers.cli import pick_group, train_group
        for name in pickers.names():
            assert pick_group.get_command(None, name) is not None
            assert train_group.get_command(None, name) is not None
        heavy = sorted(m for m in ("torch", "pandas", "matplotlib", "cv2", "scipy",
                                   "pytorch_lightning", "lightning") if m in sys.modules)
        assert not heavy, heavy
        print("OK")
    """, Path("."))
    assert out.strip().endswith("OK")


def test_tomogram_pick_run_imports_no_lightning(tmp_path):
    """A whole ``cryoglean pick tomo`` run (random weights, one small tomogram)."""
    pytest.importorskip("torch")
    import mrcfile

    tomos = tmp_path / "tomos"
    tomos.mkdir()
    rng = np.random.default_rng(0)
    with mrcfile.new(tomos / "t1.mrc") as m:
        m.set_data(rng.normal(size=(24, 64, 64)).astype(np.float32))
    out = _run(textwrap.dedent(f"""
        import sys
        import torch
        from cryoglean.cli import main
        from trainers.tomopicker.network import TomoNet
        net = TomoNet("unet_4", 8, 3)
        sd = {{"net." + k: v for k, v in net.state_dict().items()}}
        hp = {{"arch": "unet_4", "head_conv": 8, "last_k": 3, "order": "zxy", "bbox": 8}}
        torch.save({{"state_dict": sd, "hyper_parameters": hp}}, {str(tmp_path / "m.ckpt")!r})
        assert main(["pick", "tomo", "--data", {str(tomos)!r}, "--load_model",
                     {str(tmp_path / "m.ckpt")!r}, "--output", {str(tmp_path / "p")!r},
                     "--out_thresh", "0", "--quiet"]) == 0
    """) + CHECK, tmp_path)
    assert out.strip().endswith("OK")
    assert (tmp_path / "p" / "t1.txt").is_file()
