"""Every option of ``train centernet`` / ``pick centernet`` with its default and meaning, in one
place (the CLI builds its help from ``HELP``). Names follow EPicker's options."""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, fields


@dataclass
class TrainOptions:
    data: str = ""
    label: str = ""
    label_type: str = "thi"
    mode: str = "particle"
    exp_id: str = ""
    output: str = "runs"
    batch_size: int = 4
    lr: float = 1e-4
    lr_step: str = "70,90"
    num_epoch: int = 140
    gpus: str | None = None
    load_model: str | None = None
    sparse_anno: bool = False
    pu_prior: float | None = None
    continual: bool = False
    load_exemplar: str | None = None
    output_exemplar: str | None = None
    sampling_size: int = 200
    particle_size: float = 19.0
    input_width: int = 1024
    crop: int | None = None
    repeat: int = 1
    seed: int = 317
    resume: bool = False
    train_pct: float = 70.0
    val_pct: float = 20.0
    test_pct: float = 10.0
    val_data: str | None = None
    val_label: str | None = None
    width: int = 16
    blocks: int = 1
    head_conv: int = 64
    vis_thresh: float = 0.0
    K: int = 2000
    edge: float = 25.0
    min_distance: float = 0.0
    fiber_step: float = 5.0
    link_distance: float = 120.0
    ang_thresh: float = 0.3
    num_workers: int = 0
    val_intervals: int = 1
    limit_train_batches: int | None = None
    max_minutes: float | None = None
    quiet: bool = False

    @classmethod
    def from_dict(cls, d: dict) -> TrainOptions:
        return cls(**check_names(d, cls))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PickOptions:
    data: str = ""
    load_model: str = ""
    output: str = ""
    output_type: str = "thi"
    K: int = 2000
    vis_thresh: float = 0.3
    edge: float = 25.0
    min_distance: float = 0.0
    gpus: str | None = "-1"
    visual: bool = False
    shard: str | None = None
    quiet: bool = False

    @classmethod
    def from_dict(cls, d: dict) -> PickOptions:
        return cls(**check_names(d, cls))


