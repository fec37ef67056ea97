"""DynamicDet's declaration: PartiNet's ``train step1|step2`` and ``detect`` options (names as
PartiNet spells them, ``--img-size`` with a dash on the command line), the ``pick`` options of
the shared ``cryoglean pick`` and the entry points, listed in :mod:`trainers.pickers`."""

from __future__ import annotations

from dataclasses import dataclass

from trainers.core import options as core
from trainers.core.options import opt

SIZE_NAMES = ("tiny", "yolov7", "w6")


@dataclass
class Step1Options(core._Options):
    """``cryoglean train dynamicdet step1`` (PartiNet's ``partinet train step1``)."""

    data: str = opt("", "PartiNet's cryo_training.yaml (as written by cryoglean export / "
                    "split: train/val image lists, labels beside in labels/), or an export "
                    "directory (its manifest.json).", required=True)
    project: str = opt("runs/train", "Folder of runs; each run goes to PROJECT/NAME, "
                       "NAME2, … as PartiNet's.")
    name: str = opt("exp", "Run name under --project (numbered when it exists).")
    weight: str | None = opt(None, "Checkpoint to start from (a previous run's "
                             "weights/best.pt or last.pt); its model size wins over --cfg.")
    cfg: str = opt("w6", "Model size: tiny (CPU tests, demo), yolov7 (P3–P5, 640 px) or w6 "
                   "(P3–P6, 1280 px, PartiNet's default); or a run's cfg.yaml.")
    epochs: int = opt(300, "Training epochs (PartiNet: 300; ~100 from public weights).", min=1)
    batch: int = opt(16, "Training views per step and device.", min=1)
    img_size: int = opt(1280, "Micrographs are letterboxed so their long side is this many "
                        "px (a multiple of 64) before the network.", min=64)
    device: str = opt("", "GPU ids, e.g. 0 or 0,1 (several = DDP), or cpu. Default: GPU 0 "
                      "when present.")
    workers: int = opt(8, "Data-loading worker processes.", min=0)
    train_size: int | None = opt(None, "Side of the square training views in network px "
                                 "(default --img-size; smaller is faster on CPUs).", min=32)
    repeat: int = opt(1, "Random views per training micrograph per epoch.", min=1)
    lr: float = opt(1e-3, "AdamW learning rate.", min=0, min_open=True)
    weight_decay: float = opt(5e-4, "AdamW weight decay.", min=0)
    mosaic: float = opt(0.5, "Probability that a training view is a 2×2 mosaic of four "
                        "micrographs.", min=0, max=1)
    scale: float = opt(0.25, "Scale jitter of training views: a factor in [1 − s, 1 + s].", min=0, max=0.9)
    diameter: float | None = opt(None, "Particle diameter in px of the micrographs when the "
                                 "labels carry none (default: the labels' box sides).", min=0, min_open=True)
    iou_thres: float = opt(0.2, "NMS IoU threshold of the validation picks.", min=0, max=1)
    resume: str | None = opt(None, "Continue a run from its weights/last.pt (the run "
                             "directory is the one holding it).")
    minutes: float | None = opt(None, "Stop after this many minutes of training.", min=0, min_open=True)
    seed: int = opt(317, "Random seed.")
    fast_dev_run: bool = opt(False, "One training and one validation batch (smoke test); "
                             "weights/last.pt is still written.")
    quiet: bool = opt(False, "No progress bar.")


@dataclass
class Step2Options(Step1Options):
    """``cryoglean train dynamicdet step2``: the router only."""

    weight: str = opt("", "The step-1 checkpoint (PROJECT/exp/weights/last.pt or best.pt).",
                      required=True)
    epochs: int = opt(10, "Router training epochs (PartiNet's docs: 10–20).", min=1)
    lr: float = opt(1e-3, "AdamW learning rate of the router (DynamicDet uses 1e-5 over two "
                    "COCO epochs; small cryo-EM sets need larger steps).", min=0, min_open=True)
    weight_decay: float = opt(5e-3, "AdamW weight decay of the router (DynamicDet: 0.005).", min=0)
    mosaic: float = opt(0.0, "Mosaic probability (DynamicDet's step 2: 0).", min=0, max=1)
    dy_thres: float = opt(0.5, "Router threshold of the validation picks.", min=0, max=1)


