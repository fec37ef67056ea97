"""One Lightning task that every picker subclasses, and the run driver (seed, run directory,
checkpoints, CSV metrics, plots, resume, devices).

A picker subclass provides ``build_network``, ``compute_loss`` and ``decode_batch``; the base
class runs training/validation, decodes validation micrographs, scores them with
:func:`trainers.evaluate.evaluate_picks` at radius 0.5 × particle diameter, and logs
``val/f1``, ``val/auprc``, ``val/precision``, ``val/recall`` and losses.

Run directory ``OUTPUT/EXP_ID/``: ``options.yaml`` (every option of the run), ``hparams.yaml``
and ``metrics.csv`` (CSVLogger), ``weights/best.ckpt`` and ``weights/last.ckpt``,
``split.json`` (which micrographs trained/validated/held out), ``loss.png``, ``pr.png``,
``f1.png`` and ``val_metrics.json`` (last validation).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch

from trainers.evaluate import evaluate_picks

log = logging.getLogger(__name__)


class BasePickerTask(pl.LightningModule):
    """Base task. ``hparams`` holds the run options (a plain dict, saved in checkpoints)."""

    def __init__(self, options: dict):
        super().__init__()
        self.save_hyperparameters(dict(options))
        self.net = self.build_network()
        self.val_samples: list = []  # set by the driver (not saved: data, not model state)
        self._val_picks: list[pd.DataFrame] = []
        self._val_seen: list[str] = []
        self.last_eval = None

    # --- hooks for pickers ---------------------------------------------------------------
    def build_network(self) -> torch.nn.Module:
        raise NotImplementedError

    def compute_loss(self, out: dict, batch: dict) -> tuple[torch.Tensor, dict]:
        """Returns (total loss, {name: tensor} parts to log)."""
        raise NotImplementedError

    def decode_batch(self, out: dict, valid_hw: tuple[int, int]) -> list[dict]:
        """Picks per image at the input scale: dicts with ``xy`` (n, 2) and ``score`` (n,)."""
        raise NotImplementedError

    def eval_diameter(self) -> float:
        """Particle diameter in input px, for the validation matching radius."""
        return float(self.hparams["particle_size"])

    # --- Lightning -----------------------------------------------------------------------
    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        out = self(batch["input"])
        loss, parts = self.compute_loss(out, batch)
        bs = batch["input"].shape[0]
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=bs)
        for k, v in parts.items():
            self.log(f"train/{k}", v, on_step=False, on_epoch=True, batch_size=bs)
        return loss

    def on_validation_epoch_start(self):
        self._val_picks = []
        self._val_seen = []

    def validation_step(self, batch, batch_idx):
        out = self(batch["input"])
        loss, _ = self.compute_loss(out, batch)
        self.log("val/loss", loss, on_epoch=True, batch_size=1, sync_dist=True)
        for i, idx in enumerate(batch["index"].tolist()):
            s = self.val_samples[idx]
            self._val_seen.append(s.prep.name)
            one = {k: v[i : i + 1] for k, v in out.items()}
            p = self.decode_batch(one, s.prep.image.shape)[0]
            self._val_picks.append(
                pd.DataFrame(
                    {
                        "micrograph": s.prep.name,
                        "x": p["xy"][:, 0] / s.prep.sx,
                        "y": p["xy"][:, 1] / s.prep.sy,
                        "score": p["score"],
                    }
                )
            )

    def on_validation_epoch_end(self):
        if not self.val_samples or self.trainer.sanity_checking:
            return
        from trainers.data import samples_frame

        picks = pd.concat(self._val_picks, ignore_index=True) if self._val_picks else None
        if picks is None:
            return
        # under DDP each rank scores the micrographs it decoded; the logged numbers are the
        # ranks' mean (sync_dist), exact on one device
        seen = set(self._val_seen)
        samples = [s for s in self.val_samples if s.prep.name in seen]
        truth = samples_frame(samples)
        scale = float(np.mean([s.prep.sx for s in samples]))
        radius = 0.5 * self.eval_diameter() / scale
        res = evaluate_picks(
            picks, truth, radius, threshold=self.hparams.get("vis_thresh") or None,
            micrographs=sorted(seen),
        )
        self.last_eval = res
        for k in ("best_f1", "auprc", "precision", "recall", "f1"):
            v = res.summary[k]
            self.log(f"val/{k}", float(v) if v == v else 0.0, sync_dist=True)

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.net.parameters(), lr=float(self.hparams["lr"]))
        steps = [int(s) for s in str(self.hparams.get("lr_step") or "").split(",") if s.strip()]
        if not steps:
            return opt
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=steps, gamma=0.1)
        return {"optimizer": opt, "lr_scheduler": sched}


# ---------------------------------------------------------------------------------------------
# Devices
# ---------------------------------------------------------------------------------------------


# Heads a mode does not train (the size head in particle and fiber mode) have no gradient; DDP
# must be told, or it stops at the first step. Found by running the DDP path on 2 CPU processes.
DDP_STRATEGY = "ddp_find_unused_parameters_true"


def parse_gpus(gpus: str | None) -> dict:
    """``--gpus``: None → the first GPU when one is there, else CPU; ``-1`` → CPU; ``0,1`` →
    those GPUs (DDP when more than one). Returns Trainer keyword arguments."""
    have = torch.cuda.is_available()
    if gpus is None or str(gpus).strip() == "":
        return {"accelerator": "gpu", "devices": [0]} if have else {"accelerator": "cpu",
                                                                     "devices": 1}
    text = str(gpus).strip()
    try:
        ids = [int(g) for g in text.split(",") if g.strip()]
    except ValueError:
        raise ValueError(
            f"--gpus {text!r}: expected GPU ids like 0 or 0,1, or -1 for the CPU"
        ) from None
    if not ids or ids == [-1] or any(i < 0 for i in ids):
        return {"accelerator": "cpu", "devices": 1}
    if not have:
        log.warning("--gpus %s asked for GPUs but none is available; running on the CPU", text)
        return {"accelerator": "cpu", "devices": 1}
    kw = {"accelerator": "gpu", "devices": ids}
    if len(ids) > 1:
        kw["strategy"] = DDP_STRATEGY
    return kw



# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------


def show_progress(quiet: bool) -> bool:
    return (not quiet) and sys.stderr.isatty()


def fit(task: BasePickerTask, datamodule, options: dict, run_dir: Path) -> dict:
    """Train ``task`` into ``run_dir`` (see the module docstring); returns a summary dict with
    ``run_dir``, ``best``, ``last`` checkpoint paths and the last validation summary."""
    from pytorch_lightning.callbacks import ModelCheckpoint
    from pytorch_lightning.loggers import CSVLogger

    run_dir = Path(run_dir)
    weights = run_dir / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    has_val = bool(task.val_samples)
    monitor, mode = ("val/best_f1", "max") if has_val else ("train/loss_epoch", "min")
    ckpt = ModelCheckpoint(
        dirpath=weights, filename="best", monitor=monitor, mode=mode, save_top_k=1,
        save_last=True, enable_version_counter=False, auto_insert_metric_name=False,
    )
    loggers = [CSVLogger(save_dir=str(run_dir.parent), name=run_dir.name, version="")]
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        from pytorch_lightning.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="tb", version=""))
    resume = None
    if options.get("resume"):
        last = weights / "last.ckpt"
        if not last.is_file():
            raise FileNotFoundError(
                f"{last}: --resume needs the last checkpoint of run {run_dir}; train without "
                "--resume first"
            )
        resume = str(last)
    dev = parse_gpus(options.get("gpus"))
    metrics = run_dir / "metrics.csv"
    earlier = run_dir / "metrics_before_resume.csv"
    if resume and metrics.is_file():
        # CSVLogger deletes an existing metrics.csv; keep it and join the two after training
        metrics.replace(earlier)
    with warnings.catch_warnings():
        # Lightning's hints about srun and a non-empty log dir (ours holds options.yaml)
        warnings.filterwarnings("ignore", message=".*srun.*")
        warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
        trainer = pl.Trainer(
            max_epochs=int(options["num_epoch"]),
            callbacks=[ckpt],
            logger=loggers,
            default_root_dir=str(run_dir),
            enable_progress_bar=show_progress(bool(options.get("quiet"))),
            enable_model_summary=False,
            log_every_n_steps=1,
            num_sanity_val_steps=0,
            check_val_every_n_epoch=int(options.get("val_intervals") or 1),
            deterministic=False,
            use_distributed_sampler=not options.get("continual"),
            limit_train_batches=options.get("limit_train_batches") or None,
            max_time=(
                {"minutes": float(options["max_minutes"])} if options.get("max_minutes") else None
            ),
            **dev,
        )
        trainer.fit(task, datamodule=datamodule, ckpt_path=resume)
    if trainer.is_global_zero and earlier.is_file():
        parts = [pd.read_csv(earlier)] + ([pd.read_csv(metrics)] if metrics.is_file() else [])
        pd.concat(parts, ignore_index=True).to_csv(metrics, index=False)
        earlier.unlink()
    if trainer.is_global_zero:
        write_plots(task, run_dir)
    summary = {
        "run_dir": str(run_dir),
        "best": str(weights / "best.ckpt"),
        "last": str(weights / "last.ckpt"),
        "epochs": trainer.current_epoch,
        "val": task.last_eval.summary if task.last_eval is not None else None,
    }
    return summary


def write_plots(task: BasePickerTask, run_dir: Path) -> None:
    from trainers.plots import plot_f1, plot_losses, plot_pr

    metrics = run_dir / "metrics.csv"
    if metrics.is_file():
        plot_losses(pd.read_csv(metrics), run_dir / "loss.png")
    res = task.last_eval
    if res is not None:
        plot_pr(res.curve, run_dir / "pr.png", f"validation AUPRC {res.summary['auprc']:.3f}")
        plot_f1(res.curve, run_dir / "f1.png", f"validation best F1 {res.summary['best_f1']:.3f}")
        (run_dir / "val_metrics.json").write_text(res.to_json())


def write_options(run_dir: Path, options: dict) -> Path:
    import yaml

    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "options.yaml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(options, default=str)), sort_keys=True))
    return path
