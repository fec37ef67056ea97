"""``cryoglean evaluate``: score picks against reference picks (thin shell over evaluate.py)."""

from __future__ import annotations

from pathlib import Path

import click

COUNTED = ("truth", "picks", "union")


def run_evaluation(
    picks_path,
    truth_path,
    picks_format=None,
    truth_format=None,
    radius=None,
    radius_frac=None,
    diameter=None,
    threshold=None,
    images="truth",
    out=None,
    image_dir=None,
    split=None,
):
    """Read both sides through the format registry, evaluate, optionally write ``out``.

    Returns the :class:`~trainers.evaluate.EvalResult`. ``out`` gets ``metrics.json``,
    ``per_micrograph.csv``, ``pr_curve.csv``, ``pr.png`` and ``f1.png``. ``image_dir``:
    micrographs whose sizes a format's reader needs (``read_needs``); without it, sizes come
    from the manifest of an export that holds the labels. ``truth_path`` may be an export
    directory: its labels (of ``split``, or all) are the truth, its micrographs count, and its
    manifest's particle diameter is the default ``diameter`` (and its image sizes serve picks
    made on its images).
    """
    from converters.dataset import is_export, open_export
    from trainers.evaluate import EvaluationError, evaluate_picks
    from trainers.labels import label_micrographs, read_labels

    export = open_export(truth_path) if is_export(truth_path) else None
    if split and export is None:
        raise EvaluationError(f"{truth_path}: --split needs --truth to be an export directory "
                              "(with manifest.json)")
    if radius is None and diameter is None and export is not None:
        diameter = export.diameter_px
    if radius is None:
        if radius_frac is None or diameter is None:
            raise EvaluationError(
                "give the matching radius: --radius PX, or --radius-frac F with --diameter PX"
            )
        radius = float(radius_frac) * float(diameter)
    sizes = None
    if export is not None and image_dir is None:  # picks made on the export's images
        from trainers.labels import sizes_from_manifest

        sizes = sizes_from_manifest(export.root, levels=0)
    picks = read_labels(picks_path, picks_format, images=image_dir, image_sizes=sizes)
    if export is not None:
        truth = export.labels(split).rename(columns={"stem": "key"})
        truth["micrograph"] = truth["key"]
        truth_mics = export.micrographs(split)["stem"].tolist()
    else:
        truth = read_labels(truth_path, truth_format, images=image_dir)
        truth_mics = label_micrographs(truth_path, truth_format, labels=truth)
    if images == "truth":
        mics = truth_mics
    elif images == "picks":
        mics = label_micrographs(picks_path, picks_format, labels=picks)
    else:
        mics = sorted(set(truth_mics) | set(label_micrographs(picks_path, picks_format,
                                                                labels=picks)))
    _check_overlap(picks, truth, truth_mics, picks_path, truth_path)
    res = evaluate_picks(
        picks.drop(columns=["key"]), truth.drop(columns=["key"]), radius, threshold, mics
    )
    if out is not None:
        from trainers.plots import plot_f1, plot_pr

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(res.to_json())
        res.per_micrograph.to_csv(out / "per_micrograph.csv", index=False)
        res.curve.to_csv(out / "pr_curve.csv", index=False)
        plot_pr(res.curve, out / "pr.png", f"AUPRC {res.summary['auprc']:.3f}")
        plot_f1(res.curve, out / "f1.png", f"best F1 {res.summary['best_f1']:.3f}")
    return res


def _check_overlap(picks, truth, truth_mics, picks_path, truth_path) -> None:
    """EvaluationError when picks and reference share no micrograph (by canonical key): all-zero
    scores would look like a result (a renamed or wrong folder, picks of another dataset)."""
    from harvest.conventions import micrograph_key
    from trainers.evaluate import EvaluationError

    if not len(picks) or not (len(truth) or len(truth_mics)):
        return  # no picks (or no reference) at all: a genuine, if poor, result
    pk = sorted({micrograph_key(str(m)) for m in picks["micrograph"]})
    tk = sorted({micrograph_key(str(m)) for m in truth["micrograph"]}
                | {micrograph_key(str(m)) for m in truth_mics})
    if set(pk) & set(tk):
        return
    raise EvaluationError(
        f"nothing matched: no micrograph of the picks ({picks_path}: {len(pk)}, e.g. "
        f"{pk[0]!r}) has the name of one of the reference ({truth_path}: {len(tk)}, e.g. "
        f"{tk[0]!r}); micrographs are paired by canonical name: are both of the same "
        "micrographs?")


