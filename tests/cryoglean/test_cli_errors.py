"""Errors are shown in one place (``cryoglean.cli.user_error``), the same way for every command.

A domain error (``ValueError``, ``OSError``, SQLite complaining about the catalog file) is one
line ``Error: ...`` and exit 1. Anything else is a bug: one ``internal error (...)`` line that
asks for a report and exit 70 (EX_SOFTWARE), the traceback with ``-v``; a ``KeyError`` is never
shown as a bare ``Error: 'nx'``. Each command's library call is replaced by one that raises.
"""

from __future__ import annotations

import importlib
import sqlite3

import click
import pytest
from click.testing import CliRunner

from cryoglean.cli import EX_SOFTWARE, cli, main

REPORT = "please report it with the output of the same command run with -v"


def _empty_catalog(path):
    from harvest.catalog import Catalog

    with Catalog(str(path)):
        pass
    return str(path)


def _args(tmp_path, name):
    """Arguments that click accepts for command ``name`` (the library call is patched)."""
    db = str(tmp_path / "c.db")
    return {
        "demo": ["demo", str(tmp_path / "demo")],
        "demo-data": ["demo-data", str(tmp_path / "fac")],
        "crawl": ["crawl", str(tmp_path), "--db", db],
        "watch": ["watch", str(tmp_path), "--db", db],
        "ls": ["ls", "--db", _empty_catalog(tmp_path / "c.db")],
        "show": ["show", "p1", "--db", _empty_catalog(tmp_path / "c.db")],
        "export": ["export", "thi", "--db", db, "-o", str(tmp_path / "out"), "-q"],
        "import": ["import", "thi", str(tmp_path), "--db", db, "--project", "p", "--name", "n"],
        "convert": ["convert", "thi", "star", str(tmp_path), "-o", str(tmp_path / "o")],
        "denoise": ["denoise", "--source", str(tmp_path), "--project", str(tmp_path / "p"), "-q"],
        "star": ["star", "--labels", str(tmp_path), "--images", str(tmp_path), "--output",
                 str(tmp_path / "o.star")],
        "split": ["split", "--star", str(tmp_path / "p.star"), "--images", str(tmp_path),
                  "--output", str(tmp_path / "o")],
        "detect": ["detect", "--weight", "w.pt", "--source", str(tmp_path), "--project",
                   str(tmp_path / "p"), "--quiet"],
        "evaluate": ["evaluate", "--picks", str(tmp_path), "--truth", str(tmp_path),
                     "--radius", "3"],
        "slurm render": ["slurm", "render", "evaluate", "--profile", "cpu"],
        "slurm pipeline": ["slurm", "pipeline", "centernet", "--profile", "cpu", "-o",
                           str(tmp_path / "s")],
        "slurm templates": ["slurm", "templates"],
        "slurm profiles": ["slurm", "profiles"],
        "slurm value": ["slurm", "value", "threshold", str(tmp_path)],
        "report": ["report", "--db", db, "-o", str(tmp_path / "site"), "-q"],
        "tomo-files": ["tomo-files", "-d", str(tmp_path), "-o", "s"],
    }[name]


#: command path -> the library function (module, attribute) its command calls.
LIBRARY_CALLS = {
    "demo": ("cryoglean.demo", "build_steps"),
    "demo-data": ("harvest.synth.facility", "make_facility"),
    "crawl": ("harvest.crawl", "crawl"),
    "watch": ("harvest.watch", "watch"),
    "ls": ("harvest.show", "ls_text"),
    "show": ("harvest.show", "show_text"),
    "export": ("converters.export", "export"),
    "import": ("converters.importer", "import_picks"),
    "convert": ("converters.convert", "convert"),
    "denoise": ("converters.denoise", "denoise_directory"),
    "star": ("converters.partinet", "detections_to_star"),
    "split": ("converters.partinet", "split_star"),
    "detect": ("trainers.dynamicdet.detect", "detect"),
    "evaluate": ("trainers.evaluate_cli", "run_evaluation"),
    "slurm render": ("cryoglean.slurm", "render"),
    "slurm pipeline": ("cryoglean.slurm", "write_pipeline"),
    "slurm templates": ("cryoglean.slurm", "list_templates"),
    "slurm profiles": ("cryoglean.slurm", "load_profiles"),
    "slurm value": ("cryoglean.slurm_runtime", "read_value"),
    "report": ("cryoglean.report", "build_report"),
    "tomo-files": ("trainers.tomopicker.files", "tomo_files"),
}

