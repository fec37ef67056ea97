"""``cryoglean demo-data DIR``: write a generated facility (a thin shell over make_facility)."""

from __future__ import annotations

import sys

import click

# Light import only: the config module pulls in nothing heavy.
from harvest.synth.config import ALL_VERSIONS, FacilityConfig


def _versions(ctx, param, value: str | None):
    if value is None:
        return None
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = [v for v in names if v not in ALL_VERSIONS]
    if unknown or not names:
        raise click.BadParameter(
            f"unknown version(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {','.join(ALL_VERSIONS)}"
        )
    return names


def _size(ctx, param, value):
    """'512' -> (512, 512); '576x448' -> (576, 448)."""
    parts = str(value).lower().split("x")
    try:
        nx, ny = (int(parts[0]), int(parts[0])) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
    except (ValueError, IndexError):
        raise click.BadParameter(f"{value!r}: give NX or NXxNY in pixels, e.g. 576x448") from None
    if len(parts) > 2 or nx < 16 or ny < 16:
        raise click.BadParameter(f"{value!r}: sizes must be whole numbers of at least 16 pixels")
    return nx, ny


@click.command("demo-data")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Replace a generated facility in a non-empty DIR.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--micrographs", "n_micrographs", type=click.IntRange(min=1), default=6,
              show_default=True, help="Number of micrographs.")
@click.option("--size", "size", callback=_size, default="576x448", show_default=True,
              help="Micrograph size in pixels: NX (square) or NXxNY.")
@click.option("--pixel-size", type=click.FloatRange(min=0, min_open=True), default=1.5,
              show_default=True, help="Micrograph pixel size (Å).")
@click.option("--diameter", "diameter_A", type=click.FloatRange(min=0, min_open=True),
              default=80.0, show_default=True, help="Particle diameter (Å).")
@click.option("--particles", "particles_per_micrograph", type=click.IntRange(min=1), default=20,
              show_default=True, help="Particles per micrograph.")
@click.option("--snr", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True,
              help="Particle signal variance / noise variance over the particle pixels.")
@click.option("--shape", type=click.Choice(["globular", "elongated", "ring"]),
              default="globular", show_default=True, help="Density shape of the particle.")
@click.option("--versions", callback=_versions, default=None,
              help=f"Comma-separated projects to write [default: "
                   f"{','.join(FacilityConfig().versions)}; also: relion50_tomo].")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def demo_data_command(directory, force, seed, n_micrographs, size, pixel_size, diameter_A,
                      particles_per_micrograph, snr, shape, versions, quiet):
    """Write a generated facility to DIR: simulated micrographs with known particles and the
    CryoSPARC and RELION (3.0, 3.1, 4.0, 5.0) projects that record them."""
    from harvest.synth.facility import make_facility

    nx, ny = size
    kwargs = dict(seed=seed, n_micrographs=n_micrographs, nx=nx, ny=ny, pixel_size=pixel_size,
                  diameter_A=diameter_A, particles_per_micrograph=particles_per_micrograph,
                  snr=snr, shape=shape)
    if versions is not None:
        kwargs["versions"] = versions
    try:
        config = FacilityConfig(**kwargs).validate()
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    try:
        fac = make_facility(directory, config, force=force, progress=not quiet)
    except FileExistsError as e:
        raise click.UsageError(str(e)) from None
    n_particles = sum(len(m.particles) for m in fac.micrographs)
    n_junk = sum(len(m.junk) for m in fac.micrographs)
    click.echo(f"facility: {fac.root}")
    click.echo(f"  micrographs: {len(fac.micrographs)} x {config.nx}x{config.ny} px at "
               f"{config.pixel_size} Å/px in {fac.root / 'micrographs'}")
    click.echo(f"  particles:   {n_particles} true ({config.diameter_A:g} Å, SNR {config.snr:g}),"
               f" {n_junk} junk items")
    for name, path in fac.projects.items():
        click.echo(f"  {name:<14} {path}")
    click.echo(f"  truth:       {fac.root / 'facility.json'}")
    sys.stdout.flush()
