"""DynamicDet's step 1 on the multi-device (DDP) path, run for real on 2 CPU processes (gloo),
as tests/trainers/test_trainers_ddp.py does for CenterNet: ``--device 0,1`` with the device choice
replaced by 2 CPU processes. Both ranks must use the same run directory PROJECT/exp."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest
from test_dynamicdet_train import write_partinet_set

SCRIPT = textwrap.dedent("""
    import sys
    import trainers.core.devices as devices
    from cryoglean.cli import main

    devices.parse_gpus = lambda gpus: {{"accelerator": "cpu", "devices": 2,
                                        "strategy": devices.DDP_STRATEGY}}
    sys.exit(main(["train", "dynamicdet", "step1", "--data", {data!r}, "--project", {out!r},
                   "--cfg", "tiny", "--device", "0,1", "--epochs", "2", "--batch", "2",
                   "--img-size", "128", "--workers", "0", "--quiet"]))
""")


@pytest.mark.slow
def test_dynamicdet_ddp_on_two_cpu_processes(tmp_path):
    pytest.importorskip("cv2")
    data, _ = write_partinet_set(tmp_path / "ds")
    script = tmp_path / "train_ddp.py"
    out = tmp_path / "runs"
    script.write_text(SCRIPT.format(data=str(data), out=str(out)))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["exp"]
    for name in ("weights/last.pt", "weights/best.pt", "results.txt", "opt.yaml"):
        assert (out / "exp" / name).is_file(), name
