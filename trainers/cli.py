"""``cryoglean train …`` and ``cryoglean pick …``, built from the table of pickers
(:mod:`trainers.pickers`): one subcommand per picker, one click option per field of its option
dataclass, with the help the field carries.

Only click and the option declarations (plain dataclasses) are imported here; torch and
Lightning load when a command runs. Library errors propagate (``cryoglean.cli.main`` turns
them into one line).
"""

from __future__ import annotations

import dataclasses
import json
import typing

import click

from trainers import pickers

CTX = {"max_content_width": 100, "help_option_names": ["-h", "--help"]}
_TYPES = {"int": int, "float": float, "str": str}


def _base_type(annotation) -> type:
    names = [t.strip() for t in str(annotation).split("|") if t.strip() != "None"]
    return _TYPES.get(names[0], str) if names else str


def option_type(fld):
    """The click type of an option field: its ``choices``, its numeric ``range`` (min/max of
    :func:`trainers.core.options.opt`, checked while parsing), or the plain type."""
    meta = fld.metadata
    typ = _base_type(fld.type)
    if meta.get("choices"):
        return click.Choice(list(meta["choices"]))
    if meta.get("range") and typ in (int, float):
        lo, hi, lo_open = meta["range"]
        return (click.FloatRange(lo, hi, min_open=lo_open) if typ is float
                else click.IntRange(lo, hi))
    return typ


def options_from(cls, skip=()):
    """click options for every field of an options dataclass (EPicker-style ``--name``)."""
    hints = typing.get_type_hints(cls)

    def deco(f):
        for fld in reversed(dataclasses.fields(cls)):
            if fld.name in skip:
                continue
            name = f"--{fld.name}"
            meta = fld.metadata
            help_ = meta.get("help", "")
            if hints[fld.name] is bool:
                f = click.option(name, fld.name, is_flag=True, default=False, help=help_)(f)
                continue
            typ = option_type(fld)
            required = bool(meta.get("required"))
            f = click.option(
                name, fld.name, type=typ, required=required,
                default=None if required else fld.default,
                show_default=not required and fld.default not in (None, ""),
                help=help_,
            )(f)
        return f

    return deco


_json_option = click.option("--json", "as_json", is_flag=True,
                            help="Print the summary as one line of JSON on stdout.")


def _train_command(spec) -> click.Command:
    if spec.train_command:
        return spec.entry("train_command")

    @click.command(spec.name, context_settings=CTX, help=spec.train_help)
    @options_from(spec.train_options)
    @_json_option
    def command(as_json, **kw):
        summary = spec.entry("train")(spec.train_options.from_dict(kw))
        click.echo(json.dumps(summary, default=str) if as_json
                   else json.dumps(summary, indent=1, default=str))

    return command


def _pick_command(spec) -> click.Command:
    @click.command(spec.name, context_settings=CTX, help=spec.pick_help)
    @options_from(spec.pick_options)
    @_json_option
    def command(as_json, **kw):
        s = spec.entry("pick")(spec.pick_options.from_dict(kw))
        if as_json:
            click.echo(json.dumps(s, default=str))
            return
        click.echo(f"{s['micrographs']} micrographs, {s['picks']} picks, "
                   f"{s['micrographs_per_s']:.2f} micrographs/s")

    return command


class PickerGroup(click.Group):
    """A group whose subcommands are the pickers of the table, read when the group is used
    (so a picker added to the table, e.g. by a test, appears without re-importing)."""

    def __init__(self, *args, make=None, **kw):
        super().__init__(*args, **kw)
        self._make = make
        self._built: dict[str, tuple] = {}  # name -> (spec, command): one command per spec

    def list_commands(self, ctx):
        return pickers.names()

    def get_command(self, ctx, name):
        if name not in pickers.PICKERS:
            return None
        spec = pickers.get(name)
        built = self._built.get(name)
        if built is None or built[0] is not spec:
            built = self._built[name] = (spec, self._make(spec))
        return built[1]


@click.group("train", cls=PickerGroup, make=_train_command, context_settings=CTX)
def train_group():
    """Train one of cryoglean's pickers on an export (--dataset) or on micrographs and label
    files."""


@click.group("pick", cls=PickerGroup, make=_pick_command, context_settings=CTX)
def pick_group():
    """Pick particles with a trained cryoglean picker."""
