"""``cryoglean train dynamicdet step1|step2``: PartiNet's options → the shared core.

Run directory ``PROJECT/exp`` (``exp2``, … when taken), as PartiNet's: ``weights/best.pt`` and
``weights/last.pt`` (Lightning checkpoints: ``--resume`` and ``step2 --weight`` take them),
``opt.yaml``, ``hyp.yaml``, ``cfg.yaml``, ``results.txt`` (one row per epoch), ``results.png``,
``PR_curve.png``, ``F1_curve.png``, ``P_curve.png``, ``R_curve.png`` (last validation),
``train_batch0..2.jpg`` (training views with their boxes), ``test_batch0_labels.jpg`` /
``test_batch0_pred.jpg`` and, when tensorboard is installed, event files under ``tb/`` (so
``tensorboard --logdir PROJECT`` works); the core's ``metrics.csv``, ``options.yaml`` and
``split.json`` too. After step 2 the router-score percentiles P0…P100 of the validation
micrographs are stored in both checkpoints (``router_calibration``) for ``detect
--easy-fraction``.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import numpy as np

from trainers.data import DataError
from trainers.dynamicdet.options import Step1Options, Step2Options

log = logging.getLogger(__name__)
RUN_ENV = "CRYOGLEAN_DYNAMICDET_RUN"


class TrainingError(ValueError):
    """Options or data that cannot train DynamicDet."""


def increment_run(project: str | Path, name: str) -> Path:
    """PROJECT/NAME, or NAME2, NAME3, … when taken (YOLOv7's ``increment_path``)."""
    base = Path(project)
    if not (base / name).exists():
        return base / name
    n = 2
    while (base / f"{name}{n}").exists():
        n += 1
    return base / f"{name}{n}"


def device_gpus(device: str | None) -> str | None:
    """PartiNet's ``--device`` (``0,1``, ``cpu``, '') → the core's ``--gpus``."""
    d = (device or "").strip()
    if not d:
        return None
    return "-1" if d.lower() == "cpu" else d


def model_config(cfg: str) -> dict:
    from trainers.dynamicdet.network import config_of

    p = Path(cfg)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        import yaml

        doc = yaml.safe_load(p.read_text())
        return dict(doc["model_cfg"] if "model_cfg" in doc else doc)
    return config_of(cfg)


def records_of(data: str):
    """Labelled records from a dataset yaml or an export directory."""
    p = Path(data)
    if p.is_dir() and (p / "manifest.json").is_file():
        from trainers.core.dataset import from_export

        return from_export(p)[0]
    if p.is_file():
        from trainers.dynamicdet.data import open_yaml_dataset

        return open_yaml_dataset(p)
    raise DataError(f"--data {data}: give PartiNet's cryo_training.yaml or an export "
                    "directory holding manifest.json")


def _checkpoint(path: str) -> dict:
    from trainers.core.checkpoint import load_checkpoint

    return load_checkpoint(path)


def train_step1(opts: Step1Options) -> dict:
    return _train(opts, "step1")


def train_step2(opts: Step2Options) -> dict:
    return _train(opts, "step2")


def _train(opts, stage: str) -> dict:
    import pytorch_lightning as pl

    from trainers.core.checkpoint import hparams, net_state
    from trainers.core.dataset import make_samples
    from trainers.core.driver import RunSettings, train_run
    from trainers.dynamicdet.data import Views, prepare
    from trainers.dynamicdet.task import DynamicDetTask

    if opts.img_size % 64:
        raise TrainingError(f"--img-size {opts.img_size}: must be a multiple of 64")
    pl.seed_everything(opts.seed, workers=True, verbose=False)
    if opts.resume:
        last = Path(opts.resume)
        if not last.is_file():
            raise FileNotFoundError(f"{last}: --resume needs a run's weights/last.pt")
        run_dir = last.parent.parent
    elif os.environ.get(RUN_ENV) and os.environ.get("LOCAL_RANK", "0") != "0":
        # a DDP child process started by Lightning (LOCAL_RANK ≥ 1) re-runs the command: the
        # run directory its parent chose; anywhere else a value there is stale and ignored
        run_dir = Path(os.environ[RUN_ENV])
    else:
        run_dir = increment_run(opts.project, opts.name)
    start = _checkpoint(opts.weight) if opts.weight else None
    if stage == "step2" and start is None:
        raise TrainingError("step2 needs --weight: the step-1 checkpoint (weights/last.pt)")
    cfg = dict(hparams(start)["model_cfg"]) if start else model_config(opts.cfg)
    if opts.resume:  # the run's own model
        cfg = dict(hparams(_checkpoint(opts.resume))["model_cfg"])

    records = records_of(opts.data)
    view = functools.partial(prepare, img_size=opts.img_size)
    samples = make_samples(records, view)
    train = [s for s in samples if s.meta["split"] != "val"]
    val = [s for s in samples if s.meta["split"] == "val"]
    if not train:
        raise DataError(f"{opts.data}: no training micrographs")
    d = np.concatenate([2 * s.radius for s in train])
    d = d[np.isfinite(d)]
    if d.size:
        diameter = float(np.median(d))
    elif opts.diameter:
        diameter = float(opts.diameter) * float(np.median([s.prep.sx for s in train]))
    else:
        raise TrainingError(f"{opts.data}: the labels carry no box size; give --diameter")

    options = {**opts.to_dict(), "stage": stage, "model_cfg": cfg, "diameter": diameter,
               "run_dir": str(run_dir)}
    task = DynamicDetTask(options)
    if start is not None and not opts.resume:
        task.net.load_state_dict(net_state(start))
        if stage == "step2" and "router_offset" in start and start["hyper_parameters"].get(
                "stage") == "step2":
            task.offset.load(start["router_offset"])
    task.val_samples = val
    size = opts.train_size or opts.img_size
    views = Views(train, size, diameter, scale=opts.scale, mosaic=opts.mosaic)
    dm = _datamodule(views, val, diameter, int(cfg["ch"]), opts)
    weights = run_dir / "weights"
    if opts.resume:
        (weights / "last.pt").replace(weights / "last.ckpt")
    settings = RunSettings(
        max_epochs=opts.epochs, gpus=device_gpus(opts.device), resume=bool(opts.resume),
        quiet=opts.quiet, max_minutes=opts.minutes, fast_dev_run=opts.fast_dev_run,
    )
    split = {"train": [s.prep.name for s in train], "val": [s.prep.name for s in val],
             "test": []}
    # set only while training (the DDP children inherit it), never left behind: a value left
    # by a failed run sent later runs of the process and its children into that folder
    os.environ[RUN_ENV] = str(run_dir)
    try:
        summary = train_run(task, dm, settings, run_dir, options, split, len(train), len(val))
    finally:
        os.environ.pop(RUN_ENV, None)
    if getattr(task, "trainer", None) is not None and not task.trainer.is_global_zero:
        return summary
    for which in ("best", "last"):
        ck = weights / f"{which}.ckpt"
        if ck.is_file():
            ck.replace(weights / f"{which}.pt")
    if not (weights / "best.pt").is_file() and (weights / "last.pt").is_file():
        import shutil

        shutil.copyfile(weights / "last.pt", weights / "best.pt")
    summary["best"], summary["last"] = str(weights / "best.pt"), str(weights / "last.pt")
    from trainers.dynamicdet import report

    report.write_run_files(run_dir, task, options, views, val)
    if stage == "step2":
        summary["router_percentiles"] = calibrate(task, val or train, weights)
    return summary


def _datamodule(views, val, diameter: float, ch: int, opts):
    import pytorch_lightning as pl
    import torch

    from trainers.core.datamodule import make_eval_dataset
    from trainers.dynamicdet.data import STRIDE, Encoder, to_input, train_dataset

    enc = Encoder(diameter, ch)
    workers = int(opts.workers) if opts.workers else 0
    # more workers than micrographs only costs start-up time
    workers = min(workers, max(len(views.samples) // 2, 0))

    class DynamicDetData(pl.LightningDataModule):
        def train_dataloader(self):
            ds = train_dataset(views, ch, int(opts.repeat))
            return torch.utils.data.DataLoader(
                ds, batch_size=int(opts.batch), shuffle=True, num_workers=workers,
                collate_fn=enc.collate, drop_last=len(ds) > opts.batch,
                persistent_workers=workers > 0)

        def val_dataloader(self):
            if not val:
                return []
            return torch.utils.data.DataLoader(
                make_eval_dataset(val, enc, functools.partial(to_input, ch=ch), STRIDE),
                batch_size=1, num_workers=0, collate_fn=enc.collate)

    return DynamicDetData()


def router_scores(net, samples) -> np.ndarray:
    """Router score of each sample's micrograph (the network in eval mode, on the CPU)."""
    import torch

    from trainers.core.datamodule import pad_to_multiple
    from trainers.dynamicdet.data import STRIDE, to_input

    net = net.to("cpu").eval()
    out = []
    with torch.no_grad():
        for s in samples:
            x = torch.from_numpy(to_input(pad_to_multiple(s.prep.image, STRIDE),
                                          int(net.cfg["ch"])))[None]
            out.append(float(net.router(net.backbone1(x))[0]))
    return np.array(out)


def calibrate(task, samples, weights: Path) -> list[float]:
    """Store P0…P100 of the router scores of ``samples`` in best.pt and last.pt."""
    import torch

    from trainers.core.checkpoint import load_checkpoint, net_state

    pct = None
    for name in ("best.pt", "last.pt"):
        path = weights / name
        if not path.is_file():
            continue
        ck = load_checkpoint(path)
        task.net.load_state_dict(net_state(ck))
        scores = router_scores(task.net, samples)
        pct = np.percentile(scores, np.arange(101)).tolist()
        ck["router_calibration"] = {"percentiles": pct, "n": int(len(scores))}
        torch.save(ck, path)
    return pct or []