def check_names(d: dict, cls) -> dict:
    """Reject unknown option names with close-match suggestions (``--bach_size``?)."""
    known = [f.name for f in fields(cls)]
    for k in d:
        if k not in known:
            near = difflib.get_close_matches(k, known, n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise ValueError(f"unknown option {k!r}{hint} (known: {', '.join(known)})")
    return dict(d)


HELP = {
    "data": "Folder of micrographs (.mrc/.mrcs stacks are averaged; .png/.jpg/.tif also read). "
    "For an exported dataset give OUT/train/images; OUT/val/images is then used for validation.",
    "label": "Label file or folder of per-micrograph label files named <micrograph stem>.<ext> "
    "(any 2D format of the registry), coordinates in px of the micrographs.",
    "label_type": "Format of --label: thi, star, box, coord (Topaz table) or any 2D registry name.",
    "mode": "particle (fixed-size boxes), vesicle (radius from the size head; THI vesicle "
    "labels) or fiber (filament points linked into helices; THI helix labels).",
    "exp_id": "Name of this run; the run directory is OUTPUT/EXP_ID.",
    "output": "Folder that holds run directories.",
    "batch_size": "Micrograph views per step. Lower it when GPU memory runs out.",
    "lr": "Adam learning rate. 1e-4 from scratch (EPicker); lower (e.g. 5e-5) to fine-tune.",
    "lr_step": "Epochs at which the learning rate is divided by 10 (comma-separated; '' none).",
    "num_epoch": "Training epochs (one epoch = every training micrograph seen --repeat times). "
    "EPicker trains 140; a few dozen suffice for small, easy sets.",
    "gpus": "GPU ids, e.g. 0 or 0,1 (several = DDP); -1 = CPU. Default: GPU 0 if present.",
    "load_model": "Checkpoint to start from (fine-tuning), and the old model for --continual.",
    "sparse_anno": "Only some particles are labelled: use EPicker's sparse loss (unlabelled "
    "pixels weighted 0.01, confident ones treated as positives).",
    "pu_prior": "Only some particles are labelled: use a non-negative PU loss with this class "
    "prior (fraction of heatmap cells that are particle centres, e.g. 0.002) instead.",
    "continual": "Continual learning: keep what --load_model knew by replaying exemplars "
    "(--load_exemplar) and distilling the old model while training on the new data.",
    "load_exemplar": "Folder of a previous exemplar set (images + labels) to replay.",
    "output_exemplar": "Folder to write the exemplar set to after training (the previous set "
    "from --load_exemplar plus this run's first micrographs); also without --continual, to "
    "start a set on the first dataset.",
    "sampling_size": "Particles the new exemplars should cover (first micrographs in order).",
    "particle_size": "Particle diameter in px at the network input scale (width "
    "--input_width). Sets the target Gaussian, the box size in particle mode and the "
    "validation matching radius (half of it).",
    "input_width": "Micrographs are Fourier-cropped to this width (height scaled alike) before "
    "the network. 1024 as EPicker; smaller is faster, but particles must stay ≥ ~8 px.",
    "crop": "Side of the square training views in input px (default: --input_width, i.e. the "
    "whole micrograph with a random shift as EPicker). Smaller crops train faster on CPU.",
    "repeat": "Random views per training micrograph per epoch.",
    "seed": "Random seed (Python, numpy, torch); EPicker's default 317.",
    "resume": "Continue run OUTPUT/EXP_ID from weights/last.ckpt (epoch counter continues).",
    "train_pct": "Percent of micrographs for training when no validation folder is given.",
    "val_pct": "Percent for validation (picks scored each epoch; best.ckpt by best F1).",
    "test_pct": "Percent held out for testing (listed in split.json, never trained on).",
    "val_data": "Separate validation micrograph folder (disables the percentage split).",
    "val_label": "Labels of --val_data (same --label_type).",
    "width": "Base channel width of the backbone (network size grows with its square).",
    "blocks": "Residual blocks per backbone stage.",
    "head_conv": "Channels of the 3×3 conv in each output head.",
    "vis_thresh": "Score threshold for picks (0..1).",
    "K": "At most this many picks per micrograph before thresholds.",
    "edge": "Drop picks closer than this to the border, in px of a 1024-px-wide image as in "
    "EPicker (scaled to --input_width; 25 as EPicker).",
    "min_distance": "Drop picks closer than this to a better one, in px of a 1024-px-wide "
    "image (scaled to --input_width; 0 = off).",
    "fiber_step": "Fiber labels are densified to one point every this many input px.",
    "link_distance": "Fiber mode: largest step between linked picks (input px).",
    "ang_thresh": "Fiber mode: largest turn between linked steps (radians).",
    "num_workers": "Data-loading worker processes (0 = in the main process).",
    "val_intervals": "Validate every this many epochs.",
    "limit_train_batches": "Train only this many batches per epoch (quick checks).",
    "max_minutes": "Stop training after this many minutes (wall clock) even before --num_epoch.",
    "quiet": "No progress bar.",
    "output_type": "Format of the written picks: thi, star, box, coord or any registry name.",
    "visual": "Also write <micrograph>.png with the picks drawn as circles.",
    "shard": "K/N: pick only the K-th (0-based) of N chunks of the sorted micrograph list "
    "(Slurm arrays).",
}

# pick centernet: options whose meaning differs from training
PICK_HELP = {
    **HELP,
    "data": "Folder of micrographs to pick (.mrc/.mrcs, .png/.jpg/.tif).",
    "load_model": "Checkpoint of a trained run (weights/best.ckpt); it carries the mode, "
    "input width and particle size.",
    "output": "Folder for one label file per micrograph (px of the micrograph files).",
    "gpus": "GPU id to pick on, e.g. 0; -1 = CPU.",
    "vis_thresh": "Score threshold for picks (0..1); the validation best-F1 threshold of the "
    "run (val_metrics.json) is a good start.",
}
