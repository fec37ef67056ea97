"""``cryoglean star`` and ``cryoglean split``: PartiNet's file stages with PartiNet's flags
(thin shells over :mod:`converters.partinet`)."""

from __future__ import annotations

import click


@click.command("star")
@click.option("--labels", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Folder of detections <stem>.txt (class xc yc w h conf), e.g. PROJECT/exp/labels.")
@click.option("--images", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Folder of the images detect ran on (.png/.jpg/.mrc/.tif); their sizes turn "
              "normalised boxes into pixels.")
@click.option("--output", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="STAR file to write (replaced if it exists, as PartiNet).")
@click.option("--conf", type=float, default=0.1, show_default=True,
              help="Keep detections with confidence strictly greater than this.")
@click.option("--relion", is_flag=True,
              help="Also write RELION's autopick layout: RELION_PROJECT_DIR/partinet/pick.star and "
              "partinet/movies/<stem>.star.")
@click.option("--relion-project-dir", default=None, type=click.Path(file_okay=False, path_type=str),
              help="RELION project for --relion (default: the folder of --output).")
@click.option("--mrc-prefix", default="", show_default=False,
              help="Folder put before <stem>.mrc in pick.star, e.g. MotionCorr/job003/movies.")
@click.option("-q", "--quiet", is_flag=True, help="No summary line.")
def star_command(labels, images, output, conf, relion, relion_project_dir, mrc_prefix, quiet):
    """Detections to a STAR file with PartiNet's rules: confidence > --conf, pixel positions
    ceil(xc·W), ceil(yc·H), diameter ceil(max(w·W, h·H)), micrograph <stem>.mrc.

    Columns _rlnMicrographName, _rlnCoordinateX, _rlnCoordinateY, _rlnDiameter (px of the
    images in --images, which PartiNet's denoise keeps at the micrograph's size and frame).
    """
    from converters.partinet import detections_to_star

    res = detections_to_star(labels, images, output, conf, relion, relion_project_dir,
                             mrc_prefix)
    if not quiet:
        extra = f"; RELION: {res.relion_files[0]}" if res.relion_files else ""
        click.echo(f"{res.particles} particles on {res.micrographs} of {res.images} images "
                   f"(conf > {conf:g}; {len(res.without_labels)} without a label file) "
                   f"-> {res.star}{extra}", err=True)


@click.command("split")
@click.option("--star", "star_path", required=True,
              type=click.Path(dir_okay=False, path_type=str),
              help="STAR file of picks: _rlnMicrographName, _rlnCoordinateX/Y (px) and "
              "_rlnDiameter (px) or --diameter.")
@click.option("--images", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Folder of the micrograph images <stem>.png/.jpg/.jpeg/.tif/.tiff/.mrc.")
@click.option("--output", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Dataset folder to write (images/, labels/, train.txt, val.txt, "
              "cryo_training.yaml).")
@click.option("--class-id", type=int, default=0, show_default=True,
              help="Class written for every particle.")
@click.option("--test-size", type=float, default=0.25, show_default=True,
              help="Fraction of micrographs for validation (rounded up; 0: all for training).")
@click.option("--seed", type=int, default=42, show_default=True,
              help="Seed of the shuffle (PartiNet's random_state).")
@click.option("--diameter", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Particle diameter in px where the STAR has no _rlnDiameter.")
@click.option("--force", is_flag=True, help="Replace --output if it exists.")
@click.option("-q", "--quiet", is_flag=True, help="No summary line.")
def split_command(star_path, images, output, class_id, test_size, seed, diameter, force, quiet):
    """A STAR file and its micrograph images to PartiNet's training dataset, split 75/25 by
    micrograph exactly as PartiNet (scikit-learn's shuffle with random_state 42).

    The layout is export yolo's (images/{train,val}, labels/{train,val}, train.txt, val.txt,
    cryo_training.yaml), for `cryoglean train dynamicdet step1 --data OUT/cryo_training.yaml`.
    """
    from converters.partinet import split_star

    res = split_star(star_path, images, output, test_size, seed, class_id, diameter, force)
    if not quiet:
        skipped = f"; {len(res.without_image)} micrograph(s) without image skipped" \
            if res.without_image else ""
        click.echo(f"{len(res.train)} training and {len(res.val)} validation micrographs, "
                   f"{res.particles} particles{skipped} -> {res.output / 'cryo_training.yaml'}",
                   err=True)