@click.command("evaluate", context_settings={"max_content_width": 100})
@click.option("--picks", "picks_path", required=True, type=click.Path(exists=True),
              help="Picks to score: a label file or a directory of per-micrograph label files.")
@click.option("--truth", "truth_path", required=True, type=click.Path(exists=True),
              help="Reference picks, same layout choices as --picks, or an export directory "
                   "(its labels; see --split).")
@click.option("--picks-format", default=None,
              help="Registry format of --picks (default: guessed from the file extension).")
@click.option("--truth-format", default=None,
              help="Registry format of --truth (default: guessed from the file extension; "
                   "an export's manifest names it).")
@click.option("--radius", type=float, default=None,
              help="Matching radius in px: a pick within it of a reference particle can match.")
@click.option("--radius-frac", type=float, default=None,
              help="Matching radius as a fraction of --diameter (0.5 = particle radius).")
@click.option("--diameter", type=float, default=None,
              help="Particle diameter in px (default with an export as --truth: its manifest's).")
@click.option("--threshold", type=float, default=None,
              help="Score threshold for the reported precision/recall/F1 (default: all picks).")
@click.option("--micrographs", "images", type=click.Choice(COUNTED), default="truth",
              show_default=True,
              help="Which micrographs count: those with reference label files (as Topaz's "
                   "default), those with picks, or both.")
@click.option("--images", "image_dir", default=None,
              help="Folder of the micrographs of the labels, for formats that store coordinates "
                   "relative to the image size (default: the manifest of an export that holds "
                   "the labels). truth/picks/union here mean --micrographs (earlier name).")
@click.option("--split", default=None,
              help="With --truth an export directory: only its micrographs of this split "
                   "(train or val).")
@click.option("--out", type=click.Path(), default=None,
              help="Directory for metrics.json, per_micrograph.csv, pr_curve.csv, pr.png, f1.png.")
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")
def evaluate_command(picks_path, truth_path, picks_format, truth_format, radius, radius_frac,
                     diameter, threshold, images, image_dir, split, out, as_json):
    """Precision, recall, F1, AUPRC and localisation RMSE of picks against reference picks.

    Picks are matched to reference particles per micrograph (micrographs paired by their
    canonical key) by Hungarian assignment within the radius, as Topaz does; AUPRC uses
    Topaz's definition. Pooled numbers are micro-averages over all micrographs. Both sides must
    be in pixels of the same micrographs (or voxels of the same tomograms: with z on both
    sides the distances are 3D). The matching cost is Topaz's d² − r², a true distance
    threshold r; cet_pick's own evaluation uses d² − r³, so its -r R means a distance of
    √(R³) (R = 8: 22.6 voxels).
    """
    if image_dir in COUNTED and not Path(image_dir).is_dir():
        images, image_dir = image_dir, None  # the option's earlier meaning
    if radius is not None and (radius_frac is not None or diameter is not None):
        raise click.UsageError("give either --radius or --radius-frac with --diameter, not both")
    res = run_evaluation(picks_path, truth_path, picks_format, truth_format, radius,
                         radius_frac, diameter, threshold, images, out, image_dir, split)
    if as_json:
        click.echo(res.to_json())
        return
    s = res.summary
    click.echo(
        f"micrographs {s['micrographs']}  reference {s['n_truth']}  picks {s['n_picks']}  "
        f"radius {s['radius']:g} px  ({s['averaging']})"
    )
    click.echo(
        f"precision {s['precision']:.4f}  recall {s['recall']:.4f}  F1 {s['f1']:.4f}  "
        f"AUPRC {s['auprc']:.4f}  best F1 {s['best_f1']:.4f} at score {s['best_threshold']:.4g}  "
        f"RMSE {s['rmse']:.3f} px"
    )
