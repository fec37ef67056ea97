"""The run driver: seed, run directory, checkpoints, CSV metrics, plots, resume, devices.

Run directory ``OUTPUT/EXP_ID/``: ``options.yaml`` (every option of the run), ``hparams.yaml``
and ``metrics.csv`` (CSVLogger), ``weights/best.ckpt`` and ``weights/last.ckpt``,
``split.json`` (which micrographs trained/validated/held out), ``loss.png``, ``pr.png``,
``f1.png`` and ``val_metrics.json`` (last validation).

The driver knows no picker option: a picker turns its options into :class:`RunSettings`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from trainers.core import VAL_METRICS, devices
from trainers.core.progress import progress_callbacks, quiet_third_party, use_bar


@dataclass
class RunSettings:
    """How long and where to train: ``max_epochs``; ``gpus`` (``--gpus``); ``resume`` from
    ``weights/last.ckpt``; validate every ``val_every`` epochs; optional limits; whether
    Lightning may shard the training sampler under DDP (a picker's own batch sampler may
    not)."""

    max_epochs: int
    gpus: str | None = None
    resume: bool = False
    quiet: bool = False
    val_every: int = 1
    limit_train_batches: int | None = None
    max_minutes: float | None = None
    fast_dev_run: bool = False
    distributed_sampler: bool = True


def run_dir_of(output: str | Path, exp_id: str) -> Path:
    if not exp_id:
        raise ValueError("--exp_id is required: it names the run directory OUTPUT/EXP_ID")
    return Path(output) / exp_id


def saved_options(run_dir: Path) -> dict:
    """``options.yaml`` of an earlier run in ``run_dir`` ({} when none)."""
    import yaml

    path = Path(run_dir) / "options.yaml"
    return yaml.safe_load(path.read_text()) if path.is_file() else {}


def fit(task, datamodule, settings: RunSettings, run_dir: Path) -> dict:
    """Train ``task`` into ``run_dir`` (see the module docstring); returns a summary dict with
    ``run_dir``, ``best``, ``last`` checkpoint paths and the last validation summary."""
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint
    from pytorch_lightning.loggers import CSVLogger

    run_dir = Path(run_dir)
    weights = run_dir / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    has_val = bool(task.val_samples)
    monitor, mode = ("val/best_f1", "max") if has_val else ("train/loss_epoch", "min")
    # best.ckpt here; last.ckpt by _last_every_epoch (after each epoch and its validation)
    ckpt = ModelCheckpoint(
        dirpath=weights, filename="best", monitor=monitor, mode=mode, save_top_k=1,
        save_last=False, enable_version_counter=False, auto_insert_metric_name=False,
    )
    every_epoch = _last_every_epoch(weights / "last.ckpt")
    loggers = [CSVLogger(save_dir=str(run_dir.parent), name=run_dir.name, version="")]
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        from pytorch_lightning.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="tb", version=""))
    resume = None
    if settings.resume:
        last = weights / "last.ckpt"
        if not last.is_file():
            raise FileNotFoundError(
                f"{last}: --resume needs the last checkpoint of run {run_dir}; train without "
                "--resume first"
            )
        resume = str(last)
    dev = devices.parse_gpus(settings.gpus)
    metrics = run_dir / "metrics.csv"
    earlier = run_dir / "metrics_before_resume.csv"
    if resume and metrics.is_file():
        # CSVLogger deletes an existing metrics.csv; keep it and join the two after training
        metrics.replace(earlier)
    with quiet_third_party(), warnings.catch_warnings():
        # Lightning's hints about srun and a non-empty log dir (ours holds options.yaml)
        warnings.filterwarnings("ignore", message=".*srun.*")
        warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
        trainer = pl.Trainer(
            max_epochs=int(settings.max_epochs),
            callbacks=[ckpt, every_epoch, *progress_callbacks(settings.quiet)],
            logger=loggers,
            default_root_dir=str(run_dir),
            enable_progress_bar=use_bar(settings.quiet),
            enable_model_summary=False,
            log_every_n_steps=1,
            num_sanity_val_steps=0,
            check_val_every_n_epoch=int(settings.val_every or 1),
            deterministic=False,
            use_distributed_sampler=settings.distributed_sampler,
            limit_train_batches=settings.limit_train_batches or None,
            max_time=({"minutes": float(settings.max_minutes)} if settings.max_minutes
                      else None),
            fast_dev_run=bool(settings.fast_dev_run),
            **dev,
        )
        trainer.fit(task, datamodule=datamodule, ckpt_path=resume)
        if settings.fast_dev_run:
            # Lightning writes no checkpoint in a fast dev run; one is needed to pick or resume
            trainer.save_checkpoint(weights / "last.ckpt")
    if trainer.is_global_zero and earlier.is_file():
        parts = [pd.read_csv(earlier)] + ([pd.read_csv(metrics)] if metrics.is_file() else [])
        pd.concat(parts, ignore_index=True).to_csv(metrics, index=False)
        earlier.unlink()
    if trainer.is_global_zero:
        write_plots(task, run_dir)
    return {
        "run_dir": str(run_dir),
        "best": str(weights / "best.ckpt"),
        "last": str(weights / "last.ckpt"),
        "epochs": trainer.current_epoch,
        "val": task.last_eval.summary if task.last_eval is not None else None,
    }


def train_run(task, datamodule, settings: RunSettings, run_dir: Path, options: dict,
              split: dict, n_train: int, n_val: int) -> dict:
    """Write ``options.yaml`` and ``split.json`` into ``run_dir``, then :func:`fit`; the
    summary also has ``train_seconds``, ``n_train`` and ``n_val``."""
    from trainers.core.dataset import write_split

    write_options(run_dir, options)
    write_split(run_dir / "split.json", split)
    t0 = time.time()
    summary = fit(task, datamodule, settings, run_dir)
    summary["train_seconds"] = time.time() - t0
    summary["n_train"], summary["n_val"] = n_train, n_val
    return summary


def _last_every_epoch(path: Path):
    """A callback writing ``path`` (last.ckpt) at the end of every training epoch, atomically.

    Lightning's ModelCheckpoint writes last.ckpt only when it also saved a monitored checkpoint,
    i.e. after a validation: with ``--val_every N`` a run killed between validations lost up to
    N-1 epochs. Validation of an epoch runs before this hook, so the file holds its result."""
    import pytorch_lightning as pl

    class LastEveryEpoch(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.fast_dev_run or trainer.sanity_checking:
                return
            tmp = path.with_name(path.name + ".tmp")
            trainer.save_checkpoint(tmp)  # written by rank 0 only, with a barrier
            if trainer.is_global_zero:
                os.replace(tmp, path)

    return LastEveryEpoch()


def write_plots(task, run_dir: Path) -> None:
    from trainers.plots import plot_f1, plot_losses, plot_pr

    metrics = run_dir / "metrics.csv"
    if metrics.is_file():
        plot_losses(pd.read_csv(metrics), run_dir / "loss.png")
    res = task.last_eval
    if res is not None:
        plot_pr(res.curve, run_dir / "pr.png", f"validation AUPRC {res.summary['auprc']:.3f}")
        plot_f1(res.curve, run_dir / "f1.png", f"validation best F1 {res.summary['best_f1']:.3f}")
        (run_dir / VAL_METRICS).write_text(res.to_json())


def write_options(run_dir: Path, options: dict) -> Path:
    import yaml

    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "options.yaml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(options, default=str)), sort_keys=True))
    return path
