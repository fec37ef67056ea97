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
TOMO_PROJECT = "relion50_tomo"  # the generator's optional RELION 5 tomography project
# three small tomograms (2 to train on, 1 held out); the larger species is ~17 voxels across
DEMO_TOMOGRAMS = ["--tomograms", "3", "--tomo-size", "96x96x40", "--tomo-particles", "8,4",
                  "--tomo-snr", "1"]
TOMO_BBOX = 16
# cet_pick drops picks within 20 px of the x/y border, made for tomograms of 512 px and more; on
# the demo's 96-px tomograms that left a 56-px square (a third of the area), so most particles
# could not be picked and the heatmap's border rows decided the result. 4 px drops the border
# rows only (particles lie at least half a diameter, ~8 px, inside).
TOMO_EDGE = 4
REPORT_DIR = "report"  # the facility report's site (index.html)


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


def tomo_format() -> str:
    """The tomogram export: the 3D format whose export lists its tomograms (what the tomogram
    picker's ``--dataset`` reads, cet_pick's tables)."""
    from converters import registry

    return next(n for n in registry.names(3, "write") if registry.get(n).layout.image_lists)


def tomo_picks_format(export_format: str) -> str:
    """Picks of the tomogram picker: a 3D format keeping the score (so evaluate can sweep the
    threshold), other than the export's own."""
    from converters import registry

    return next(n for n in registry.names(3, "score") if n != export_format
                and "write" in registry.get(n).capabilities)


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
    from harvest.synth import FacilityConfig

    fac = out / "facility"
    db = out / "catalog.db"
    exports = out / "exports"
    runs = out / "runs"
    picks = out / "picks"
    steps = [
        Step("Generate a facility: simulated micrographs, a CryoSPARC and four RELION projects, "
             "and simulated tomograms in a RELION 5 tomography project",
             ["demo-data", str(fac), "--force", "--micrographs", str(DEMO_MICROGRAPHS),
              "--versions", ",".join([*FacilityConfig().versions, TOMO_PROJECT]),
              *DEMO_TOMOGRAMS, "--quiet"]),
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
        *_dynamicdet_steps(out, export, quick),
        *_tomo_steps(out, db, fac / TOMO_PROJECT, quick),
        Step("Build the facility report: projects, curation funnels, problems, training runs",
             ["report", "--db", str(db), "-o", str(out / REPORT_DIR), "--runs", str(runs),
              "--runs", str(out / "runs-tomo"), "--thumbnails", "4"]),
        Step("Write Slurm scripts for this dataset (export -> train -> pick -> evaluate)",
             ["slurm", "pipeline", "centernet", "--profile", "example", "-o",
              str(out / "slurm"), "--set", f"db={db}", "--set", f"workdir={out}"]),
    ]
    return steps


def _dynamicdet_steps(out: Path, export: str, quick: bool) -> list[Step]:
    """PartiNet's DynamicDet (tiny, CPU) on the same export as CenterNet: step1, step2, detect
    the held-out micrographs, STAR, evaluate against the same labels. CenterNet's labels carry
    no box: the boxes are the particle diameter."""
    runs, det = out / "runs-dynamicdet", out / "detect"
    common = ["--data", export, "--diameter", f"{_geometry()[0]:g}", "--project", str(runs), "--img-size", "128" if quick else "256",
              "--device", "cpu", "--workers", "0", "--batch", "2", "--quiet"]
    return [
        Step("Train PartiNet's DynamicDet (tiny) on the same export: step1, both detectors",
             ["train", "dynamicdet", "step1", *common, "--cfg", "tiny", "--epochs",
              "1" if quick else "30"]),
        Step("DynamicDet step2: the router only",
             ["train", "dynamicdet", "step2", *common, "--weight",
              str(runs / "exp" / "weights" / "last.pt"), "--epochs", "1" if quick else "5"]),
        Step("Detect particles on the held-out micrographs",
             ["detect", "--weight", str(runs / "exp2" / "weights" / "last.pt"), "--source",
              lambda: _split_images(Path(export), "val"), "--project", str(det), "--device",
              "cpu", "--img-size", "128" if quick else "256", "--conf-thres", "0.1",
              "--quiet"]),
        Step("Detections to a STAR file (PartiNet's rules)",
             [_star_command(), "--labels", str(det / "exp" / "labels"), "--images",
              lambda: _split_images(Path(export), "val"), "--output",
              str(out / "dynamicdet.star"), "--conf", "0.1"]),
        Step("Evaluate DynamicDet's picks against the same curated labels",
             ["evaluate", "--picks", str(out / "dynamicdet.star"), "--truth", export,
              "--split", "val", "--radius-frac", "0.5", "--out",
              str(out / "evaluation-dynamicdet")]),
    ]


def _star_command() -> str:
    """The name of PartiNet's ``star`` command (it shares its name with a registry format)."""
    from converters.partinet_cli import star_command

    return star_command.name


