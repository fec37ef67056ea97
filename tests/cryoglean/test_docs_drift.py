"""README.md keeps up with the code: every command and subcommand of the CLI (found by walking
the click tree, lazily loaded commands included) and every Slurm profile key is documented, and
every command, group and option has help text."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cryoglean import slurm
from cryoglean.cli import cli

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def all_commands() -> dict[str, click.Command]:
    """Every command and group below ``cryoglean``, by path ("slurm render"), groups included."""
    found: dict[str, click.Command] = {}

    def walk(cmd: click.Command, path: tuple[str, ...], ctx: click.Context) -> None:
        if path:
            found[" ".join(path)] = cmd
        if isinstance(cmd, click.Group):
            names = cmd.list_commands(ctx)
            assert names, f"group {' '.join(path) or 'cryoglean'} lists no commands"
            for name in names:
                sub = cmd.get_command(ctx, name)
                assert sub is not None, f"{' '.join((*path, name))} is listed but cannot load"
                walk(sub, (*path, name), click.Context(sub, parent=ctx, info_name=name))

    walk(cli, (), click.Context(cli, info_name="cryoglean"))
    return found


COMMANDS = all_commands()


def test_the_walk_finds_groups_and_their_subcommands():
    assert {"crawl", "export", "slurm", "slurm render", "train", "pick"} <= set(COMMANDS)
    assert any(p.startswith("train ") for p in COMMANDS), "train has no picker subcommand"
    assert any(p.startswith("pick ") for p in COMMANDS), "pick has no picker subcommand"


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_every_command_is_in_the_readme(path):
    words = ["cryoglean", *path.split()]
    # "cryoglean demo" must not be satisfied by "cryoglean demo-data"; lines may wrap between words
    pattern = r"\s+".join(map(re.escape, words)) + r"(?![\w-])"
    assert re.search(pattern, README), f"README.md never mentions `{' '.join(words)}`"


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_every_command_has_help(path):
    cmd = COMMANDS[path]
    assert (cmd.help or "").strip(), f"cryoglean {path} has no help text (its docstring)"
    missing = [p.name for p in cmd.params
               if isinstance(p, click.Option) and not (p.help or "").strip()]
    assert not missing, f"cryoglean {path}: options without help: {missing}"
    result = CliRunner().invoke(cli, [*path.split(), "--help"])
    assert result.exit_code == 0, result.output
    assert cmd.help.strip().split()[0] in result.output


def _default_cell(default) -> str:
    return "unset" if default is None else f"`{json.dumps(default)}`"


def test_every_profile_key_is_in_the_readme_table():
    rows = {m.group(1): (m.group(2).strip(), m.group(3).strip())
            for m in re.finditer(r"^\| `(\w+)` \|([^|]*)\|([^|]*)\|$", README, re.M)}
    keys = list(slurm.PROFILE_KEYS)
    missing = [k for k in keys if k not in rows]
    assert not missing, f"README.md's profile key table lacks {missing}"
    for key, (default, meaning) in slurm.PROFILE_KEYS.items():
        assert rows[key] == (_default_cell(default), meaning), (
            f"README row for profile key {key!r} says {rows[key]}, the code "
            f"{(_default_cell(default), meaning)}")
    assert [k for k in rows if k in keys] == keys, "keep the table in the code's order"


def test_profiles_keys_command_lists_the_same_keys():
    result = CliRunner().invoke(cli, ["slurm", "profiles", "--keys"])
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.output.splitlines()] == list(slurm.PROFILE_KEYS)
