"""``cryoglean tomo-files`` (thin shell over :func:`trainers.tomopicker.files.tomo_files`)."""

from __future__ import annotations

import json

import click


@click.command("tomo-files", context_settings={"max_content_width": 100})
@click.option("-d", "--dir", "directory", required=True,
              help="Folder with the tomograms and their model2point files <tomogram>.txt; "
                   "the lists are written here.")
@click.option("-o", "--out", required=True,
              help="Name prefix: NAME_train_imgs.txt and NAME_train_coords.txt "
                   "(NAME_test_imgs.txt with --inference).")
@click.option("-e", "--ext", default=".rec", show_default=True,
              help="Tomogram file extension.")
@click.option("-r", "--ord", "order", type=click.Choice(["xzy", "xyz", "zxy"]), default="xzy",
              show_default=True,
              help="How the three point columns map to x, y, z (cet_pick's -r; xzy for IMOD "
                   "models of tomograms that are not rotated).")
@click.option("-c", "--inference", is_flag=True,
              help="Image list for picking only (NAME_test_imgs.txt), no coordinates.")
@click.option("--img_only", is_flag=True, help="Write the image list only, no coordinates.")
@click.option("--compress", is_flag=True,
              help="The points were clicked on compressed tomograms: double z.")
def tomo_files_command(directory, out, ext, order, inference, img_only, compress):
    """cet_pick's generate_train_files.py: the image list and coordinate table that
    `cryoglean train tomo` (and cet_pick) read, from a folder of tomograms and IMOD point
    files."""
    from trainers.tomopicker.files import tomo_files

    click.echo(json.dumps(tomo_files(directory, out, ext, order, inference, img_only,
                                     compress), indent=1))
