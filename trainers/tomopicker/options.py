"""The tomogram picker's declaration: ``train``/``pick`` options named as cet_pick's
(``opts.py``; defaults as its documented commands, docs/refine.md, where they differ from its
code: bbox 16, lr 5e-4, 10 epochs, K 900, out_thresh 0.2, τ 0.01, thresh 0.85) and the entry
points listed in :mod:`trainers.pickers`."""

from __future__ import annotations

from dataclasses import dataclass

from trainers.core import options as core
from trainers.core.options import opt

ARCH_CHOICES = ("unet_4", "unet_5")
ORDER_CHOICES = ("xzy", "xyz", "zxy")
ORDER_HELP = ("Axis order of the tomogram files as cet_pick's loader reads them: xzy (IMOD "
              "tomograms not rotated, cet_pick's default), zxy (rotated ones, e.g. RELION 5 "
              "and cryoglean's exports: then the coordinate tables are the files' x, y, z) or "
              "xyz.")


@dataclass
class TrainOptions(core.TrainOptions):
    train_img_txt: str | None = opt(None, "Image list of the training tomograms "
                                    "('image_name<TAB>rec_path'; cryoglean tomo-files).")
    train_coord_txt: str | None = opt(None, "Training coordinates ('image_name x_coord y_coord "
                                      "z_coord', voxels of the volume as --order loads it).")
    val_img_txt: str | None = opt(None, "Image list of the validation tomograms (default: the "
                                  "training ones, as cet_pick).")
    val_coord_txt: str | None = opt(None, "Validation coordinates.")
    arch: str = opt("unet_4", "Network: 2-D U-Net of 4 or 5 blocks per slice.",
                    choices=ARCH_CHOICES)
    last_k: int = opt(3, "cet_pick's option, kept for its command lines (its network does not "
                      "use it).", min=0)
    down_ratio: int = opt(2, "Output stride in x and y (cet_pick's network has 2 only).",
                          min=2, max=2)
    head_conv: int = opt(32, "Channels of the 3-D head and of the embedding (proj) head.", min=1)
    bbox: int = opt(16, "Particle box size in px of the loaded volume: sets the target "
                    "Gaussian (bbox 16 → radius 2 heatmap voxels) and the validation matching "
                    "radius (bbox/2).", min=2)
    num_epochs: int = opt(10, "Training epochs (one epoch = one item per training label).", min=1)
    lr: float = opt(5e-4, "Adam learning rate.", min=0, min_open=True)
    batch_size: int = opt(1, "Items per step (each item is a pair of crops).", min=1)
    tau: float = opt(0.01, "Class prior of the PU loss (fraction of voxels that are particle "
                     "centres) and of the debiased contrastive loss.", min=0, max=1, min_open=True)
    pn: bool = opt(False, "Every particle is labelled: plain focal loss, unlabelled voxels "
                   "are negatives.")
    contrastive: bool = opt(False, "Add the contrastive regularisation (two flipped views) "
                            "and the consistency term.")
    cr_weight: float = opt(0.1, "Weight of the contrastive term (0.1 globular, 1.0 fibers).", min=0)
    temp: float = opt(0.07, "Temperature of the contrastive loss.", min=0, min_open=True)
    thresh: float = opt(0.85, "Heatmap value above which a voxel is a positive anchor of the "
                        "contrastive loss.", min=0, max=1)
    cr_samples: int = opt(2048, "Unlabelled anchor voxels sampled per step for the "
                          "contrastive loss (0 = all, cet_pick's full similarity matrix, "
                          "~2.4 GB per step).", min=0)
    order: str = opt("xzy", ORDER_HELP, choices=ORDER_CHOICES)
    compress: bool = opt(False, "Take the maximum of each pair of z-slices (halves z; "
                         "recommended by cet_pick).")
    gauss: float = opt(0.0, "Gaussian prefilter σ in voxels (0 = none; cet_pick's docs use 0.8).", min=0)
    K: int = opt(900, "At most this many picks per tomogram (validation).", min=1)
    nms: int = opt(3, "NMS kernel in x and y (heatmap voxels).", min=1)
    out_thresh: float = opt(0.2, "Score threshold of the validation precision/recall/F1 (the "
                            "best-F1 threshold, for pick --out_thresh, is in val_metrics.json).",
                            min=0, max=1)
    cutoff_z: int = opt(10, "Validation picks within this many (heatmap) slices of the top or "
                        "bottom are dropped.", min=0)
    edge: int = opt(20, "Validation picks within this many px (input voxels) of the x/y border "
                    "are dropped (cet_pick: 20; lower it for tomograms much smaller than "
                    "512 px).", min=0)
    val_interval: int = opt(1, "Validate (and write model_N.pth / model_last.pth and debug "
                            "pictures) every this many epochs.", min=1)
    save_all: bool = opt(False, "Keep model_N.pth of every validation epoch (otherwise "
                         "model_last.pth).")


