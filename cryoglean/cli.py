"""The ``cryoglean`` command line.

Each command lives next to the library code it wraps (``harvest/cli.py``, ``converters/cli.py``,
``trainers/cli.py``, ``cryoglean/slurm_cli.py``) and is imported only when it is used or when
``--help`` lists it, so that ``cryoglean --help`` never imports torch. Command modules import
only click (and other light modules) at the top; heavy imports happen inside the command body.

Errors are shown here and nowhere else: commands let library exceptions propagate, and
:func:`user_error` decides what the user sees. Domain errors (``ValueError``, ``OSError`` and
their subclasses, SQLite's complaints about the catalog file) are one line ``Error: ...`` and
exit 1; anything else is a bug in cryoglean (a ``KeyError`` is never shown as ``Error: 'nx'``):
one line asking for a report and exit 70, with the traceback under ``-v``.
"""

from __future__ import annotations

import importlib
import logging
import sqlite3
import sys
import traceback

import click

from cryoglean import __version__

# name -> "module:attribute"; the order here is the order in --help.
COMMANDS: dict[str, str] = {
    "demo": "cryoglean.demo:demo_command",
    "demo-data": "harvest.synth.cli:demo_data_command",
    "crawl": "harvest.cli:crawl_command",
    "watch": "harvest.cli:watch_command",
    "ls": "harvest.cli:ls_command",
    "show": "harvest.cli:show_command",
    "export": "converters.cli:export_command",
    "import": "converters.cli:import_command",
    "convert": "cryoglean.convert_cli:convert_command",
    "denoise": "converters.denoise_cli:denoise_command",
    "star": "converters.partinet_cli:star_command",
    "split": "converters.partinet_cli:split_command",
    "train": "trainers.cli:train_group",
    "pick": "trainers.cli:pick_group",
    "detect": "trainers.dynamicdet.cli:detect_command",
    "evaluate": "trainers.evaluate_cli:evaluate_command",
    "tomo-files": "trainers.tomopicker.files_cli:tomo_files_command",
    "slurm": "cryoglean.slurm_cli:slurm_group",
    "report": "cryoglean.report.cli:report_command",
}

EX_SOFTWARE = 70  # sysexits.h: internal software error (a bug in cryoglean)

#: SQLite messages that mean the catalog file is the problem (bad input), not the code.
SQLITE_INPUT_ERRORS = (
    "file is not a database",
    "database is locked",
    "database table is locked",
    "readonly database",
    "unable to open database",
    "database disk image is malformed",
    "disk i/o error",
    "database or disk is full",
)

#: Top-level packages whose missing module is a bug, not a missing optional dependency.
OWN_PACKAGES = ("cryoglean", "harvest", "converters", "trainers", "templates")

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class InternalError(click.ClickException):
    """An exception that is a bug in cryoglean: one line that asks for a report, exit 70."""

    exit_code = EX_SOFTWARE

    def __init__(self, exc: BaseException):
        text = str(exc)
        super().__init__(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)

    def show(self, file=None) -> None:
        click.echo(
            f"internal error ({self.format_message()}); please report it with the output of the "
            "same command run with -v",
            file=file,
            err=file is None,
        )


def is_domain_error(exc: BaseException) -> bool:
    """True when ``exc`` says the input or the environment is wrong (show it as one line),
    False when it is a bug in cryoglean."""
    if isinstance(exc, sqlite3.Error):
        text = str(exc).lower()
        return any(m in text for m in SQLITE_INPUT_ERRORS)
    if isinstance(exc, ModuleNotFoundError):  # an optional dependency is not installed
        return (exc.name or "").split(".")[0] not in OWN_PACKAGES
    return isinstance(exc, (ValueError, OSError))


def user_error(exc: Exception, verbose: bool = False) -> click.ClickException:
    """The one place where an exception from a command becomes what the user sees.

    ``verbose`` (``-v``) prints the traceback first. Click's own errors pass unchanged.
    """
    if isinstance(exc, click.ClickException):
        return exc
    if verbose:
        click.echo("".join(traceback.format_exception(exc)).rstrip(), err=True)
    if not is_domain_error(exc):
        return InternalError(exc)
    if isinstance(exc, sqlite3.Error):
        return click.ClickException(f"SQLite catalog: {exc}")
    if isinstance(exc, ModuleNotFoundError):
        return click.ClickException(f"{exc}: this command needs it installed")
    return click.ClickException(str(exc))


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use, and whose commands' errors
    pass through :func:`user_error` (also when a test invokes the group with click's runner)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort, EOFError):
            raise  # click shows these itself (EOFError becomes Abort)
        except Exception as exc:  # noqa: BLE001 - every other exception is shown in one way
            verbose = bool((ctx.obj or {}).get("verbose"))
            raise user_error(exc, verbose) from exc

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if self._load(name, quiet=True) is not None]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return self._load(name, quiet=False)

    @staticmethod
    def _load(name: str, quiet: bool) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
            return getattr(module, attr)
        except (ImportError, AttributeError):
            # A command whose module is not there is not offered (and says why when asked for).
            if quiet:
                return None
            raise


@click.group(cls=LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="cryoglean")
@click.option("-v", "--verbose", is_flag=True, help="Log details and show tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """cryoglean: turn finished CryoSPARC and RELION projects into particle-picking training
    data, export it to the pickers people use, and train and run pickers.

    \b
    Flow:  crawl -> catalog.db -> export FORMAT -> train/pick -> evaluate
    Start: cryoglean demo DIR   (the whole flow on a generated facility)
    """
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: list[str] | None = None) -> int:
    """Console entry point: runs the CLI and returns its exit code (errors are shown by
    :func:`user_error`, through click's own display)."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        rv = cli.main(args=args, prog_name="cryoglean", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - raised outside a command (click itself, logging)
        err = user_error(exc, verbose="-v" in args or "--verbose" in args)
        err.show()
        return err.exit_code
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