def _tomo_steps(out: Path, db: Path, project: Path, quick: bool) -> list[Step]:
    """The tomogram chain: RELION 5 picks in the catalog -> 30 % of the labels exported ->
    the tomogram picker (cet_pick / MiLoPYP) -> picks on the held-out tomogram -> evaluate."""
    fmt = tomo_format()
    picks_fmt = tomo_picks_format(fmt)
    export = out / "exports-tomo" / fmt
    runs, picks = out / "runs-tomo", out / "picks-tomo"
    held_out = export / "val" / "images"
    return [
        Step(f"Export the RELION 5 tomogram picks to {fmt} with 30 % of the labels (sparse)",
             ["export", fmt, "--db", str(db), "-o", str(export), "--project", str(project),
              "--label-fraction", "0.3", "--images", "link", "--seed", "0", "--force"]),
        Step("Train the tomogram picker briefly (CPU; the export's files are x, y, z: zxy)",
             ["train", "tomo", "--dataset", str(export), "--order", "zxy", "--bbox",
              str(TOMO_BBOX), "--num_epochs", "2" if quick else "16", "--val_interval",
              "2" if quick else "16", "--cutoff_z", "0", "--edge", str(TOMO_EDGE), "--lr", "2e-3",
              "--exp_id", "demo",
              "--output", str(runs), "--gpus", "-1", "--quiet", "--seed", "0"]),
        Step("List the held-out tomograms",
             ["tomo-files", "-d", str(held_out), "-o", "heldout", "-e", ".mrc", "-r", "zxy",
              "--inference"]),
        Step("Pick the held-out tomogram",
             ["pick", "tomo", "--test_img_txt", str(held_out / "heldout_test_imgs.txt"),
              "--load_model", str(runs / "demo" / "weights" / "last.ckpt"), "--output",
              str(picks), "--output_type", picks_fmt, "--out_thresh", "0.05", "--cutoff_z",
              "0", "--edge", str(TOMO_EDGE), "--quiet"]),
        Step("Evaluate the tomogram picks against the held-out tomogram's picks (3D)",
             ["evaluate", "--picks", str(picks / picks_fmt), "--picks-format", picks_fmt,
              "--truth", str(export), "--split", "val", "--diameter", str(TOMO_BBOX),
              "--radius-frac", "0.5", "--out", str(out / "evaluation-tomo")]),
    ]


SCORED = [("CenterNet", "evaluation"), ("DynamicDet", "evaluation-dynamicdet"),
          ("tomogram picker", "evaluation-tomo")]


def print_scores(out: Path) -> None:
    """The pickers' pooled scores side by side (each evaluation's metrics.json)."""
    import json

    click.secho("\nScores on the held-out data (pooled):", bold=True)
    click.echo(f"  {'picker':<16} {'picks':>6} {'truth':>6} {'precision':>9} {'recall':>7} "
               f"{'F1':>6} {'best F1':>8} {'AUPRC':>6}")
    for name, folder in SCORED:
        path = out / folder / "metrics.json"
        if not path.is_file():
            continue
        m = json.loads(path.read_text())["summary"]
        click.echo(f"  {name:<16} {m['n_picks']:>6} {m['n_truth']:>6} {m['precision']:>9.3f} "
                   f"{m['recall']:>7.3f} {m['f1']:>6.3f} {m['best_f1']:>8.3f} "
                   f"{m['auprc']:>6.3f}")
    if (out / "evaluation-tomo" / "metrics.json").is_file():
        click.echo("  The tomogram picker trains for seconds on 8 labels here: its score is noise "
                   "(0.0-0.4 across seeds);\n  BENCHMARKS.md (tomogram picker) has the measure.")


@click.command("demo", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("directory", required=False, default="cryoglean-demo",
                type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace DIRECTORY if it is not empty.")
@click.option("--quick", is_flag=True, help="Train for 2 epochs only (for tests).")
def demo_command(directory: Path, force: bool, quick: bool) -> None:
    """Run the whole flow on a generated facility in DIRECTORY (default ./cryoglean-demo).

    Generates CryoSPARC and RELION projects over simulated micrographs (and a RELION 5
    tomography project), crawls them into a SQLite catalog, exports curated labels to every 2D
    picker format, denoises micrographs, trains and runs the CenterNet picker and a tiny
    DynamicDet on the same export, runs the tomogram chain (30 % of the labels → tomogram
    picker → held-out tomogram), evaluates every picker, prints their scores side by side and
    writes Slurm scripts.
    Each step prints the exact cryoglean command it runs. The facility report (catalog and
    runs) is built into DIRECTORY/report; open its index.html in a browser.
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
    print_scores(out)
    click.secho(f"\nDemo finished in {time.perf_counter() - t0:.0f} s. Outputs in {out}:", bold=True)
    for name, what in [
        ("facility/", "generated CryoSPARC + RELION projects and facility.json (ground truth)"),
        ("catalog.db", "the SQLite catalog (cryoglean ls/show --db ...)"),
        ("exports/<format>/", "training sets for each picker, each with manifest.json"),
        ("partinet/denoised/", "denoised micrographs (PartiNet stage 1)"),
        ("runs/demo/", "CenterNet run: options, weights, metrics.csv, loss/PR/F1 plots"),
        ("picks/", "picks on held-out micrographs (+ PNGs with picks drawn)"),
        ("evaluation/", "precision/recall/F1/AUPRC and PR curve"),
        ("runs-dynamicdet/", "DynamicDet runs: exp (step1), exp2 (step2, the router)"),
        ("detect/", "DynamicDet detections on held-out micrographs; dynamicdet.star"),
        ("evaluation-dynamicdet/", "DynamicDet's scores"),
        ("exports-tomo/", "tomogram picks exported with 30 % of the labels"),
        ("runs-tomo/demo/", "tomogram picker run"),
        ("picks-tomo/", "picks on the held-out tomogram (+ heatmap)"),
        ("evaluation-tomo/", "the tomogram picker's scores (3D)"),
        (f"{REPORT_DIR}/", "the facility report: projects, funnels, problems, runs"),
        ("slurm/", "Slurm scripts and submit.sh (bash submit.sh on a cluster)"),
    ]:
        click.echo(f"  {name:<22} {what}")
    click.secho(f"\nThe report: open {(out / REPORT_DIR / 'index.html').as_uri()} in a browser.",
                bold=True)
