"""Click commands with PartiNet's flag names: ``cryoglean train dynamicdet step1|step2`` and
``cryoglean detect``. Options come from the dataclasses of :mod:`trainers.dynamicdet.options`
(``img_size`` → ``--img-size``; the underscore spelling works too)."""

from __future__ import annotations

import dataclasses
import json
import typing

import click

from trainers.cli import CTX, option_type
from trainers.dynamicdet.options import DetectOptions, Step1Options, Step2Options


def partinet_options(cls):
    """click options for every field of ``cls``, spelled ``--img-size`` (and ``--img_size``)."""
    hints = typing.get_type_hints(cls)

    def deco(f):
        for fld in reversed(dataclasses.fields(cls)):
            names = [f"--{fld.name.replace('_', '-')}"]
            if "_" in fld.name:
                names.append(f"--{fld.name}")
            meta = fld.metadata
            if hints[fld.name] is bool:
                f = click.option(*names, fld.name, is_flag=True, default=False,
                                 help=meta.get("help", ""))(f)
                continue
            required = bool(meta.get("required"))
            f = click.option(*names, fld.name, type=option_type(fld), required=required,
                             default=None if required else fld.default,
                             show_default=not required and fld.default not in (None, ""),
                             help=meta.get("help", ""))(f)
        return f

    return deco


@click.group("dynamicdet", context_settings=CTX)
def train_command():
    """DynamicDet (PartiNet's detector): step1 trains both detectors, step2 the router.

    \b
      cryoglean train dynamicdet step1 --data cryo_training.yaml --project runs/train
      cryoglean train dynamicdet step2 --data cryo_training.yaml --project runs/train \\
          --weight runs/train/exp/weights/last.pt --epochs 10
    """


@train_command.command("step1", context_settings=CTX)
@partinet_options(Step1Options)
def step1_command(**kw):
    """Train both detectors (backbones, composite connections, heads) jointly: loss L1 + L2."""
    from trainers.dynamicdet.train import train_step1

    click.echo(json.dumps(train_step1(Step1Options.from_dict(kw)), indent=1, default=str))


@train_command.command("step2", context_settings=CTX)
@partinet_options(Step2Options)
def step2_command(**kw):
    """Train the router only (everything else and BatchNorm statistics frozen), then store
    the router-score percentiles of the validation micrographs in the checkpoints."""
    from trainers.dynamicdet.train import train_step2

    click.echo(json.dumps(train_step2(Step2Options.from_dict(kw)), indent=1, default=str))


@click.command("detect", context_settings=CTX)
@partinet_options(DetectOptions)
def detect_command(**kw):
    """Detect particles with a DynamicDet checkpoint, writing PartiNet's files: PROJECT/exp*/
    labels/<mic>.txt (0 xc yc w h conf, normalised), PROJECT/exp*/<mic>.png and
    PROJECT/partinet_detect.log."""
    from trainers.dynamicdet.detect import detect

    s = detect(DetectOptions.from_dict(kw))
    click.echo(f"{s['micrographs']} micrographs, {s['picks']} picks, {s['easy']} easy "
               f"(router threshold {s['dy_thres']:.3g}), {s['micrographs_per_s']:.2f} "
               f"micrographs/s → {s['run_dir']}")
