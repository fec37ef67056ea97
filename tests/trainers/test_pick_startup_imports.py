"""Inference starts without Lightning: for every picker of the table, loading and running its
``cryoglean pick`` command (and PartiNet's ``detect``) in a fresh interpreter leaves no
``lightning`` / ``pytorch_lightning`` module in ``sys.modules``, and loading the command-line
interface pulls neither torch nor pandas nor matplotlib (issue 16, item 2: every Slurm array
shard pays its start-up again).

``cryoglean pick centernet`` imports torch, numpy, the network, mrcfile and ``scipy.fft`` (the
Fourier crop of EPicker's view) and nothing else heavy: no pandas (writers take numpy
columns), OpenCV (histogram equalisation in numpy), matplotlib, YAML, Jinja, the catalog
library, sympy or torch's compiler stack. Module lists, not timings: a future import that
brings a cost back fails here; the cost itself is measured by benchmarks/bench_startup.py."""

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


# Modules that inference does not need; the pick and detect paths must not load them.
NOT_FOR_INFERENCE = TRAINING_ONLY + (
    "pandas", "pyarrow", "matplotlib", "cv2", "yaml", "jinja2", "sqlite_utils", "sympy",
    "PIL", "sklearn", "skimage", "torchvision", "torch._dynamo", "torch._inductor",
    "torch.utils.tensorboard", "scipy.ndimage", "scipy.signal", "scipy.optimize", "scipy.stats",
    "scipy.spatial", "scipy.interpolate", "harvest.catalog", "converters.export")


def _not_loaded(names) -> str:
    """Code that fails listing the modules of ``names`` (or their submodules) in sys.modules."""
    return f"""
names = {tuple(names)!r}
loaded = sorted(m for m in sys.modules if any(m == n or m.startswith(n + ".") for n in names))
assert not loaded, f"the inference path imported {{loaded[:8]}}"
print("OK")
"""


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
    """A whole ``cryoglean pick tomo`` run (random weights, one small tomogram, picks also
    written in a registry format): nothing of NOT_FOR_INFERENCE, pandas included."""
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
                     "--out_thresh", "0", "--quiet", "--output_type", "cetpick"]) == 0
    """) + CHECK + _not_loaded(NOT_FOR_INFERENCE), tmp_path)
    assert out.strip().endswith("OK")
    assert (tmp_path / "p" / "t1.txt").is_file()


def _centernet_checkpoint(path: Path) -> str:
    return f"""
import torch
from trainers.centernet.network import CenterNet
net = CenterNet(width=4, blocks=1, head_conv=8)
sd = {{"net." + k: v for k, v in net.state_dict().items()}}
hp = {{"width": 4, "blocks": 1, "head_conv": 8, "input_width": 64, "particle_size": 8.0}}
torch.save({{"state_dict": sd, "hyper_parameters": hp}}, {str(path)!r})
"""


def test_centernet_pick_run_loads_only_what_inference_needs(tmp_path):
    """Parse the arguments, load a checkpoint and pick two micrographs in a fresh interpreter,
    writing labels in the native format and in formats that exercise the writers' numpy input
    (per-micrograph text, normalised coordinates, STAR): none of NOT_FOR_INFERENCE is loaded,
    and the files hold the picks."""
    pytest.importorskip("torch")
    import mrcfile

    data = tmp_path / "mics"
    data.mkdir()
    rng = np.random.default_rng(1)
    for i in range(2):
        with mrcfile.new(data / f"mic_{i}.mrc") as m:
            m.set_data(rng.normal(size=(96, 128)).astype(np.float32))
    ckpt = tmp_path / "m.ckpt"
    # the checkpoint is written by a separate interpreter: this one must only pick
    _run("import sys\n" + _centernet_checkpoint(ckpt), tmp_path)
    outputs = {"native": [], "star": ["--output_type", "star"], "yolo": ["--output_type", "yolo"],
               "box": ["--output_type", "box"]}
    runs = "".join(
        f"assert main({['pick', 'centernet', '--data', str(data), '--load_model', str(ckpt), '--output', str(tmp_path / name), '--vis_thresh', '0', '--quiet', *extra]!r}) == 0\n"  # noqa: E501
        for name, extra in outputs.items())
    out = _run("import sys\nfrom cryoglean.cli import main\n" + runs
               + _not_loaded(NOT_FOR_INFERENCE), tmp_path)
    assert out.strip().endswith("OK")
    for name in outputs:
        files = sorted(p.name for p in (tmp_path / name).iterdir())
        assert len(files) == 2 and files[0].startswith("mic_0."), (name, files)
    star = (tmp_path / "star" / "mic_0.star").read_text()
    assert star.count("\n") > 10  # picks were written (vis_thresh 0: many)


def test_detect_run_loads_no_training_or_plotting_modules(tmp_path):
    """``cryoglean detect`` (PartiNet's flags; OpenCV is its image reader and writer): nothing
    else of NOT_FOR_INFERENCE, pandas included."""
    pytest.importorskip("torch")
    pytest.importorskip("cv2")
    from test_dynamicdet_detect import write_checkpoint, write_sources

    write_checkpoint(tmp_path / "w.pt")
    write_sources(tmp_path / "src")
    out = _run(textwrap.dedent(f"""
        import sys
        from cryoglean.cli import main
        assert main(["detect", "--weight", {str(tmp_path / "w.pt")!r}, "--source",
                     {str(tmp_path / "src")!r}, "--project", {str(tmp_path / "p")!r},
                     "--device", "cpu", "--quiet"]) == 0
    """) + _not_loaded([n for n in NOT_FOR_INFERENCE if n != "cv2"]), tmp_path)
    assert out.strip().endswith("OK")
