"""``cryoglean detect`` without Lightning: a checkpoint written by hand, PNG and MRC sources,
batched runs equal to one-by-one runs, and the easy/hard routes counted in the log."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")


def write_checkpoint(path, seed=0):
    from trainers.dynamicdet.network import DynamicDet, config_of

    torch.manual_seed(seed)
    net = DynamicDet(config_of("tiny"))
    sd = {f"net.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": sd, "hyper_parameters": {"model_cfg": config_of("tiny"),
                                                       "img_size": 128},
                "router_calibration": {"percentiles": np.linspace(0.4, 0.6, 101).tolist()}},
               path)


def write_sources(d):
    import mrcfile

    d.mkdir()
    rng = np.random.default_rng(0)
    for i, shape in enumerate([(150, 200), (200, 150), (150, 200)]):
        cv2.imwrite(str(d / f"a{i}.png"), rng.integers(0, 255, shape).astype(np.uint8))
    with mrcfile.new(d / "b0.mrc") as m:
        m.set_data(rng.normal(size=(256, 256)).astype(np.float32))


def test_detect_imports_no_lightning_and_batches_equal_single_runs(tmp_path):
    ck = tmp_path / "w.pt"
    write_checkpoint(ck)
    src = tmp_path / "src"
    write_sources(src)
    script = textwrap.dedent(f"""
        import sys
        from cryoglean.cli import main
        for b in ("1", "4"):
            assert main(["detect", "--weight", {str(ck)!r}, "--source", {str(src)!r},
                         "--project", {str(tmp_path / "p")!r}, "--device", "cpu",
                         "--conf-thres", "0.005", "--batch", b, "--quiet",
                         "--easy-fraction", "0.5"]) == 0
        assert "pytorch_lightning" not in sys.modules, "detect imported Lightning"
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    one, four = tmp_path / "p" / "exp", tmp_path / "p" / "exp2"
    names = sorted(p.name for p in (one / "labels").iterdir())
    assert names == ["a0.txt", "a1.txt", "a2.txt", "b0.txt"]
    assert sorted(p.name for p in one.glob("*.png")) == ["a0.png", "a1.png", "a2.png",
                                                         "b0.png"]
    for n in names:
        a = np.loadtxt(one / "labels" / n, ndmin=2)
        b = np.loadtxt(four / "labels" / n, ndmin=2)
        assert len(a) > 0 and a.shape == b.shape
        # the same picks; near-equal confidences may come out in another order
        a, b = (m[np.lexsort(np.round(m, 4).T[::-1])] for m in (a, b))
        np.testing.assert_allclose(a, b, atol=2e-5)
        # normalised by the file's own width and height
        assert a[:, 1:5].max() <= 1 and a[:, 1:5].min() >= 0
    overlay = cv2.imread(str(one / "a1.png"))
    assert overlay.shape == (200, 150, 3)
    overlay = cv2.imread(str(one / "a0.png"))
    assert overlay.shape == (150, 200, 3)
    log = (tmp_path / "p" / "partinet_detect.log").read_text().splitlines()
    routes = [line.split(", ")[1].split()[0] for line in log if "particles" in line]
    assert set(routes) <= {"easy", "hard"} and len(routes) == 8
    assert routes[:4] == routes[4:]
    assert sum(line.startswith("Average processing rate") for line in log) == 2


def test_shards_of_an_array_write_into_one_run_folder(tmp_path):
    """Every --shard K/N task writes into PROJECT/exp (numbered folders would race)."""
    from cryoglean.cli import main

    src = tmp_path / "mics"
    src.mkdir()
    for i in range(4):
        cv2.imwrite(str(src / f"m{i}.png"), np.full((64, 64), 30 * i, np.uint8))
    weight = tmp_path / "w.pt"
    write_checkpoint(weight)
    for k in range(2):
        assert main(["detect", "--weight", str(weight), "--source", str(src), "--project",
                     str(tmp_path / "det"), "--device", "cpu", "--img-size", "64",
                     "--shard", f"{k}/2", "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "det").iterdir()) == ["exp", "partinet_detect.log"]
    assert sorted(p.stem for p in (tmp_path / "det" / "exp" / "labels").iterdir()) == [
        "m0", "m1", "m2", "m3"]