#: Groups whose subcommands come from the trainers' table of pickers: their library entry
#: points belong to each picker; test_every_leaf_command_goes_through_the_handler covers them.
PICKER_GROUPS = ("train", "pick")


def leaf_commands() -> dict[str, click.Command]:
    """Every command that runs something, by its path below ``cryoglean`` (LazyGroup walked)."""
    found: dict[str, click.Command] = {}

    def walk(cmd: click.Command, path: tuple[str, ...], ctx: click.Context) -> None:
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                walk(sub, (*path, name), click.Context(sub, parent=ctx, info_name=name))
        else:
            found[" ".join(path)] = cmd

    walk(cli, (), click.Context(cli, info_name="cryoglean"))
    return found


def _raiser(exc: BaseException):
    def boom(*args, **kwargs):
        raise exc

    return boom


def _patch(monkeypatch, name, exc):
    module, attr = LIBRARY_CALLS[name]
    monkeypatch.setattr(importlib.import_module(module), attr, _raiser(exc))


def test_every_command_outside_the_picker_table_is_listed_here():
    leaves = {p for p in leaf_commands() if p.split()[0] not in PICKER_GROUPS}
    assert leaves == set(LIBRARY_CALLS), "add the new command and its library call above"


@pytest.mark.parametrize("name", sorted(LIBRARY_CALLS))
def test_keyerror_is_an_internal_error(tmp_path, monkeypatch, capsys, name):
    _patch(monkeypatch, name, KeyError("nx"))
    rc = main(_args(tmp_path, name))
    err = capsys.readouterr().err
    assert rc == EX_SOFTWARE, err
    lines = err.strip().splitlines()
    assert lines[-1] == f"internal error (KeyError: 'nx'); {REPORT}", err
    assert not any(line.startswith("Error") for line in lines) and "Traceback" not in err


@pytest.mark.parametrize("name", sorted(LIBRARY_CALLS))
def test_keyerror_with_verbose_shows_the_traceback(tmp_path, monkeypatch, capsys, name):
    _patch(monkeypatch, name, KeyError("nx"))
    rc = main(["-v", *_args(tmp_path, name)])
    err = capsys.readouterr().err
    assert rc == EX_SOFTWARE, err
    assert "Traceback (most recent call last)" in err and "KeyError: 'nx'" in err
    assert "in boom" in err  # the frame that raised, not only the CLI's
    assert err.strip().splitlines()[-1].startswith("internal error (KeyError: 'nx')")


@pytest.mark.parametrize("name", sorted(LIBRARY_CALLS))
def test_valueerror_is_one_line(tmp_path, monkeypatch, capsys, name):
    _patch(monkeypatch, name, ValueError(f"{tmp_path}/x.star: no particles; check the job"))
    rc = main(_args(tmp_path, name))
    err = capsys.readouterr().err
    assert rc == 1, err
    assert err.strip().splitlines() == [f"Error: {tmp_path}/x.star: no particles; check the job"]


@pytest.mark.parametrize("exc", [
    FileNotFoundError(2, "No such file or directory", "/data/mics"),
    PermissionError(13, "Permission denied", "/data/mics"),
    sqlite3.DatabaseError("file is not a database"),
    sqlite3.OperationalError("database is locked"),
    sqlite3.OperationalError("attempt to write a readonly database"),
])
def test_bad_input_errors_are_one_line(tmp_path, monkeypatch, capsys, exc):
    _patch(monkeypatch, "export", exc)
    rc = main(_args(tmp_path, "export"))
    err = capsys.readouterr().err
    assert rc == 1, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("Error: ")
    assert str(exc) in err


