"""``cryoglean convert FROM TO INPUT -o OUTPUT``: one picker's files into another's, without a
catalog (a thin shell over :func:`converters.convert.convert`). Only click is imported here;
the format choices come from the registry when click needs them."""

from __future__ import annotations

import click

from converters.cli import _FormatChoice


class _FormatsInHelp(click.Command):
    """Lists the registry's readable and writable formats at the end of ``--help``."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Formats"):
            formatter.write_text("FROM: " + ", ".join(self.params[0].type.choices))
            formatter.write_text("TO: " + ", ".join(self.params[1].type.choices))
        super().format_epilog(ctx, formatter)


@click.command("convert", cls=_FormatsInHelp)
@click.argument("src", metavar="FROM", type=_FormatChoice("read"))
@click.argument("dst", metavar="TO", type=_FormatChoice("write"))
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True))
@click.option("-o", "--out", "output", required=True, type=click.Path(),
              help="Output: a folder for per-micrograph formats, a file (or folder) for tables.")
@click.option("--images", type=click.Path(file_okay=False, exists=True), default=None,
              help="Folder of the images the picks refer to (<stem>.<ext>): image sizes for "
                   "formats normalised by them.")
@click.option("--micrograph-size", default=None, metavar="NXxNY",
              help="One image size (px) for every micrograph, where --images is not given.")
@click.option("--boxsize", type=float, default=None,
              help="Box side / particle diameter (px) for formats that write boxes, where the "
                   "input carries none.")
@click.option("--pixel-size", type=float, default=None,
              help="Pixel size (Å/px) for formats that store Å (copick).")
@click.option("--flavour", "--star-flavour", "flavour", default=None,
              help="Writer flavour of TO (star: per-micrograph, relion31, relion30, topaz, "
                   "partinet; box: integer, float).")
@click.option("--force", is_flag=True, help="Write into an existing output, replacing files.")
def convert_command(src, dst, input_path, output, images, micrograph_size, boxsize, pixel_size,
                    flavour, force):
    """Convert picks from one picker's format to another's, without a catalog."""
    from converters.convert import convert

    result = convert(src, dst, input_path, output, force=force, images=images,
                     micrograph_size=micrograph_size, boxsize=boxsize, pixel_size=pixel_size,
                     flavour=flavour)
    click.echo(result.summary())
