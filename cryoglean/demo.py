"""``cryoglean demo``: the whole flow on a generated facility, on one machine.

The demo pretends nothing: every step is a real ``cryoglean`` command, printed before it runs
(so the same lines can be typed by hand), run in-process through the same entry point as the
shell, and checked for its exit code.
"""

from __future__ import annotations

import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import click

DEMO_MICROGRAPHS = 12  # 10 to train on, 2 held out (the export's default 20% split)


def two_d_formats() -> list[str]:
    """Formats exported by the demo: every writable 2D format of the registry (tomogram-only
    formats need tomograms)."""
    from converters import registry

    return registry.names(2, "write")


def _geometry() -> tuple[float, int]:
    """Particle diameter in pixels of the generated micrographs and their width (the THI export
    keeps them at their size: EPicker's view only shrinks micrographs wider than 1024 px)."""
    from harvest.synth import FacilityConfig

    cfg = FacilityConfig()
    return cfg.diameter_A / cfg.pixel_size, cfg.nx


@dataclass
class Step:
    """One command; an argument may be a function, called when the step runs (a path that an
    earlier step's output names, e.g. an export's image folder from its manifest)."""

    title: str
    args: list
    ok_codes: tuple[int, ...] = (0,)


def _split_images(export: Path, split: str) -> str:
    """The folder of an export's images of one split (from its manifest)."""
    from converters.dataset import open_export

    images = [p for p in open_export(export).micrographs(split)["image"] if p]
    return str(Path(images[0]).parent)


def _run(step: Step, index: int, total: int) -> float:
    from cryoglean.cli import main

    args = [a() if callable(a) else a for a in step.args]
    click.secho(f"\n[{index}/{total}] {step.title}", bold=True)
    click.echo("$ cryoglean " + " ".join(shlex.quote(a) for a in args))
    t0 = time.perf_counter()
    rc = main(args)
    dt = time.perf_counter() - t0
    if rc not in step.ok_codes:
        raise click.ClickException(
            f"demo step failed (exit {rc}): cryoglean {' '.join(args)}"
        )
    click.secho(f"    done in {dt:.1f} s", fg="green")
    return dt


def build_steps(out: Path, quick: bool) -> list[Step]:
    fac = out / "facility"
    db = out / "catalog.db"
    exports = out / "exports"
    runs = out / "runs"
    picks = out / "picks"
    steps = [
        Step("Generate a facility: simulated micrographs, a CryoSPARC and four RELION projects",
             ["demo-data", str(fac), "--force", "--micrographs", str(DEMO_MICROGRAPHS)]),
        Step("Crawl the facility into the catalog (read-only, incremental)",
             ["crawl", str(fac), "--db", str(db)]),
        Step("Crawl again: nothing changed, nothing is re-read",
             ["crawl", str(fac), "--db", str(db)]),
        Step("List the catalog", ["ls", "--db", str(db)]),
        Step("Show the CryoSPARC project: jobs, stages, counts per micrograph",
             ["show", "cryoglean demo", "--db", str(db)]),
    ]
    for fmt in two_d_formats():
        steps.append(Step(
            f"Export the most curated particles to {fmt}",
            ["export", fmt, "--db", str(db), "-o", str(exports / fmt), "--project",
             str(fac / "cryosparc" / "CS-cryoglean-demo"), "--seed", "0", "--force"],
        ))
    # the picker trains on the export of its default format: the manifest gives the split,
    # the labels' format and the particle diameter (nothing computed here)
    from trainers.pickers import get as picker

    fmt = picker("centernet").default_format()
    export = str(exports / fmt)
    steps.append(Step(
        "Denoise the validation micrographs with PartiNet's stage 1",
        ["denoise", "--source", lambda: _split_images(exports / fmt, "val"),
         "--project", str(out / "partinet"), "--num_workers", "2"],
    ))
    epochs = "2" if quick else "40"
    net_width = _geometry()[1] // 2  # the network sees them at half size: faster on a CPU
    steps += [
        Step(f"Train the CenterNet picker briefly on the {fmt} export (CPU)",
             ["train", "centernet", "--dataset", export, "--mode", "particle",
              "--exp_id", "demo", "--output", str(runs), "--num_epoch", epochs,
              "--batch_size", "2", "--input_width", str(net_width), "--lr", "5e-4",
              "--gpus", "-1", "--seed", "0"]),
        Step("Pick the held-out micrographs",
             ["pick", "centernet", "--dataset", export, "--split", "val",
              "--load_model", str(runs / "demo" / "weights" / "last.ckpt"),
              "--output", str(picks), "--output_type", fmt, "--gpus", "-1", "--visual"]),
        Step("Evaluate the picks against the curated labels",
             ["evaluate", "--picks", str(picks), "--picks-format", fmt, "--truth", export,
              "--split", "val", "--radius-frac", "0.5", "--out", str(out / "evaluation")]),
        Step("Write Slurm scripts for this dataset (export -> train -> pick -> evaluate)",
             ["slurm", "pipeline", "centernet", "--profile", "example", "-o",
              str(out / "slurm"), "--set", f"db={db}", "--set", f"workdir={out}"]),
    ]
    return steps


@click.command("demo", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("directory", required=False, default="cryoglean-demo",
                type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace DIRECTORY if it is not empty.")
@click.option("--quick", is_flag=True, help="Train for 2 epochs only (for tests).")
def demo_command(directory: Path, force: bool, quick: bool) -> None:
    """Run the whole flow on a generated facility in DIRECTORY (default ./cryoglean-demo).

    Generates CryoSPARC and RELION projects over simulated micrographs, crawls them into a
    SQLite catalog, exports curated labels to every 2D picker format, denoises micrographs,
    trains and runs the CenterNet picker, evaluates its picks, and writes Slurm scripts.
    Each step prints the exact cryoglean command it runs.
    """
    out = directory.resolve()
    if out.exists() and any(out.iterdir()):
        if not force:
            raise click.UsageError(f"{out} is not empty; use --force to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    steps = build_steps(out, quick)
    t0 = time.perf_counter()
    for i, step in enumerate(steps, 1):
        _run(step, i, len(steps))
    click.secho(f"\nDemo finished in {time.perf_counter() - t0:.0f} s. Outputs in {out}:", bold=True)
    for name, what in [
        ("facility/", "generated CryoSPARC + RELION projects and facility.json (ground truth)"),
        ("catalog.db", "the SQLite catalog (cryoglean ls/show --db ...)"),
        ("exports/<format>/", "training sets for each picker, each with manifest.json"),
        ("partinet/denoised/", "denoised micrographs (PartiNet stage 1)"),
        ("runs/demo/", "CenterNet run: options, weights, metrics.csv, loss/PR/F1 plots"),
        ("picks/", "picks on held-out micrographs (+ PNGs with picks drawn)"),
        ("evaluation/", "precision/recall/F1/AUPRC and PR curve"),
        ("slurm/", "Slurm scripts and submit.sh (bash submit.sh on a cluster)"),
    ]:
        click.echo(f"  {name:<22} {what}")
