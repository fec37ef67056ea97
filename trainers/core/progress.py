"""Training progress where people look, and no third-party noise.

On a terminal Lightning's own bar runs; elsewhere (Slurm output files, ``make``) a callback
writes :mod:`harvest.progress` lines (batches done, percentage, rate, ETA, the epoch and its
loss) while training runs. Lightning's tips, its device banner and third-party warnings are
shown only with ``cryoglean -v`` (the root logger at DEBUG).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings

THIRD_PARTY_LOGGERS = ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric")


def verbose() -> bool:
    """True under ``cryoglean -v`` (the CLI sets the root logger to DEBUG)."""
    return logging.getLogger().isEnabledFor(logging.DEBUG)


@contextlib.contextmanager
def quiet_third_party():
    """Lightning's INFO lines (tips, 'GPU available', 'LOCAL_RANK') and warnings raised outside
    cryoglean hidden inside the block, unless :func:`verbose`."""
    if verbose():
        yield
        return
    saved = {}
    for name in THIRD_PARTY_LOGGERS:
        lg = logging.getLogger(name)
        saved[name] = lg.level
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore")
            warnings.filterwarnings("default", module=r"(cryoglean|harvest|converters|trainers)\.")
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def use_bar(quiet: bool) -> bool:
    """Lightning's bar: only on a terminal."""
    return not quiet and sys.stderr.isatty()


def progress_callbacks(quiet: bool) -> list:
    """[the line-writing callback] when output is not a terminal and not ``quiet``, else []."""
    if quiet or sys.stderr.isatty():
        return []
    return [_lines_callback()]


def _lines_callback():
    import pytorch_lightning as pl

    from harvest.progress import Progress

    class ProgressLines(pl.Callback):
        """Periodic lines (percentage, rate, ETA, epoch, loss) over all training batches."""

        def __init__(self):
            self.bar = None

        def on_train_start(self, trainer, pl_module):
            total = trainer.estimated_stepping_batches
            total = int(total) if total not in (None, float("inf")) else None
            if trainer.is_global_zero:
                self.bar = Progress(total, "train", "batches", tty=False)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if self.bar is None:
                return
            m = trainer.callback_metrics
            loss = m.get("train/loss_step", m.get("train/loss"))
            self.bar.desc = f"train epoch {trainer.current_epoch}" + (
                f" loss {float(loss):.4g}" if loss is not None else "")
            self.bar.update(1)

        def on_train_end(self, trainer, pl_module):
            if self.bar is not None:
                self.bar.close()

    return ProgressLines()
