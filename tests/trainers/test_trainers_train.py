"""Training behaviour: overfitting trivial discs, resuming, continual learning with exemplars."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pytorch_lightning")

from test_trainers_helpers import one_thread, use_registry, write_dataset  # noqa: E402, F401

pytestmark = pytest.mark.usefixtures("one_thread")


def _opts(tmp_path, img, lab, exp_id, **kw):
    from trainers.centernet.options import TrainOptions

    base = dict(data=str(img), label=str(lab), label_type="thi", mode="particle",
                exp_id=exp_id, output=str(tmp_path / "runs"), width=4, head_conv=8,
                input_width=128, crop=64, particle_size=12, batch_size=2, num_epoch=1,
                lr=1e-3, edge=2, quiet=True, train_pct=100, val_pct=0, test_pct=0, seed=5)
    base.update(kw)
    return TrainOptions(**base)


@pytest.mark.slow
def test_overfit_bright_discs(tmp_path, monkeypatch):
    """Loss falls and picking finds the discs (F1 >= 0.9 at radius 0.5 x diameter)."""
    use_registry(monkeypatch)
    from trainers.centernet.options import PickOptions
    from trainers.centernet.pick import load_picker, pick_micrograph
    from trainers.centernet.train import train_centernet
    from trainers.evaluate import evaluate_picks

    img, lab, truth = write_dataset(tmp_path / "d", n_mics=2, n=128, count=5, radius=6, seed=1)
    # 2 micrographs x 8 views / batch 2 = 8 steps per epoch, 8 epochs = 64 steps
    s = train_centernet(_opts(tmp_path, img, lab, "fit", width=8, head_conv=16, crop=128,
                              repeat=8, num_epoch=8, lr=3e-3))
    m = pd.read_csv(tmp_path / "runs/fit/metrics.csv")
    loss = m.groupby("epoch")["train/loss_epoch"].max().dropna()
    assert loss.iloc[-1] < 0.5 * loss.iloc[0]
    net, h = load_picker(s["last"])
    opts = PickOptions(vis_thresh=0.3, edge=2, K=100)
    picks = pd.concat([pick_micrograph(net, h, f, opts) for f in sorted(img.glob("*.mrc"))])
    res = evaluate_picks(picks, truth, radius=0.5 * 12)
    assert res.summary["f1"] >= 0.9, res.summary


def test_resume_continues_epochs(tmp_path, monkeypatch):
    use_registry(monkeypatch)
    from trainers.centernet.train import train_centernet

    img, lab, _ = write_dataset(tmp_path / "d", n_mics=2, n=128, count=3, radius=6)
    a = train_centernet(_opts(tmp_path, img, lab, "a", num_epoch=1))
    ck1 = torch.load(a["last"], map_location="cpu", weights_only=True)
    fresh = train_centernet(_opts(tmp_path, img, lab, "b", num_epoch=1))
    ckb = torch.load(fresh["last"], map_location="cpu", weights_only=True)
    # same seed, same data: a fresh start reproduces run a's first epoch
    k = "net.stem.0.weight"
    assert torch.allclose(ck1["state_dict"][k], ckb["state_dict"][k])
    r = train_centernet(_opts(tmp_path, img, lab, "a", num_epoch=2, resume=True))
    ck2 = torch.load(r["last"], map_location="cpu", weights_only=True)
    assert ck2["epoch"] == ck1["epoch"] + 1
    assert ck2["global_step"] == 2 * ck1["global_step"]
    assert not torch.allclose(ck2["state_dict"][k], ckb["state_dict"][k])
    m = pd.read_csv(tmp_path / "runs/a/metrics.csv")
    assert sorted(m["epoch"].dropna().unique().astype(int).tolist()) == [0, 1]
    with pytest.raises(FileNotFoundError, match="--resume"):
        train_centernet(_opts(tmp_path, img, lab, "never", resume=True))


def test_continual_exemplars_and_loss_terms(tmp_path, monkeypatch):
    use_registry(monkeypatch)
    from trainers.centernet.exemplar import read_index
    from trainers.centernet.train import train_centernet

    imgA, labA, truthA = write_dataset(tmp_path / "A", n_mics=3, n=128, count=4, radius=6)
    imgB, labB, _ = write_dataset(tmp_path / "B", n_mics=2, n=128, count=3, radius=5, seed=7)
    exA = tmp_path / "exA"
    a = train_centernet(_opts(tmp_path, imgA, labA, "A", output_exemplar=str(exA),
                              sampling_size=6))
    # first micrographs until 6 particles are covered: 2 of 3 (4 particles each)
    idx = read_index(exA)
    assert [e["particles"] for e in idx] == [4, 4]
    assert len(list((exA / "images").glob("*.mrc"))) == 2
    assert len(list((exA / "labels").glob("*.thi"))) == 2
    exAB = tmp_path / "exAB"
    b = train_centernet(_opts(tmp_path, imgB, labB, "B", load_model=a["last"], continual=True,
                              load_exemplar=str(exA), output_exemplar=str(exAB),
                              sampling_size=3, num_epoch=2))
    m = pd.read_csv(tmp_path / "runs/B/metrics.csv")
    for col in ("train/distill_loss", "train/anchor_loss"):
        assert col in m.columns and m[col].notna().any(), col
    # the old model stays frozen: its weights in the checkpoint equal model A's
    cka = torch.load(a["last"], map_location="cpu", weights_only=True)["state_dict"]
    ckb = torch.load(b["last"], map_location="cpu", weights_only=True)["state_dict"]
    k = "stem.0.weight"
    assert torch.equal(ckb[f"old_net.{k}"], cka[f"net.{k}"])
    assert not torch.equal(ckb[f"net.{k}"], cka[f"net.{k}"])
    # exemplar set appended: A's two + B's first micrograph (3 particles)
    idx = read_index(exAB)
    assert [e["particles"] for e in idx] == [4, 4, 3]
    assert len(list((exAB / "images").glob("*.mrc"))) == 3
    doc = json.loads((exAB / "exemplar.json").read_text())
    assert doc["label_type"] == "thi"
    # exemplar labels read back at the original pixel positions
    from trainers.labels import read_labels

    lab = read_labels(exAB / "labels", "thi")
    first = lab[lab["micrograph"] == idx[0]["name"]][["x", "y"]].to_numpy()
    want = truthA[truthA["micrograph"] == "mic_0000"][["x", "y"]].to_numpy()
    np.testing.assert_allclose(np.sort(first, 0), np.sort(want, 0), atol=0.51)
