"""``cryoglean train …`` and ``cryoglean pick …``: thin click shells over the library.

Only click and the options module (plain dataclasses) are imported at the top; torch and
Lightning load when a command runs.
"""

from __future__ import annotations

import dataclasses
import json
import typing

import click

from trainers.centernet.options import HELP, PICK_HELP, PickOptions, TrainOptions

CTX = {"max_content_width": 100, "help_option_names": ["-h", "--help"]}
_TYPES = {"int": int, "float": float, "str": str}
REQUIRED = {
    TrainOptions: ("data", "label", "label_type", "mode", "exp_id"),
    PickOptions: ("data", "load_model", "output", "output_type"),
}
CHOICES = {"mode": ["particle", "vesicle", "fiber"]}


def _base_type(annotation: str):
    names = [t.strip() for t in str(annotation).split("|") if t.strip() != "None"]
    return _TYPES.get(names[0], str) if names else str


def options_from(cls, skip=()):
    """click options for every field of an options dataclass (EPicker-style ``--name``)."""
    hints = typing.get_type_hints(cls)

    def deco(f):
        for fld in reversed(dataclasses.fields(cls)):
            if fld.name in skip:
                continue
            name = f"--{fld.name}"
            help_ = (PICK_HELP if cls is PickOptions else HELP).get(fld.name, "")
            if hints[fld.name] is bool:
                f = click.option(name, fld.name, is_flag=True, default=False, help=help_)(f)
                continue
            typ = _base_type(fld.type)
            if fld.name in CHOICES:
                typ = click.Choice(CHOICES[fld.name])
            required = fld.name in REQUIRED[cls]
            f = click.option(
                name, fld.name, type=typ, required=required,
                default=None if required else fld.default,
                show_default=not required and fld.default not in (None, ""),
                help=help_,
            )(f)
        return f

    return deco


@click.group("train", context_settings=CTX)
def train_group():
    """Train one of cryoglean's pickers on micrographs and label files."""


@click.group("pick", context_settings=CTX)
def pick_group():
    """Pick particles with a trained cryoglean picker."""


@train_group.command("centernet", context_settings=CTX)
@options_from(TrainOptions)
def train_centernet_command(**kw):
    """EPicker-like CenterNet picker (particles, vesicles or fibers).

    \b
    Three ways to train (as EPicker):
      from scratch:  --data D --label L --label_type thi --mode particle --exp_id run1
      fine-tune:     ... --load_model runs/run1/weights/best.ckpt
      continual:     ... --load_model CKPT --continual --load_exemplar OLD_EX
                         --output_exemplar NEW_EX --sampling_size 200
    Sparse labels (only some particles labelled): --sparse_anno, or --pu_prior P.
    The run directory OUTPUT/EXP_ID gets options.yaml, hparams.yaml, metrics.csv,
    weights/best.ckpt, weights/last.ckpt and loss/PR/F1 plots.
    """
    from trainers.centernet.run import train_centernet

    opts = TrainOptions.from_dict(kw)
    try:
        summary = train_centernet(opts)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(summary, indent=1, default=str))


@pick_group.command("centernet", context_settings=CTX)
@options_from(PickOptions)
def pick_centernet_command(**kw):
    """Pick micrographs with a CenterNet checkpoint; one label file per micrograph in --output,
    coordinates in px of the micrograph files."""
    from trainers.centernet.run import pick_centernet

    opts = PickOptions.from_dict(kw)
    try:
        summary = pick_centernet(opts)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"{summary['micrographs']} micrographs, {summary['picks']} picks, "
        f"{summary['micrographs_per_s']:.2f} micrographs/s"
    )
