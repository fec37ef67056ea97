"""``cryoglean crawl``, ``watch``, ``ls``, ``show``: thin shells over :mod:`harvest.crawl`,
:mod:`harvest.watch` and :mod:`harvest.show`. Heavy modules are imported inside the commands."""

from __future__ import annotations

import json

import click

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_PROBLEMS = 3
EXIT_NO_PROJECTS = 66  # EX_NOINPUT (sysexits.h): the roots hold no project
EXIT_LOCKED = 75  # EX_TEMPFAIL (sysexits.h): try again later

_db_option = click.option(
    "--db", "db", required=True, type=click.Path(dir_okay=False), envvar="CRYOGLEAN_DB",
    show_envvar=True, help="Catalog file (SQLite); created by the first crawl.",
)


@click.command("crawl", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("roots", nargs=-1, required=True, type=click.Path(file_okay=False))
@_db_option
@click.option("--exclude", "excludes", multiple=True, metavar="GLOB",
              help="Skip folders whose path or name matches GLOB (fnmatch); repeatable.")
@click.option("--wait", type=float, default=0.0, show_default=True, metavar="SECONDS",
              help="Wait this long for another crawl to release the catalog lock.")
@click.option("--follow-symlinks", "follow_symlinks", default="within", show_default=True,
              type=click.Choice(["within", "never", "any"]),
              help="Folder links discovery enters: 'within' the roots only (a link out of "
                   "the facility, e.g. to raw movies or to /, is not walked), 'never', or "
                   "'any'. /proc, /sys and other kernel filesystems are never entered.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar, no log lines.")
@click.pass_context
def crawl_command(ctx, roots, db, excludes, wait, follow_symlinks, as_json, quiet):
    """Find CryoSPARC and RELION projects under ROOT... and harvest them into the catalog.

    Incremental: only jobs that are new, changed or finished since the last crawl are parsed
    (jobs that failed to parse are tried again every crawl). The facility is only read. Every
    file that cannot be read becomes a row in the catalog's problems table and one log line;
    the crawl goes on. `cryoglean show PROJECT` lists a project's latest problems.

    \b
    Exit codes:
      0   everything was read and no known problem is open
      3   a problem is open: found by this crawl, or found earlier and not resolved yet
          (the file is unchanged); a fixed or removed file resolves it
      1   fatal error (e.g. a root that does not exist, an unreadable catalog)
      2   usage error
      66  no CryoSPARC or RELION project was found under ROOT... (nothing crawled)
      75  another crawl holds the catalog lock (after --wait seconds); try again later
    """
    import logging

    from harvest.catalog import CatalogLocked
    from harvest.catalog.opening import sqlite_errors
    from harvest.crawl import crawl

    if quiet:
        logging.getLogger("harvest").setLevel(logging.ERROR)
    try:
        with sqlite_errors(db):
            summary = crawl(list(roots), db, excludes=excludes, progress=not quiet, wait=wait,
                            follow_symlinks=follow_symlinks)
    except CatalogLocked as exc:
        click.echo(f"Error: {exc}", err=True)
        ctx.exit(EXIT_LOCKED)
    if as_json:
        click.echo(json.dumps(summary.as_dict()))
    elif not quiet:
        click.echo(summary.line())
    if summary.projects == 0:
        from harvest.discover import CRYOSPARC_MARKER, RELION_MARKER

        click.echo(f"Error: no CryoSPARC or RELION project found under {', '.join(roots)} "
                   f"(looked for {CRYOSPARC_MARKER} and {RELION_MARKER}); nothing was crawled",
                   err=True)
        ctx.exit(EXIT_NO_PROJECTS)
    ctx.exit(EXIT_PROBLEMS if summary.problems or summary.open_problems else EXIT_OK)


@click.command("watch", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("roots", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True))
@_db_option
@click.option("--debounce", type=float, default=5.0, show_default=True, metavar="SECONDS",
              help="Crawl a changed project this long after its last file event.")
@click.option("--exclude", "excludes", multiple=True, metavar="GLOB",
              help="Skip folders whose path or name matches GLOB (fnmatch); repeatable.")
@click.option("--poll", "poll_interval", type=float, default=None, metavar="SECONDS",
              help="Poll the tree every SECONDS instead of using inotify: needed on network "
                   "filesystems (NFS, GPFS, Lustre), where changes made by other hosts raise "
                   "no inotify event.")
def watch_command(roots, db, debounce, excludes, poll_interval):
    """Crawl ROOT... once, then re-crawl projects as their files change (until SIGTERM/Ctrl-C).

    Exits 0 after a clean shutdown; the project being written when the signal came is finished
    first.
    """
    from harvest.catalog import Catalog
    from harvest.catalog.opening import sqlite_errors
    from harvest.watch import watch

    with sqlite_errors(db):
        Catalog(db).close()  # a catalog it cannot write (foreign, damaged, read-only) stops here
        watch(list(roots), db, debounce=debounce, excludes=excludes, poll_interval=poll_interval)


@click.command("ls", context_settings={"help_option_names": ["-h", "--help"]})
@_db_option
@click.option("--json", "as_json", is_flag=True, help="Print the projects as JSON on stdout.")
def ls_command(db, as_json):
    """List the catalog's projects with software, version, jobs and particles per stage."""
    from harvest.catalog import Catalog
    from harvest.catalog.opening import sqlite_errors
    from harvest.show import ls_data, ls_text

    with sqlite_errors(db), Catalog(db, readonly=True) as cat:
        text = json.dumps(ls_data(cat)) if as_json else ls_text(cat)
    click.echo(text)


@click.command("show", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("project")
@_db_option
@click.option("--json", "as_json", is_flag=True, help="Print the project as JSON on stdout.")
def show_command(project, db, as_json):
    """Show one PROJECT (id, root path or title): jobs, particle sets per stage, parents, and
    per micrograph how many particles reached each stage."""
    from harvest.catalog import Catalog
    from harvest.catalog.opening import sqlite_errors
    from harvest.show import show_data, show_text

    with sqlite_errors(db), Catalog(db, readonly=True) as cat:
        text = json.dumps(show_data(cat, project)) if as_json else show_text(cat, project)
    click.echo(text)
