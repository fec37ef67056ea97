"""Option dataclasses that carry their own help, and the declaration of a picker.

A picker declares its ``train``/``pick`` option classes (subclasses of :class:`TrainOptions` /
:class:`PickOptions`, fields made with :func:`opt`) and its entry points in a
:class:`PickerSpec`; ``trainers.pickers`` lists the declarations and ``trainers.cli`` builds the
``train``/``pick`` commands from them. Imports nothing heavy (the CLI reads it for ``--help``).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields


def opt(default=None, help: str = "", required: bool = False, choices=None,  # noqa: A002
        min=None, max=None, min_open: bool = False):  # noqa: A002
    """A dataclass field with its CLI help (``metadata``): ``required`` options have no
    default on the command line; ``choices`` restricts the values; ``min``/``max`` bound a
    number (``min_open``: strictly greater than ``min``), checked by the command line parser
    so that ``--batch_size 0`` is one clear line, not a failure deep in training."""
    meta = {"help": help, "required": required}
    if choices is not None:
        meta["choices"] = tuple(choices)
    if min is not None or max is not None:
        meta["range"] = (min, max, bool(min_open))
    return field(default=default, metadata=meta)


def check_names(d: dict, cls) -> dict:
    """Reject unknown option names with close-match suggestions (``--bach_size``?)."""
    known = [f.name for f in fields(cls)]
    for k in d:
        if k not in known:
            near = difflib.get_close_matches(k, known, n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise ValueError(f"unknown option {k!r}{hint} (known: {', '.join(known)})")
    return dict(d)


class _Options:
    @classmethod
    def from_dict(cls, d: dict):
        known = check_names(d, cls)
        # click passes None for an option left out; the dataclass default applies then
        defaults = {f.name: f.default for f in fields(cls) if f.default is not MISSING}
        return cls(**{k: (defaults.get(k) if v is None else v) for k, v in known.items()})

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainOptions(_Options):
    """Options every picker's ``train`` has (where the labelled data is, the run, devices)."""

    dataset: str | None = opt(None, "An export directory (cryoglean export … -o OUT): its "
                              "manifest.json gives the micrographs, labels, format, train/val "
                              "split and particle diameter. Replaces --data/--label.")
    data: str | None = opt(None, "Folder of micrographs (.mrc/.mrcs stacks are averaged; "
                           ".png/.jpg/.tif also read), when not training on --dataset.")
    label: str | None = opt(None, "Label file or folder of per-micrograph label files named "
                            "<micrograph stem>.<ext> (any 2D format of the registry), "
                            "coordinates in px of the micrographs in --data.")
    label_type: str | None = opt(None, "Registry format of --label (ignored with --dataset: the "
                                 "manifest names it).")
    exp_id: str = opt("", "Name of this run; the run directory is OUTPUT/EXP_ID.", required=True)
    output: str = opt("runs", "Folder that holds run directories.")
    gpus: str | None = opt(None, "GPU ids, e.g. 0 or 0,1 (several = DDP); -1 = CPU. Default: "
                           "GPU 0 if present.")
    resume: bool = opt(False, "Continue run OUTPUT/EXP_ID from weights/last.ckpt (epoch "
                       "counter continues).")
    seed: int = opt(317, "Random seed (Python, numpy, torch).")
    train_pct: float = opt(70.0, "Percent of micrographs for training when neither --dataset "
                           "(its manifest split) nor --val_data is given.", min=0, max=100)
    val_pct: float = opt(20.0, "Percent for validation (picks scored each epoch; best.ckpt by "
                         "best F1).", min=0, max=100)
    test_pct: float = opt(10.0, "Percent held out for testing (listed in split.json, never "
                          "trained on).", min=0, max=100)
    val_data: str | None = opt(None, "Separate validation micrograph folder (disables the "
                               "percentage split).")
    val_label: str | None = opt(None, "Labels of --val_data (same --label_type).")
    num_workers: int = opt(0, "Data-loading worker processes (0 = in the main process).", min=0)
    limit_train_batches: int | None = opt(None, "Train only this many batches per epoch "
                                          "(quick checks).", min=1)
    max_minutes: float | None = opt(None, "Stop training after this many minutes (wall clock) "
                                    "even before the last epoch.", min=0, min_open=True)
    fast_dev_run: bool = opt(False, "Run one training and one validation batch only (smoke "
                             "test); weights/last.ckpt is still written.")
    quiet: bool = opt(False, "No progress bar.")


@dataclass
class PickOptions(_Options):
    """Options every picker's ``pick`` has (micrographs in, label files out, shard, device)."""

    data: str | None = opt(None, "Folder of micrographs to pick (.mrc/.mrcs, .png/.jpg/.tif).")
    dataset: str | None = opt(None, "An export directory: pick its micrographs (those of "
                              "--split, or all), instead of --data.")
    split: str | None = opt(None, "With --dataset: only the micrographs of this split of the "
                            "manifest (train or val).")
    load_model: str = opt("", "Checkpoint of a trained run (weights/best.ckpt).", required=True)
    output: str = opt("", "Folder for one label file per micrograph (px of the micrograph "
                      "files).", required=True)
    output_type: str | None = opt(None, "Registry format of the written picks.")
    gpus: str | None = opt("-1", "GPU id to pick on, e.g. 0; -1 = CPU.")
    visual: bool = opt(False, "Also write <micrograph>.png with the picks drawn as circles.")
    shard: str | None = opt(None, "K/N: pick only the K-th (0-based) of N chunks of the sorted "
                            "micrograph list (Slurm arrays).")
    quiet: bool = opt(False, "No progress bar.")


@dataclass(frozen=True)
class PickerSpec:
    """A picker as the table lists it: option classes, entry points (``module:function``,
    imported only when a command runs) and the commands' help."""

    name: str
    train_options: type
    pick_options: type
    train: str
    pick: str
    train_help: str = ""
    pick_help: str = ""
    dims: int = 2
    # () → the registry format the picker reads and writes when none is given
    default_format: Callable[[], str] | None = None
    # ``module:attr`` of a click command of the picker's own for ``train`` (subcommands or
    # flag names of its own, e.g. PartiNet's step1/step2); "" = built from train_options
    train_command: str = ""

    def entry(self, which: str):
        import importlib

        mod, _, fn = getattr(self, which).partition(":")
        return getattr(importlib.import_module(mod), fn)