@dataclass
class PickOptions(core.PickOptions):
    test_img_txt: str | None = opt(None, "Image list of the tomograms to pick "
                                   "('image_name<TAB>rec_path'); or --data DIR / --dataset OUT.")
    load_model: str = opt("", "Checkpoint: model_N.pth / model_last_contrastive.pth or "
                          "weights/best.ckpt of a run.", required=True)
    output: str | None = opt(None, "Output folder (default: the run directory of "
                             "--load_model / --out_id, as cet_pick).")
    out_id: str = opt("output", "Name of the output folder inside the run directory.")
    output_type: str | None = opt(None, "Also write the picks in this registry 3D format "
                                  "(DESIGN frame: voxels of the tomogram files) into "
                                  "OUTPUT/<format>/.")
    K: int = opt(900, "At most this many picks per tomogram before thresholds.", min=1)
    out_thresh: float = opt(0.2, "Keep picks with a score above this; the validation best-F1 "
                            "threshold of the run (val_metrics.json) is a good start.",
                            min=0, max=1)
    with_score: bool = opt(False, "Add the score as a 4th column of <tomo>.txt.")
    nms: int = opt(3, "NMS kernel in x and y (heatmap voxels).", min=1)
    cutoff_z: int = opt(10, "Drop picks within this many (heatmap) slices of the top or "
                        "bottom.", min=0)
    edge: int = opt(20, "Drop picks within this many px (input voxels) of the x/y border "
                    "(cet_pick: 20; lower it for tomograms much smaller than 512 px).", min=0)
    order: str | None = opt(None, ORDER_HELP + " Default: the training run's.",
                            choices=ORDER_CHOICES)
    compress: bool = opt(False, "Max of each pair of z-slices (also on when the training "
                         "run used it).")
    gauss: float | None = opt(None, "Gaussian prefilter σ (default: the training run's).", min=0)
    chunk: int = opt(16, "Slices per chunk through the network (bounds memory; results do "
                     "not depend on it).", min=1)


TRAIN_HELP = """cet_pick / MiLoPYP tomogram picker from sparse labels (refinement module).

\b
As cet_pick's main.py semi:
  --train_img_txt imgs.txt --train_coord_txt coords.txt --bbox 16 --num_epochs 10
  --lr 5e-4 --K 900 --compress --gauss 0.8 --contrastive --exp_id E [--save_all]
  [--val_interval 1] [--val_img_txt … --val_coord_txt …]
or on an export (cryoglean export … with 3D picks): --dataset OUT --order zxy.
Writes OUTPUT/EXP_ID: opt.txt, options.yaml, model_last_contrastive.pth, model_N.pth
or model_last.pth, weights/{best,last}.ckpt, metrics.csv, loss.png, debug/*.png."""

PICK_HELP = """Pick tomograms with a tomogram-picker checkpoint (cet_pick's test.py semi):
<tomo>.txt (x z y [score], point2model-ready) and <tomo>_hm.mrc per tomogram, and with
--output_type a registry 3D format in the tomograms' voxel frame."""

PICKER = core.PickerSpec(
    name="tomo",
    train_options=TrainOptions,
    pick_options=PickOptions,
    train="trainers.tomopicker.train:train_tomo",
    pick="trainers.tomopicker.pick:pick_tomo",
    train_help=TRAIN_HELP,
    pick_help=PICK_HELP,
    dims=3,
)
