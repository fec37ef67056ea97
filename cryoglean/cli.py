"""The ``cryoglean`` command line.

Each command lives next to the library code it wraps (``harvest/cli.py``, ``converters/cli.py``,
``trainers/cli.py``, ``cryoglean/slurm_cli.py``) and is imported only when it is used or when
``--help`` lists it, so that ``cryoglean --help`` never imports torch. Command modules import
only click (and other light modules) at the top; heavy imports happen inside the command body.
"""

from __future__ import annotations

import importlib
import logging
import sys

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
    "denoise": "converters.denoise_cli:denoise_command",
    "train": "trainers.cli:train_group",
    "pick": "trainers.cli:pick_group",
    "evaluate": "trainers.evaluate_cli:evaluate_command",
    "slurm": "cryoglean.slurm_cli:slurm_group",
}

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

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
    """Console entry point: library errors become one clear line and a non-zero exit."""
    verbose = "-v" in (argv or sys.argv[1:]) or "--verbose" in (argv or sys.argv[1:])
    try:
        rv = cli.main(args=argv, prog_name="cryoglean", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 1
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        if verbose:
            raise
        click.echo(f"Error: {exc}", err=True)
        return 1
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
