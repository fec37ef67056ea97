"""Impossible numbers are refused by the command line parser with one line (exit 2), before any
data is read: ``train --batch_size 0`` used to end in "internal error (ZeroDivisionError)"."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cryoglean.cli import cli


@pytest.mark.parametrize("args, message", [
    (["train", "centernet", "--batch_size", "0"], "--batch_size"),
    (["train", "centernet", "--num_epoch", "-1"], "--num_epoch"),
    (["train", "centernet", "--lr", "0"], "--lr"),
    (["train", "centernet", "--val_pct", "200"], "--val_pct"),
    (["train", "centernet", "--pu_prior", "1.5"], "--pu_prior"),
    (["train", "centernet", "--input_width", "8"], "--input_width"),
    (["pick", "centernet", "--vis_thresh", "2"], "--vis_thresh"),
    (["pick", "centernet", "--K", "0"], "--K"),
])
def test_out_of_range_numbers_are_one_line(tmp_path, args, message):
    res = CliRunner().invoke(cli, [*args, "--exp_id" if args[0] == "train" else "--output",
                                   str(tmp_path / "x")])
    assert res.exit_code == 2
    assert message in res.output and "is not in the range" in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_every_numeric_training_option_states_its_range():
    """Counts and sizes must be bounded (a new picker's options too)."""
    import dataclasses
    import typing

    from trainers import pickers

    unbounded = []
    for name in pickers.names():
        spec = pickers.get(name)
        for cls in (spec.train_options, spec.pick_options):
            hints = typing.get_type_hints(cls)
            for f in dataclasses.fields(cls):
                base = {str(t) for t in typing.get_args(hints[f.name])} or {str(hints[f.name])}
                if any("int" in b or "float" in b for b in base) and "range" not in f.metadata \
                        and f.name not in ("seed",):
                    unbounded.append(f"{name} {cls.__name__}.{f.name}")
    assert unbounded == []
