"""``cryoglean export FORMAT`` and ``cryoglean import FORMAT PATH``: thin shells over
:func:`converters.export.export` and :func:`converters.importer.import_picks`.

Only click is imported at module level; the FORMAT choices come from the format registry, read
the first time click needs them (help text of the command, or validation).
"""

from __future__ import annotations

import dataclasses
import json

import click

IMAGE_MODES = ("link", "mrc", "png", "jpg", "none")  # converters.images.IMAGE_MODES (light copy)


class _FormatChoice(click.Choice):
    """``click.Choice`` over the registry's format names with a capability (``read``/``write``),
    loaded the first time click needs them, so that ``cryoglean --help`` stays light."""

    def __init__(self, capability: str):  # no super().__init__: choices is computed
        self._capability = capability
        self._names: tuple[str, ...] | None = None
        self.case_sensitive = True

    @property
    def choices(self) -> tuple[str, ...]:
        if self._names is None:
            from converters import registry

            self._names = tuple(
                n for n in registry.names() if self._capability in registry.get(n).capabilities
            )
        return self._names


class _FormatsInHelp(click.Command):
    """Lists the registry's formats at the end of ``--help`` (read when help is shown)."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        choice = self.params[0].type
        with formatter.section("Formats"):
            formatter.write_text(", ".join(choice.choices))
        super().format_epilog(ctx, formatter)


def _progress_enabled(quiet: bool) -> bool:
    return not quiet  # a bar on a terminal, periodic lines otherwise (harvest.progress)


@click.command("export", cls=_FormatsInHelp)
@click.argument("fmt", metavar="FORMAT", type=_FormatChoice("write"))
@click.option("--db", "db", required=True, type=click.Path(dir_okay=False),
              envvar="CRYOGLEAN_DB", show_envvar=True, help="Catalog file.")
@click.option("-o", "--out", "out", required=True, type=click.Path(file_okay=False),
              help="Output dataset directory (written atomically).")
@click.option("--project", "projects", multiple=True, help="Project id, root or title (repeat).")
@click.option("--job", "jobs", multiple=True, help="Job key (J24, Refine3D/job025) or id (repeat).")
@click.option("--set", "sets", multiple=True, type=int, help="Particle set id (repeat).")
@click.option("--stage", default=None,
              help="Force this curation stage (default: the most curated per micrograph).")
@click.option("--negatives", is_flag=True,
              help="Also export rejected (rejected2d) particles as explicit negatives.")
@click.option("--min-score", type=float, default=None, help="Drop positives scoring lower.")
@click.option("--class", "classes", multiple=True, type=int, help="Keep only this class (repeat).")
@click.option("--max-ctf-res", type=float, default=10.0, show_default=True,
              help="Drop micrographs whose CTF fit is worse than this (Å; PartiNet's limit). "
                   "Unknown CTF passes. Negative: no filter.")
@click.option("--max-motion", type=float, default=100.0, show_default=True,
              help="Drop micrographs with more total motion (px; PartiNet's limit). Unknown "
                   "motion passes. Negative: no filter.")
@click.option("--min-separation", type=float, default=None,
              help="De-duplicate picks closer than this (Å). Default: half the diameter.")
@click.option("--diameter", type=float, default=None,
              help="Particle diameter (Å). Default: 0.6 × the extraction box.")
@click.option("--flip-y", is_flag=True, help="Flip y (y -> ny - y), recorded in the manifest.")
@click.option("--micrograph-size", default=None, metavar="NXxNY",
              help="Size (px) of micrographs whose size neither the catalog nor a file header "
                   "gives (purged micrographs); needed only to normalise, flip or rescale.")
@click.option("--flavour", "--star-flavour", "flavour", default=None,
              help="Writer flavour of the format: star per-micrograph (default), relion31, "
                   "relion30, topaz, partinet (one table per split); box integer (default) or "
                   "float corners.")
@click.option("--split-by", type=click.Choice(["micrograph", "project"]), default="micrograph",
              show_default=True,
              help="Hold out whole micrographs, or whole projects, for validation.")
@click.option("--val-fraction", type=float, default=0.2, show_default=True,
              help="Fraction of micrographs (or projects) in the validation split; 0: none.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the train/validation split (same seed, same split).")
@click.option("--images", type=click.Choice(IMAGE_MODES), default=None,
              help="Images to write (default per format: yolo/thi png, topaz mrc, others link).")
@click.option("--scale", type=float, default=None,
              help="Downsample factor S: images Fourier-cropped to int(n/S), labels scaled "
                   "by the exact size ratio.")
@click.option("--width", type=int, default=None, help="Downsample to this width (px).")
@click.option("--normalize", type=click.Choice(["percentile", "minmax"]), default=None,
              help="8-bit normalisation for png/jpg (default percentile; thi minmax).")
@click.option("--equalize/--no-equalize", default=None,
              help="Histogram-equalise png/jpg (default: on for thi, EPicker's view).")
@click.option("--num-workers", type=int, default=1, show_default=True,
              help="Processes writing images in parallel.")
@click.option("--label-fraction", type=float, default=None,
              help="Sparse labels for experiments: keep only the training labels inside "
                   "random rectangular subregions holding about this fraction (0-1] of each "
                   "image's particles, as cet_pick's sparse annotations (seeded by --seed; "
                   "validation labels stay complete; recorded in the manifest).")
@click.option("--force", is_flag=True, help="Replace an existing output (after the new one is "
                                            "complete).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
def export_command(fmt, db, out, projects, jobs, sets, stage, negatives, min_score, classes,
                   max_ctf_res, max_motion, min_separation, diameter, flip_y, micrograph_size,
                   flavour, split_by,
                   val_fraction, seed, images, scale, width, normalize, equalize, num_workers,
                   label_fraction, force, quiet, as_json):
    """Export curated particles from the catalog as a FORMAT training dataset."""
    from converters.export import ExportOptions, export
    from converters.select import SelectionOptions
    from converters.sizes import parse_size

    ctx = click.get_current_context()
    command = {"command": ctx.command_path,
               **{k: v for k, v in ctx.params.items() if k != "as_json"}}
    sel = SelectionOptions(
        projects=tuple(projects), jobs=tuple(jobs), sets=tuple(sets), stage=stage,
        negatives=negatives, min_score=min_score, classes=tuple(classes),
        max_ctf_res=None if max_ctf_res is not None and max_ctf_res < 0 else max_ctf_res,
        max_motion=None if max_motion is not None and max_motion < 0 else max_motion,
        min_separation=min_separation, diameter=diameter, flip_y=flip_y,
        micrograph_size=parse_size(micrograph_size),
    )
    opts = ExportOptions(
        selection=sel, split_by=split_by, val_fraction=val_fraction, seed=seed, images=images,
        flavour=flavour,
        scale=scale, width=width, normalize=normalize, equalize=equalize,
        num_workers=max(1, num_workers), force=force, progress=_progress_enabled(quiet),
        command=command, label_fraction=label_fraction,
    )
    result = export(db, fmt, out, opts)
    if as_json:
        click.echo(json.dumps({"format": result.format, "out": str(result.out_dir),
                               "counts": result.counts}, default=str))
    else:
        click.echo(result.summary())


@click.command("import", cls=_FormatsInHelp)
@click.argument("fmt", metavar="FORMAT", type=_FormatChoice("read"))
@click.argument("path", type=click.Path(exists=True))
@click.option("--db", "db", required=True, type=click.Path(dir_okay=False),
              envvar="CRYOGLEAN_DB", show_envvar=True, help="Catalog file.")
@click.option("--project", required=True, help="Project id, root or title the picks belong to.")
@click.option("--name", required=True, help="Name of the new picked set.")
@click.option("--scale", type=float, default=None,
              help="Multiply x and y by this (picks made on images downsampled by it).")
@click.option("--images", "images_dir", type=click.Path(file_okay=False), default=None,
              help="Folder of the images the picks were made on: x and y are scaled "
                   "separately by each micrograph's size over its image's.")
@click.option("--micrograph-size", default=None, metavar="NXxNY",
              help="Size (px) of micrographs whose size the catalog lacks.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
def import_command(fmt, path, db, project, name, scale, images_dir, micrograph_size, as_json):
    """Import picks from another picker into the catalog as a picked set.

    PATH may also be a RELION pick job (its directory, its autopick.star/manualpick.star, a
    per-micrograph *_autopick.star) or RELION 5 tomography picks (Picks/jobNNN). Picks inside
    a cryoglean export are scaled back by the export's per-micrograph x and y scales."""
    from converters.importer import import_picks

    result = import_picks(db, fmt, path, project, name, scale=scale, images=images_dir,
                          micrograph_size=micrograph_size)
    click.echo(json.dumps(dataclasses.asdict(result)) if as_json else result.summary())
