"""``cryoglean report``: thin shell over :func:`cryoglean.report.build_report`."""

from __future__ import annotations

import json

import click


@click.command("report", context_settings={"help_option_names": ["-h", "--help"],
                                           "max_content_width": 100})
@click.option("--db", "db", required=True, type=click.Path(dir_okay=False), envvar="CRYOGLEAN_DB",
              show_envvar=True, help="Catalog file.")
@click.option("-o", "--out", "out", required=True, type=click.Path(file_okay=False),
              help="Folder of the site (created; index.html is the facility page).")
@click.option("--runs", "runs", multiple=True, type=click.Path(file_okay=False),
              help="A training run folder, or a folder of runs (repeat).")
@click.option("--project", "projects", multiple=True,
              help="Only this project (id, root or title; repeat). Default: all.")
@click.option("--thumbnails", type=click.IntRange(min=0), default=12, show_default=True,
              help="Thumbnails of readable micrographs per project page.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def report_command(db, out, runs, projects, thumbnails, as_json, quiet):
    """Write a static HTML report of the catalog (facility page, one page per project) and of
    training runs into OUT; open OUT/index.html in a browser (file:// works).

    Regenerating is incremental: thumbnails are reused while their micrograph (path, size,
    mtime) and its particles are unchanged.
    """
    from cryoglean.report import build_report

    summary = build_report(db, out, list(runs), list(projects), thumbnails=thumbnails,
                           progress=not quiet)
    click.echo(json.dumps(summary.as_dict()) if as_json else summary.line())
