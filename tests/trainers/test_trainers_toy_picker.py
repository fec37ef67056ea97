"""A picker is one folder plus one table line: a throw-away picker (a one-layer network on the
shared core, declared in this module and put in the table by the test) trains with
``fast_dev_run``, picks and resumes through the table-driven CLI."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pytorch_lightning")

from test_trainers_helpers import one_thread, use_registry, write_dataset  # noqa: E402, F401

from trainers.core import options as core  # noqa: E402
from trainers.core.options import opt  # noqa: E402
from trainers.core.task import BasePickerTask  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


# --- the toy picker: everything a picker needs --------------------------------------------
@dataclass
class ToyTrain(core.TrainOptions):
    lr: float = opt(1e-2, "Adam learning rate.")
    num_epoch: int = opt(1, "Epochs.")
    diameter: float = opt(8.0, "Particle diameter in px.")


@dataclass
class ToyPick(core.PickOptions):
    threshold: float = opt(0.0, "Score threshold.")


def view(path):
    from trainers.core.dataset import Prepared
    from trainers.data import read_image

    img = read_image(path)
    img = (img - img.mean()) / (img.std() + 1e-6)
    return Prepared(path.stem, path, img.astype(np.float32), img.shape[1], img.shape[0], 1, 1)


class Encoder:
    def encode(self, image, xy, radius, group):
        hm = np.zeros((1, *image.shape), np.float32)
        for x, y in np.round(np.asarray(xy)).astype(int).reshape(-1, 2):
            if 0 <= y < image.shape[0] and 0 <= x < image.shape[1]:
                hm[0, y, x] = 1
        return {"hm": hm}


def decode(out, k=20):
    heat = torch.sigmoid(out)
    heat = heat * (torch.nn.functional.max_pool2d(heat, 5, 1, 2) == heat)
    scores, idx = torch.topk(heat.flatten(1), k)
    w = heat.shape[-1]
    return [{"xy": np.stack([(i % w).numpy(), (i // w).numpy()], 1).astype(float),
             "score": s.numpy()} for s, i in zip(scores, idx)]


class ToyTask(BasePickerTask):
    def build_network(self):
        return torch.nn.Conv2d(1, 1, 5, padding=2)

    def compute_loss(self, out, batch):
        w = torch.tensor(50.0)
        return torch.nn.functional.binary_cross_entropy_with_logits(
            out, batch["hm"], pos_weight=w), {}

    def decode_batch(self, out, valid_hw):
        return decode(out)

    def eval_diameter(self):
        return float(self.hparams["diameter"])


def train(opts: ToyTrain) -> dict:
    from trainers.augment import Augmenter
    from trainers.core.datamodule import make_datamodule
    from trainers.core.dataset import training_data
    from trainers.core.driver import RunSettings, run_dir_of, train_run

    tr, val, split, _ = training_data(opts, view)
    dm = make_datamodule(tr, val, Encoder(), Augmenter(crop=64, margin=16), lambda im: im[None],
                         batch_size=2)
    task = ToyTask(opts.to_dict())
    task.val_samples = val
    settings = RunSettings(opts.num_epoch, opts.gpus, opts.resume, opts.quiet,
                           fast_dev_run=opts.fast_dev_run)
    return train_run(task, dm, settings, run_dir_of(opts.output, opts.exp_id), opts.to_dict(),
                     split, len(tr), len(val))


def pick(opts: ToyPick) -> dict:
    from trainers.core.checkpoint import load_checkpoint, net_state
    from trainers.core.pick import pick_folder

    net = torch.nn.Conv2d(1, 1, 5, padding=2)
    net.load_state_dict(net_state(load_checkpoint(opts.load_model)))

    def one(path):
        with torch.no_grad():
            p = decode(net(torch.from_numpy(view(path).image)[None, None]))[0]
        keep = p["score"] >= opts.threshold
        return pd.DataFrame({"micrograph": path.stem, "x": p["xy"][keep, 0],
                             "y": p["xy"][keep, 1], "score": p["score"][keep]})

    return pick_folder(one, opts.data, opts.output, opts.output_type, opts.shard,
                       opts.visual, opts.quiet, opts.dataset, opts.split)


PICKER = core.PickerSpec("toy", ToyTrain, ToyPick, f"{__name__}:train", f"{__name__}:pick",
                         "A one-layer test picker.", "Pick with the test picker.")


# --- the test ------------------------------------------------------------------------------
def test_toy_picker_trains_picks_and_resumes_through_the_cli(tmp_path, monkeypatch, capsys):
    use_registry(monkeypatch)
    from cryoglean.cli import main
    from trainers import pickers
    from trainers.core.checkpoint import load_checkpoint

    monkeypatch.setitem(pickers.PICKERS, "toy", __name__)
    img, lab, _ = write_dataset(tmp_path / "d", n_mics=3, n=64, count=3, radius=4)
    fmt = pickers.get("centernet").default_format()  # the format the helpers wrote
    assert main(["train", "--help"]) == 0
    assert "toy" in capsys.readouterr().out
    base = ["train", "toy", "--data", str(img), "--label", str(lab), "--label_type", fmt,
            "--exp_id", "t", "--output", str(tmp_path / "runs"), "--gpus", "-1", "--quiet",
            "--seed", "1"]
    assert main([*base, "--fast_dev_run"]) == 0
    last = tmp_path / "runs" / "t" / "weights" / "last.ckpt"
    first = load_checkpoint(last)
    assert first["hyper_parameters"]["diameter"] == 8.0
    out = tmp_path / "picks"
    assert main(["pick", "toy", "--data", str(img), "--load_model", str(last),
                 "--output", str(out), "--output_type", fmt, "--shard", "1/3"]) == 0
    assert "1 micrographs" in capsys.readouterr().out
    assert [p.stem for p in out.iterdir()] == ["mic_0001"]
    assert main([*base, "--resume", "--num_epoch", "2"]) == 0
    again = load_checkpoint(last)
    assert again["global_step"] > first["global_step"]
    assert not torch.equal(again["state_dict"]["net.weight"], first["state_dict"]["net.weight"])


def test_last_checkpoint_is_written_every_epoch_even_between_validations(tmp_path, monkeypatch):
    """A run killed between two validations must lose at most the epoch it was in: with
    --val_every larger than the run, weights/last.ckpt holds every finished epoch when the next
    one starts (it used to be written only when validation ran)."""
    use_registry(monkeypatch)
    from trainers.augment import Augmenter
    from trainers.core.checkpoint import load_checkpoint
    from trainers.core.datamodule import make_datamodule
    from trainers.core.dataset import training_data
    from trainers.core.driver import RunSettings, fit, run_dir_of

    img, lab, _ = write_dataset(tmp_path / "d", n_mics=3, n=64, count=3, radius=4)
    opts = ToyTrain(data=str(img), label=str(lab), label_type="thi", exp_id="k",
                    output=str(tmp_path / "runs"), gpus="-1", quiet=True, seed=1)
    run = run_dir_of(opts.output, opts.exp_id)
    last = run / "weights" / "last.ckpt"
    seen = []  # (epoch starting, global step in last.ckpt or None)

    class Watch(ToyTask):
        def on_train_epoch_start(self):
            seen.append((self.current_epoch,
                         load_checkpoint(last)["global_step"] if last.is_file() else None))

    tr, val, _, _ = training_data(opts, view)
    assert val  # the run has validation data: only val_every keeps validation away
    dm = make_datamodule(tr, val, Encoder(), Augmenter(crop=64, margin=16), lambda im: im[None],
                         batch_size=2)
    task = Watch(opts.to_dict())
    task.val_samples = val
    fit(task, dm, RunSettings(3, "-1", quiet=True, val_every=5), run)
    steps = len(tr) // 2 + (len(tr) % 2 > 0)  # batches per epoch
    assert seen == [(0, None), (1, steps), (2, 2 * steps)], seen
    assert load_checkpoint(last)["global_step"] == 3 * steps
