"""Training on an export opened by its manifest (no --particle_size, --label_type or
validation folder), and normalised labels (a format whose reader needs image sizes) read by
``train`` and ``evaluate``."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

pytest.importorskip("torch")
pytest.importorskip("pytorch_lightning")

from test_trainers_helpers import one_thread  # noqa: E402, F401

TINY = ["--width", "4", "--head_conv", "8", "--input_width", "288", "--crop", "96",
        "--batch_size", "2", "--gpus", "-1", "--quiet", "--fast_dev_run", "--mode", "particle"]


def _needs_sizes():
    """Registry formats whose reader needs image sizes, and plain per-micrograph 2D ones."""
    from converters import registry

    names = registry.names(2)
    sized = [n for n in names if "image_size" in registry.get(n).read_needs]
    plain = [n for n in names if not registry.get(n).read_needs
             and "per_micrograph" in registry.get(n).capabilities
             and "write" in registry.get(n).capabilities]
    return sized, plain


@pytest.fixture(scope="module")
def exports(facility, tmp_path_factory):
    """The CryoSPARC project exported to a format that needs image sizes and to a plain one."""
    from converters import export as ex
    from converters.select import SelectionOptions
    from harvest.crawl import crawl

    sized, plain = _needs_sizes()
    if not sized:
        pytest.skip("no registry format needs image sizes")
    root = tmp_path_factory.mktemp("trainer_exports")
    crawl([facility.root], root / "c.db", progress=False)
    sel = SelectionOptions(projects=(str(facility.root / "cryosparc" / "CS-cryoglean-demo"),))
    out = {}
    for kind, fmt in (("sized", sized[0]), ("plain", plain[0])):
        ex.export(root / "c.db", fmt, root / fmt, ex.ExportOptions(selection=sel, seed=0))
        out[kind] = (fmt, root / fmt)
    return out


@pytest.mark.parametrize("kind", ["sized", "plain"])
def test_from_export_reads_manifest_split_and_labels(exports, kind):
    from converters.dataset import open_export
    from trainers.core.dataset import from_export

    fmt, path = exports[kind]
    ds = open_export(path)
    records, src = from_export(path)
    assert src.kind == "export" and src.format == fmt and src.dims == 2
    assert src.diameter_px == pytest.approx(ds.diameter_px)
    mics = ds.micrographs()
    assert sorted(r.key for r in records) == sorted(mics["key"])
    assert {r.split for r in records} == set(mics["split"])
    n_labels = len(ds.labels())
    assert sum(len(r.labels) for r in records) == n_labels > 0


@pytest.mark.parametrize("kind", ["sized", "plain"])
def test_train_on_export_needs_no_size_type_or_val_folder(exports, kind, tmp_path):
    from converters.dataset import open_export
    from trainers.cli import train_group

    fmt, path = exports[kind]
    r = CliRunner().invoke(train_group, ["centernet", "--dataset", str(path), "--exp_id", "e",
                                         "--output", str(tmp_path), *TINY],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    import yaml

    run = tmp_path / "e"
    opts = yaml.safe_load((run / "options.yaml").read_text())
    ds = open_export(path)
    scale = 288 / float(ds.micrographs()["out_nx"].median())
    assert opts["particle_size"] == pytest.approx(ds.diameter_px * scale)
    assert opts["label_type"] == fmt
    split = json.loads((run / "split.json").read_text())
    mics = ds.micrographs()
    assert split["train"] == sorted(mics[mics["split"] == "train"]["key"])
    assert split["val"] == sorted(mics[mics["split"] == "val"]["key"])
    assert (run / "weights" / "last.ckpt").is_file()
    # pick the export's validation micrographs and score them against its labels
    from trainers.cli import pick_group
    from trainers.evaluate_cli import run_evaluation

    picks = tmp_path / "picks"
    r = CliRunner().invoke(pick_group, ["centernet", "--dataset", str(path), "--split", "val",
                                        "--load_model", str(run / "weights" / "last.ckpt"),
                                        "--output", str(picks), "--output_type", fmt,
                                        "--vis_thresh", "0"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    val = sorted(mics[mics["split"] == "val"]["stem"])
    assert sorted(p.stem for p in picks.iterdir()) == val
    res = run_evaluation(picks, path, fmt, radius_frac=0.5, split="val")
    assert res.summary["radius"] == pytest.approx(0.5 * ds.diameter_px)
    assert res.summary["micrographs"] == len(val)
    assert res.summary["n_truth"] == len(ds.labels("val"))


def test_dataset_and_folders_are_exclusive(exports, tmp_path):
    from trainers.centernet.options import TrainOptions
    from trainers.centernet.train import train_centernet

    _, path = exports["plain"]
    with pytest.raises(ValueError, match="not both"):
        train_centernet(TrainOptions(dataset=str(path), data=str(path), exp_id="x",
                                     output=str(tmp_path)))
    with pytest.raises(ValueError, match="--dataset"):
        train_centernet(TrainOptions(exp_id="x", output=str(tmp_path)))


def _label_dir(path, split="train"):
    """(label folder, image folder) of one split of an export (found, not assumed)."""
    from pathlib import Path

    from converters import registry
    from converters.dataset import open_export

    ds = open_export(path)
    mics = ds.micrographs(split)
    stem, img = mics["stem"].iloc[0], Path(mics["image"].iloc[0])
    exts = registry.get(ds.format).extensions
    files = [p for p in path.rglob(f"{stem}.*") if p.suffix in exts]
    return files[0].parent, img.parent


def test_sized_labels_in_folders_read_by_train_and_evaluate(exports, tmp_path, capsys):
    from trainers.cli import train_group
    from trainers.evaluate_cli import run_evaluation
    from trainers.labels import LabelError, read_labels

    fmt, path = exports["sized"]
    labels, images = _label_dir(path)
    # train from folders: image sizes from the micrographs in --data
    r = CliRunner().invoke(train_group, ["centernet", "--data", str(images), "--label",
                                         str(labels), "--label_type", fmt, "--exp_id", "f",
                                         "--output", str(tmp_path), "--particle_size", "24",
                                         *TINY], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    # evaluate: sizes from the export's manifest around the labels, or from --images
    res = run_evaluation(labels, labels, fmt, fmt, radius=5)
    assert res.summary["tp"] == res.summary["n_truth"] > 0
    copy = tmp_path / "elsewhere"
    copy.mkdir()
    for f in labels.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    res2 = run_evaluation(copy, labels, fmt, fmt, radius=5, image_dir=images)
    assert res2.summary["f1"] == 1.0
    with pytest.raises(LabelError, match="--images"):
        read_labels(copy, fmt)
    from cryoglean.cli import main

    assert main(["evaluate", "--picks", str(copy), "--truth", str(labels), "--picks-format",
                 fmt, "--truth-format", fmt, "--radius", "5"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--images" in err[0], err