@dataclass
class DetectOptions(core._Options):
    """``cryoglean detect`` (PartiNet's ``partinet detect``)."""

    weight: str = opt("", "Checkpoint (PROJECT/exp/weights/best.pt of step 2).", required=True)
    source: str = opt("", "Folder of micrographs (.png/.jpg, or .mrc min–max scaled to 8 "
                      "bit as PartiNet 1.0.1), or one file.", required=True)
    project: str = opt("runs/detect", "Folder of detect runs: results go to PROJECT/exp, "
                       "exp2, …; the log to PROJECT/partinet_detect.log.")
    name: str = opt("exp", "Run name under --project (numbered when it exists).")
    conf_thres: float = opt(0.1, "Keep picks whose confidence is above this (before NMS); the "
                            "validation best-F1 threshold of the step-2 run "
                            "(val_metrics.json) is a good start.", min=0, max=1)
    iou_thres: float = opt(0.2, "NMS IoU threshold.", min=0, max=1)
    device: str = opt("", "GPU ids, e.g. 0 or 0,1,2,3 (one model per GPU over shards of the "
                      "folder), or cpu. Default: GPU 0 when present.")
    img_size: int | None = opt(None, "Letterbox size (default: the training --img-size).", min=64)
    dy_thres: float | None = opt(None, "Router threshold: images scoring at least this take "
                                 "the fast path (default 0.5, or from --easy-fraction).", min=0, max=1)
    easy_fraction: float | None = opt(None, "Fraction of images to send down the fast path "
                                      "(0…1), via the router-score percentiles of the "
                                      "validation set stored by step 2.", min=0, max=1)
    batch: int = opt(1, "Micrographs per network call (routed per image).", min=1)
    shard: str | None = opt(None, "K/N: only the K-th (0-based) of N chunks of the sorted "
                            "micrograph list (Slurm arrays).")
    nosave: bool = opt(False, "Do not write the images with boxes drawn.")
    quiet: bool = opt(False, "No progress bar.")


@dataclass
class PickOptions(core.PickOptions):
    load_model: str = opt("", "DynamicDet checkpoint (weights/best.pt).", required=True)
    conf_thres: float = opt(0.1, "Keep picks whose confidence is above this (before NMS); the "
                            "validation best-F1 threshold of the run (val_metrics.json) is a "
                            "good start.", min=0, max=1)
    iou_thres: float = opt(0.2, "NMS IoU threshold.", min=0, max=1)
    dy_thres: float = opt(0.5, "Router threshold (score ≥ it: the fast path).", min=0, max=1)


TRAIN_HELP = """DynamicDet (PartiNet's detector): two cascaded detectors and a router.

\b
  step1: cryoglean train dynamicdet step1 --data cryo_training.yaml --project runs/train
  step2: cryoglean train dynamicdet step2 --data cryo_training.yaml --project runs/train
             --weight runs/train/exp/weights/last.pt --epochs 10"""

PICK_HELP = """Pick micrographs with a DynamicDet checkpoint into label files of any registry
format (PartiNet's own files: cryoglean detect)."""

PICKER = core.PickerSpec(
    name="dynamicdet",
    train_options=Step1Options,
    pick_options=PickOptions,
    train="trainers.dynamicdet.train:train_step1",
    pick="trainers.dynamicdet.detect:pick_dynamicdet",
    train_help=TRAIN_HELP,
    pick_help=PICK_HELP,
    train_command="trainers.dynamicdet.cli:train_command",
)