@pytest.mark.parametrize("exc", [
    AttributeError("'NoneType' object has no attribute 'shape'"),
    TypeError("unsupported operand type(s) for +: 'int' and 'str'"),
    IndexError("list index out of range"),
    NameError("name 'nx' is not defined"),
    AssertionError(),
    RuntimeError("shape mismatch"),
    ZeroDivisionError("division by zero"),
    sqlite3.OperationalError("no such column: nx"),  # a query bug, not a bad file
    ModuleNotFoundError("No module named 'converters.gone'", name="converters.gone"),
])
def test_bugs_are_internal_errors(tmp_path, monkeypatch, capsys, exc):
    _patch(monkeypatch, "show", exc)
    rc = main(_args(tmp_path, "show"))
    err = capsys.readouterr().err
    assert rc == EX_SOFTWARE, err
    name = type(exc).__name__
    want = f"internal error ({name}: {exc}); {REPORT}" if str(exc) else \
        f"internal error ({name}); {REPORT}"
    assert err.strip().splitlines() == [want]


def test_missing_optional_dependency_is_one_line(tmp_path, monkeypatch, capsys):
    _patch(monkeypatch, "evaluate", ModuleNotFoundError("No module named 'torch'", name="torch"))
    rc = main(_args(tmp_path, "evaluate"))
    err = capsys.readouterr().err
    assert rc == 1 and err.strip().splitlines() == [
        "Error: No module named 'torch': this command needs it installed"]


def test_same_display_through_click_runner(tmp_path, monkeypatch):
    """Tests and callers that invoke the group directly see what the console sees."""
    _patch(monkeypatch, "show", KeyError("nx"))
    r = CliRunner().invoke(cli, _args(tmp_path, "show"))
    assert r.exit_code == EX_SOFTWARE
    assert r.output.strip().splitlines() == [f"internal error (KeyError: 'nx'); {REPORT}"]
    _patch(monkeypatch, "show", ValueError("no project 'p1' in the catalog"))
    r = CliRunner().invoke(cli, _args(tmp_path, "show"))
    assert r.exit_code == 1
    assert r.output.strip().splitlines() == ["Error: no project 'p1' in the catalog"]


@pytest.mark.parametrize("path", sorted(leaf_commands()))
def test_every_leaf_command_goes_through_the_handler(monkeypatch, capsys, path):
    """Whatever a command's body raises reaches the one handler (train/pick included)."""
    cmd = leaf_commands()[path]
    monkeypatch.setattr(cmd, "callback", _raiser(KeyError("nx")))
    monkeypatch.setattr(cmd, "params", [])  # no required options: the body runs at once
    rc = main(path.split())
    err = capsys.readouterr().err
    assert rc == EX_SOFTWARE, err
    assert err.strip().splitlines() == [f"internal error (KeyError: 'nx'); {REPORT}"]


def test_documented_exit_codes_stay(tmp_path, monkeypatch, capsys):
    """crawl: 75 when another crawl holds the lock (an OSError, still one line)."""
    from harvest.catalog import CatalogLocked

    locked = CatalogLocked(str(tmp_path / "c.db.lock"), 1, 0.0)
    _patch(monkeypatch, "crawl", locked)
    assert main(_args(tmp_path, "crawl")) == 75
    assert capsys.readouterr().err.strip().splitlines() == [f"Error: {locked}"]


@pytest.mark.parametrize("args, code, text", [
    (["export", "thl", "--db", "c.db", "-o", "o"], 2, "'thl' is not one of"),
    (["denoise", "--source", ".", "--project", "p", "--shard", "3/3"], 2, "--shard"),
    (["crawl"], 2, "Missing argument"),
    (["crwal"], 2, "No such command 'crwal'"),
])
def test_parse_errors_stay_usage_errors(capsys, args, code, text):
    assert main(args) == code
    err = capsys.readouterr().err
    assert text in err and "Traceback" not in err and "internal error" not in err
