"""``cryoglean denoise``: PartiNet's denoise stage (thin shell over converters.denoise)."""

from __future__ import annotations

import sys

import click

OUTPUT_FORMATS = ("png", "jpg", "mrc")  # converters.denoise.OUTPUT_FORMATS (kept light here)


def _check_shard(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    from converters.denoise import parse_shard

    try:
        parse_shard(value)
    except ValueError as exc:
        reason = str(exc).split(": ", 1)[-1]
        raise click.BadParameter(f"{value!r}: {reason}", ctx=ctx, param=param) from None
    return value


@click.command("denoise")
@click.option(
    "--source",
    required=True,
    type=click.Path(file_okay=False, path_type=str),
    help="Directory of micrographs (.mrc/.mrcs, .png, .jpg, .tif); not searched recursively.",
)
@click.option(
    "--project",
    required=True,
    type=click.Path(file_okay=False, path_type=str),
    help="Project directory: writes PROJECT/denoised/<stem>.<ext> and PROJECT/partinet_denoise.log.",
)
@click.option(
    "--num_workers",
    "--num-workers",
    "num_workers",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes (capped at the CPUs available; default: half of them, as PartiNet).",
)
@click.option(
    "--img_format",
    "--img-format",
    "img_format",
    type=click.Choice(OUTPUT_FORMATS),
    default="png",
    show_default=True,
    help="Output format: png (lossless), jpg, or mrc (8-bit mode 0 with IMOD's unsigned-bytes "
    "stamp, voxel size kept; mrcfile itself reads mode 0 as int8).",
)
@click.option(
    "--legacy-flip",
    is_flag=True,
    help="Flip rows like PartiNet 1.0.0 (its output was y-flipped); off = micrograph frame.",
)
@click.option(
    "--shard",
    default=None,
    callback=_check_shard,
    metavar="K/N",
    help="Process only the K-th (0-based) of N contiguous chunks of the sorted file list "
    "(Slurm arrays: --shard $SLURM_ARRAY_TASK_ID/N).",
)
@click.option("--force", is_flag=True, help="Denoise again even where the output exists.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary.")
@click.pass_context
def denoise_command(
    ctx: click.Context,
    source: str,
    project: str,
    num_workers: int | None,
    img_format: str,
    legacy_flip: bool,
    shard: str | None,
    force: bool,
    quiet: bool,
) -> None:
    """Denoise micrographs with the PartiNet/CryoSegNet filter (blur, z-score, non-local means,
    Wiener, CLAHE, guided filter) into 8-bit images of the same size and pixel frame.

    Exit 0 when every selected micrograph was written or already there, 1 when any failed (the
    others are still written; the failures are listed and logged).
    """
    from converters.denoise import denoise_directory

    summary = denoise_directory(
        source,
        project,
        num_workers=num_workers,
        img_format=img_format,
        legacy_flip=legacy_flip,
        shard=shard,
        progress=not quiet,
        force=force,
    )

    if not quiet:
        done = len(summary.processed)
        per = f", {summary.seconds / done:.2f} s per micrograph" if done else ""
        click.echo(
            f"denoised {done}, skipped {len(summary.skipped)} (exist), failed "
            f"{len(summary.failed)} of {summary.selected} in {summary.seconds:.1f} s{per} "
            f"with {summary.workers} worker(s); log: {summary.log_file}",
            err=True,
        )
    for src, err in summary.failed:
        click.echo(f"failed: {src}: {err}", err=True)
    if summary.failed:
        sys.stderr.flush()
        ctx.exit(1)
