"""The multi-device (DDP) training path, run for real on 2 CPU processes (gloo).

No GPU is needed: the test replaces the device choice `--gpus 0,1` makes with 2 CPU processes
and keeps the strategy `parse_gpus` uses for several GPUs. This path once stopped at the first
step because particle mode leaves the size head without gradients; single-process tests cannot
see that.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest
from test_trainers_helpers import write_dataset

SCRIPT = textwrap.dedent("""
    import sys
    import trainers.core.devices as devices
    from cryoglean.cli import main

    devices.parse_gpus = lambda gpus: {{"accelerator": "cpu", "devices": 2,
                                        "strategy": devices.DDP_STRATEGY}}
    sys.exit(main(["train", "centernet", "--data", {img!r}, "--label", {lab!r},
                   "--label_type", "thi", "--mode", "particle", "--exp_id", "ddp",
                   "--output", {out!r}, "--gpus", "0,1", "--num_epoch", "2",
                   "--batch_size", "2", "--input_width", "128", "--particle_size", "12",
                   "--seed", "0"]))
""")


@pytest.mark.slow
def test_ddp_training_on_two_cpu_processes(tmp_path):
    img, lab, _ = write_dataset(tmp_path / "d", n_mics=4, n=128, count=4, radius=6)
    script = tmp_path / "train_ddp.py"
    out = tmp_path / "runs"
    script.write_text(SCRIPT.format(img=str(img), lab=str(lab), out=str(out)))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = out / "ddp"
    for name in ("weights/last.ckpt", "weights/best.ckpt", "metrics.csv", "options.yaml"):
        assert (run / name).is_file(), name
