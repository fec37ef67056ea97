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


def _ints(ctx, param, value):
    """'256x256x96' -> (256, 256, 96); '60,40' -> (60, 40)."""
    if value is None:
        return None
    sep, n = ("x", 3) if param.name == "tomo_size" else (",", 2)
    try:
        out = tuple(int(v) for v in str(value).lower().split(sep))
    except ValueError:
        out = ()
    if len(out) != n or min(out) < 1:
        example = "256x256x96" if n == 3 else "60,40"
        raise click.BadParameter(f"{value!r}: give {n} positive whole numbers, e.g. {example}")
    return out


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
@click.option("--tomograms", type=click.IntRange(min=1), default=None,
              help="relion50_tomo: number of tomograms [default: 1].")
@click.option("--tomo-size", callback=_ints, default=None,
              help="relion50_tomo: tomogram size NXxNYxNZ in voxels [default: 128x128x48; "
                   "256x256x96 for experiments].")
@click.option("--tomo-particles", callback=_ints, default=None,
              help="relion50_tomo: particles per tomogram of the larger and the smaller "
                   "species, LARGE,SMALL [default: 10,6].")
@click.option("--tomo-snr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="relion50_tomo: particle signal variance / noise variance over the particle "
                   "voxels [default: 0.1].")
@click.option("--tilt-range", type=click.FloatRange(min=0, max=90, min_open=True,
                                                    max_open=True), default=None,
              help="relion50_tomo: tilt range ± degrees; the missing wedge lies beyond it "
                   "[default: 60].")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def demo_data_command(directory, force, seed, n_micrographs, size, pixel_size, diameter_A,
                      particles_per_micrograph, snr, shape, versions, tomograms, tomo_size,
                      tomo_particles, tomo_snr, tilt_range, quiet):
    """Write a generated facility to DIR: simulated micrographs with known particles and the
    CryoSPARC and RELION (3.0, 3.1, 4.0, 5.0) projects that record them; with --versions
    ...,relion50_tomo also simulated tomograms (missing wedge, two particle sizes, gold and
    membranes) in a RELION 5 tomography project."""
    from harvest.synth.facility import make_facility

    nx, ny = size
    kwargs = dict(seed=seed, n_micrographs=n_micrographs, nx=nx, ny=ny, pixel_size=pixel_size,
                  diameter_A=diameter_A, particles_per_micrograph=particles_per_micrograph,
                  snr=snr, shape=shape)
    if versions is not None:
        kwargs["versions"] = versions
    tomo = {"tomograms": tomograms, "tomo_size": tomo_size, "tomo_particles": tomo_particles,
            "tomo_snr": tomo_snr, "tilt_range": tilt_range}
    tomo = {k: v for k, v in tomo.items() if v is not None}
    if tomo and "relion50_tomo" not in (versions or ()):
        raise click.UsageError(
            f"--{next(iter(tomo)).replace('_', '-')} shapes the tomograms of relion50_tomo; add "
            "it to --versions (e.g. --versions relion50,relion50_tomo)")
    kwargs.update(tomo)
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
    for t in fac.tomograms:
        click.echo(f"  tomogram:    {t.key} {t.nx}x{t.ny}x{t.nz} at {t.pixel_size:g} Å, "
                   f"{len(t.particles)} particles, {len(t.junk)} junk items (gold, membranes)")
    for name, path in fac.projects.items():
        click.echo(f"  {name:<14} {path}")
    click.echo(f"  truth:       {fac.root / 'facility.json'}")
    sys.stdout.flush()
