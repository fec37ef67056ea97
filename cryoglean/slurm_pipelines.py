"""The pipelines of ``cryoglean slurm pipeline NAME``: which templates run in which order, with
which values and dependencies (afterok), for each picker's chain. :mod:`cryoglean.slurm` renders
and submits them; a new pipeline is one ``_NAME_steps`` function and one :data:`PIPELINES` line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryoglean.slurm_profiles import SlurmConfigError


@dataclass
class PipelineStep:
    name: str  # file stem, e.g. "02-train"
    template: str
    values: dict[str, Any]
    after: list[str] = field(default_factory=list)  # names of steps this one waits for (afterok)


def _workdir_values(values: dict[str, Any], pipeline: str, required: list[str]) -> dict[str, Any]:
    missing = [k for k in required if not values.get(k)]
    if missing:
        raise SlurmConfigError(
            f"pipeline {pipeline} needs " + ", ".join(f"--set {k}=..." for k in missing)
        )
    return values


def _centernet_steps(v: dict[str, Any]) -> list[PipelineStep]:
    """[crawl] -> export thi -> train -> pick (array) -> evaluate, inside ``workdir``."""
    _workdir_values(v, "centernet", ["db", "workdir"])
    w = Path(str(v["workdir"]))
    export_dir = w / "export-thi"
    steps: list[PipelineStep] = []
    if v.get("roots"):
        steps.append(PipelineStep("01-crawl", "crawl", {"roots": v["roots"], "db": v["db"]}))
    export_values = {"db": v["db"], "format": "thi", "out": str(export_dir)}
    if v.get("project"):
        export_values["project"] = v["project"]
    steps.append(PipelineStep("02-export", "export", export_values,
                              after=[s.name for s in steps]))
    steps.append(PipelineStep("03-train", "train_centernet", {
        "data": str(export_dir / "train" / "images"),
        "label": str(export_dir / "train" / "labels"),
        "label_type": "thi",
        "exp_id": v.get("exp_id", "centernet"),
        "output": str(w / "runs"),
        "num_epoch": v.get("num_epoch", 140),
        "batch_size": v.get("batch_size", 4),
        **({"extra": v["train_extra"]} if v.get("train_extra") else {}),
    }, after=["02-export"]))
    run_dir = w / "runs" / v.get("exp_id", "centernet")
    steps.append(PipelineStep("04-pick", "pick_centernet", {
        "data": str(export_dir / "val" / "images"),
        "model": str(run_dir / "weights" / "last.ckpt"),
        "output": str(w / "picks"),
        "output_type": "thi",
        "shards": v.get("shards", 4),
        **_threshold(v, run_dir),
    }, after=["03-train"]))
    steps.append(PipelineStep("05-evaluate", "evaluate", {
        "picks": str(w / "picks"),
        "truth": str(export_dir / "val" / "labels"),
        "format": "thi",
        **_diameter(v, export_dir),
        "out": str(w / "evaluation"),
    }, after=["04-pick"]))
    return steps


def _given(v: dict[str, Any], key: str) -> bool:
    return v.get(key) not in (None, "")


def _threshold(v: dict[str, Any], run_dir: Path, option: str = "vis_thresh",
               default: Any = None) -> dict[str, Any]:
    """The pick job's threshold (its template value ``option``): ``--set threshold=X`` as
    given, else the one the trained run chose (its val_metrics.json, read when the job runs),
    with ``default`` (the template's own when None) where the run has none."""
    if _given(v, "threshold"):
        return {option: v["threshold"]}
    return {"threshold_from": str(run_dir), **({option: default} if default is not None else {})}


def _diameter(v: dict[str, Any], export_dir: Path) -> dict[str, Any]:
    """The evaluate job's particle diameter: ``--set diameter=PX`` as given, else the one the
    export's manifest records (read when the job runs)."""
    if _given(v, "diameter"):
        return {"diameter": v["diameter"]}
    return {"diameter_from": str(export_dir)}


def _partinet_steps(v: dict[str, Any]) -> list[PipelineStep]:
    """PartiNet through its container: denoise -> detect -> star, inside ``workdir``."""
    _workdir_values(v, "partinet", ["source", "workdir", "weight"])
    w = str(v["workdir"])
    return [
        PipelineStep("01-denoise", "partinet_denoise", {"source": v["source"], "project": w}),
        PipelineStep("02-detect", "partinet_detect", {
            "weight": v["weight"], "source": str(Path(w) / "denoised"), "project": w,
            "conf_thres": v.get("conf_thres", 0.1), "iou_thres": v.get("iou_thres", 0.2),
        }, after=["01-denoise"]),
        PipelineStep("03-star", "partinet_star", {
            "labels": str(Path(w) / "exp" / "labels"), "images": str(Path(w) / "denoised"),
            "output": str(Path(w) / "partinet_picks.star"), "conf": v.get("conf", 0.1),
        }, after=["02-detect"]),
    ]


def _dynamicdet_steps(v: dict[str, Any]) -> list[PipelineStep]:
    """[crawl] -> export yolo -> train step1 -> step2 -> detect (array) -> star -> evaluate in
    ``workdir``; the training steps are two jobs (afterok), so step 2 can be resubmitted alone;
    each checks that its run folder (``train/exp``, ``train/exp2``: PartiNet's numbering) is free."""
    _workdir_values(v, "dynamicdet", ["db", "workdir"])
    w = Path(str(v["workdir"]))
    export_dir = w / "export-yolo"
    train_dir = w / "train"
    val_images, steps = str(export_dir / "images" / "val"), []
    if v.get("roots"):
        steps.append(PipelineStep("01-crawl", "crawl", {"roots": v["roots"], "db": v["db"]}))
    export_values = {"db": v["db"], "format": "yolo", "out": str(export_dir)}
    if v.get("project"):
        export_values["project"] = v["project"]
    if v.get("export_extra"):
        export_values["extra"] = v["export_extra"]
    steps.append(PipelineStep("02-export", "export", export_values,
                              after=[s.name for s in steps]))
    common = {"data": str(export_dir / "cryo_training.yaml"), "project": str(train_dir),
              "img_size": v.get("img_size", 1280)}
    steps.append(PipelineStep("03-train-step1", "train_dynamicdet", {
        **common, "step": "step1", "epochs": v.get("epochs", 300), "batch": v.get("batch", 16),
        **({"weight": v["weight"]} if v.get("weight") else {}),
        **({"cfg": v["cfg"]} if v.get("cfg") else {}),
        **({"extra": v["train_extra"]} if v.get("train_extra") else {}),
    }, after=["02-export"]))
    steps.append(PipelineStep("04-train-step2", "train_dynamicdet", {
        **common, "step": "step2", "epochs2": v.get("epochs2", 10),
        "batch2": v.get("batch2", 16),
    }, after=["03-train-step1"]))
    # detect's --conf-thres: the step-2 run's best-F1 confidence (its validation picks are
    # routed with the run's dy_thres, 0.5 unless set, as detect's default route), conf_thres
    # where the run has none; --set threshold=X fixes it
    detect = {"weight": str(train_dir / "exp2" / "weights" / "last.pt"), "source": val_images,
              "project": str(w / "detect"), "shards": v.get("shards", 4),
              **_threshold(v, train_dir / "exp2", "conf_thres", v.get("conf_thres", 0.1)),
              "iou_thres": v.get("iou_thres", 0.2), "img_size": v.get("img_size", 1280)}
    for key in ("dy_thres", "easy_fraction", "detect_extra"):
        if v.get(key) not in (None, ""):
            detect["extra" if key == "detect_extra" else key] = v[key]
    steps.append(PipelineStep("05-detect", "detect_dynamicdet", detect, after=["04-train-step2"]))
    steps.append(PipelineStep("06-star", "star", {
        "labels": str(w / "detect" / "exp" / "labels"), "images": val_images,
        # detect has applied the threshold; star filters again only with --set conf=X
        "output": str(w / "picks.star"), "conf": v.get("conf", 0),
    }, after=["05-detect"]))
    steps.append(PipelineStep("07-evaluate", "evaluate", {
        "picks": str(w / "picks.star"), "picks_format": "star",
        "truth": str(export_dir / "labels" / "val"), "truth_format": "yolo",
        **_diameter(v, export_dir), "out": str(w / "evaluation"),
    }, after=["06-star"]))
    return steps


def _tomo_steps(v: dict[str, Any]) -> list[PipelineStep]:
    """[crawl] -> export cetpick [--label-fraction] -> tomo-files (the held-out tomograms'
    list) and train tomo -> pick tomo (array over tomograms) -> evaluate, inside ``workdir``.

    The export's tables hold x, y, z of the tomogram files, which the picker reads with
    ``--order zxy``; picks come back as IMOD points per tomogram (array tasks write distinct
    files) in the same frame, scored against the export's validation labels."""
    _workdir_values(v, "tomo", ["db", "workdir"])
    w = Path(str(v["workdir"]))
    export_dir = w / "export-cetpick"
    exp_id = v.get("exp_id", "tomo")
    bbox = v.get("bbox", 16)
    steps: list[PipelineStep] = []
    if v.get("roots"):
        steps.append(PipelineStep("01-crawl", "crawl", {"roots": v["roots"], "db": v["db"]}))
    export_values: dict[str, Any] = {"db": v["db"], "format": "cetpick", "out": str(export_dir)}
    if v.get("project"):
        export_values["project"] = v["project"]
    if v.get("label_fraction") not in (None, ""):
        export_values["extra"] = ["--label-fraction", str(v["label_fraction"])]
    steps.append(PipelineStep("02-export", "export", export_values,
                              after=[s.name for s in steps]))
    val_images = export_dir / "val" / "images"
    steps.append(PipelineStep("03-files", "tomo_files", {
        "dir": str(val_images), "name": "heldout", "ext": ".mrc", "order": "zxy",
        "inference": True,
    }, after=["02-export"]))
    steps.append(PipelineStep("04-train", "train_tomo", {
        "train_img_txt": str(export_dir / "train" / "images.txt"),
        "train_coord_txt": str(export_dir / "train" / "labels" / "particles.txt"),
        "val_img_txt": str(export_dir / "val" / "images.txt"),
        "val_coord_txt": str(export_dir / "val" / "labels" / "particles.txt"),
        "order": "zxy", "exp_id": exp_id, "output": str(w / "runs"), "bbox": bbox,
        "num_epochs": v.get("num_epochs", 10), "lr": v.get("lr", 0.0005),
        "K": v.get("K", 900),
        **({"extra": v["train_extra"]} if v.get("train_extra") else {}),
    }, after=["02-export"]))
    steps.append(PipelineStep("05-pick", "pick_tomo", {
        "test_img_txt": str(val_images / "heldout_test_imgs.txt"),
        "model": str(w / "runs" / exp_id / "weights" / "last.ckpt"),
        "output": str(w / "picks"), "output_type": "imod", "K": v.get("K", 900),
        "shards": v.get("shards", 4),
        # the run's best-F1 heatmap score (validation tomograms), out_thresh where it has none
        **_threshold(v, w / "runs" / exp_id, "out_thresh", v.get("out_thresh", 0.2)),
    }, after=["03-files", "04-train"]))
    steps.append(PipelineStep("06-evaluate", "evaluate", {
        "picks": str(w / "picks" / "imod"), "format": "imod",
        "truth": str(export_dir / "val" / "labels"), "truth_format": "cetpick",
        "diameter": bbox, "out": str(w / "evaluation"),
    }, after=["05-pick"]))
    return steps


PIPELINES = {
    "centernet": (_centernet_steps, "[crawl] -> export thi -> train centernet -> pick (array) -> evaluate; "
                  "values: db, workdir, [roots, project, exp_id, num_epoch, batch_size, shards, threshold, "
                  "diameter, train_extra]; threshold: the run's best-F1 one, diameter: the "
                  "export manifest's, unless given"),
    "dynamicdet": (_dynamicdet_steps, "[crawl] -> export yolo -> train dynamicdet step1 -> step2 -> "
                   "detect (array) -> star -> evaluate; values: db, workdir, [roots, project, "
                   "weight, epochs, epochs2, batch, batch2, img_size, cfg, shards, conf_thres, "
                   "iou_thres, dy_thres, easy_fraction, conf, threshold, diameter, "
                   "export_extra, train_extra, detect_extra]; threshold (detect's "
                   "--conf-thres): the step-2 run's best-F1 one (conf_thres where it has none), "
                   "diameter: the export manifest's, unless given"),
    "tomo": (_tomo_steps, "[crawl] -> export cetpick -> tomo-files + train tomo -> pick tomo "
             "(array over tomograms) -> evaluate; values: db, workdir, [roots, project, "
             "label_fraction, exp_id, bbox, num_epochs, lr, K, out_thresh, threshold, shards, "
             "train_extra]; threshold (pick's --out_thresh): the run's best-F1 one (out_thresh "
             "where it has none) unless given"),
    "partinet": (_partinet_steps, "PartiNet container: denoise -> detect -> star; "
                 "values: source, workdir, weight, [conf_thres, iou_thres, conf]"),
}
