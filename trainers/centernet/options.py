"""The CenterNet picker's declaration: its ``train``/``pick`` options (each with its default
and help; names follow EPicker) and its entry points, listed in :mod:`trainers.pickers`."""

from __future__ import annotations

from dataclasses import dataclass

from trainers.core import options as core
from trainers.core.options import opt

MODES = ("particle", "vesicle", "fiber")
# What a label format must hold for every mode: vesicle radii and filament ids, one file per
# micrograph (EPicker's own format is the one the registry lists with these)
LABEL_CAPABILITIES = frozenset({"2d", "per_micrograph", "vesicle", "filament", "read", "write"})
FORMAT_DEFAULT = ("Default: the registry format that holds every mode's labels (vesicle radii, "
                  "filament ids), EPicker's own.")


def native_format() -> str:
    """The registry format CenterNet reads and writes by default: the first one whose
    capabilities cover :data:`LABEL_CAPABILITIES`."""
    from converters import registry

    for name in registry.names(2):
        if LABEL_CAPABILITIES <= registry.get(name).capabilities:
            return name
    raise ValueError("no registry format holds particle, vesicle and filament labels; give "
                     "--label_type / --output_type")


@dataclass
class TrainOptions(core.TrainOptions):
    label_type: str | None = opt(None, "Registry format of --label (ignored with --dataset: the "
                                 "manifest names it). " + FORMAT_DEFAULT)
    mode: str = opt("particle", "particle (fixed-size boxes), vesicle (radius from the size "
                    "head; vesicle labels with radii) or fiber (filament points linked into "
                    "helices; labels with filament ids).", required=True, choices=MODES)
    batch_size: int = opt(4, "Micrograph views per step. Lower it when GPU memory runs out.", min=1)
    lr: float = opt(1e-4, "Adam learning rate. 1e-4 from scratch (EPicker); lower (e.g. 5e-5) "
                    "to fine-tune.", min=0, min_open=True)
    lr_step: str = opt("70,90", "Epochs at which the learning rate is divided by 10 "
                       "(comma-separated; '' none).")
    num_epoch: int = opt(140, "Training epochs (one epoch = every training micrograph seen "
                         "--repeat times). EPicker trains 140; a few dozen suffice for small, "
                         "easy sets.", min=1)
    load_model: str | None = opt(None, "Checkpoint to start from (fine-tuning), and the old "
                                 "model for --continual.")
    sparse_anno: bool = opt(False, "Only some particles are labelled: use EPicker's sparse "
                            "loss (unlabelled pixels weighted 0.01, confident ones treated as "
                            "positives).")
    pu_prior: float | None = opt(None, "Only some particles are labelled: use a non-negative "
                                 "PU loss with this class prior (fraction of heatmap cells "
                                 "that are particle centres, e.g. 0.002) instead.", min=0, max=1, min_open=True)
    continual: bool = opt(False, "Continual learning: keep what --load_model knew by replaying "
                          "exemplars (--load_exemplar) and distilling the old model while "
                          "training on the new data.")
    load_exemplar: str | None = opt(None, "Folder of a previous exemplar set (images + labels) "
                                    "to replay.")
    output_exemplar: str | None = opt(None, "Folder to write the exemplar set to after "
                                      "training (the previous set from --load_exemplar plus "
                                      "this run's first micrographs); also without "
                                      "--continual, to start a set on the first dataset.")
    sampling_size: int = opt(200, "Particles the new exemplars should cover (first "
                             "micrographs in order).", min=1)
    particle_size: float | None = opt(None, "Particle diameter in px at the network input "
                                      "scale (width --input_width). Sets the target Gaussian, "
                                      "the box size in particle mode and the validation "
                                      "matching radius (half of it). Default: from the "
                                      "export's manifest with --dataset, else 19 (EPicker).", min=0, min_open=True)
    input_width: int = opt(1024, "Micrographs are Fourier-cropped to this width (height "
                           "scaled alike) before the network. 1024 as EPicker; smaller is "
                           "faster, but particles must stay ≥ ~8 px.", min=32)
    crop: int | None = opt(None, "Side of the square training views in input px (default: "
                           "--input_width, i.e. the whole micrograph with a random shift as "
                           "EPicker). Smaller crops train faster on CPU.", min=32)
    repeat: int = opt(1, "Random views per training micrograph per epoch.", min=1)
    width: int = opt(16, "Base channel width of the backbone (network size grows with its "
                     "square).", min=1)
    blocks: int = opt(1, "Residual blocks per backbone stage.", min=1)
    head_conv: int = opt(64, "Channels of the 3×3 conv in each output head.", min=1)
    vis_thresh: float = opt(0.0, "Score threshold of the validation precision/recall/F1 "
                            "(0..1; 0 = every pick).", min=0, max=1)
    K: int = opt(2000, "At most this many picks per micrograph before thresholds.", min=1)
    edge: float = opt(25.0, "Drop picks closer than this to the border, in px of a "
                      "1024-px-wide image as in EPicker (scaled to --input_width).", min=0)
    min_distance: float = opt(0.0, "Drop picks closer than this to a better one, in px of a "
                              "1024-px-wide image (scaled to --input_width; 0 = off).", min=0)
    fiber_step: float = opt(5.0, "Fiber labels are densified to one point every this many "
                            "input px.", min=0, min_open=True)
    link_distance: float = opt(120.0, "Fiber mode: largest step between linked picks "
                               "(input px).", min=0, min_open=True)
    ang_thresh: float = opt(0.3, "Fiber mode: largest turn between linked steps (radians).", min=0)
    val_intervals: int = opt(1, "Validate every this many epochs.", min=1)


@dataclass
class PickOptions(core.PickOptions):
    load_model: str = opt("", "Checkpoint of a trained run (weights/best.ckpt); it carries the "
                          "mode, input width and particle size.", required=True)
    output_type: str | None = opt(None, "Registry format of the written picks. " + FORMAT_DEFAULT)
    K: int = opt(2000, "At most this many picks per micrograph before thresholds.", min=1)
    vis_thresh: float = opt(0.3, "Score threshold for picks (0..1); the validation best-F1 "
                            "threshold of the run (val_metrics.json) is a good start.", min=0, max=1)
    edge: float = opt(25.0, "Drop picks closer than this to the border, in px of a "
                      "1024-px-wide image as in EPicker (scaled to the run's input width).", min=0)
    min_distance: float = opt(0.0, "Drop picks closer than this to a better one, in px of a "
                              "1024-px-wide image (0 = off).", min=0)


TRAIN_HELP = """EPicker-like CenterNet picker (particles, vesicles or fibers).

\b
Three ways to train (as EPicker):
  on an export:  --dataset OUT --mode particle --exp_id run1
  on folders:    --data D --label L --label_type FORMAT --mode particle --exp_id run1
  fine-tune:     ... --load_model runs/run1/weights/best.ckpt
  continual:     ... --load_model CKPT --continual --load_exemplar OLD_EX
                     --output_exemplar NEW_EX --sampling_size 200
Sparse labels (only some particles labelled): --sparse_anno, or --pu_prior P.
The run directory OUTPUT/EXP_ID gets options.yaml, hparams.yaml, metrics.csv,
weights/best.ckpt, weights/last.ckpt and loss/PR/F1 plots."""

PICK_HELP = """Pick micrographs with a CenterNet checkpoint; one label file per micrograph in
--output, coordinates in px of the micrograph files."""

PICKER = core.PickerSpec(
    name="centernet",
    train_options=TrainOptions,
    pick_options=PickOptions,
    train="trainers.centernet.train:train_centernet",
    pick="trainers.centernet.pick:pick_centernet",
    train_help=TRAIN_HELP,
    pick_help=PICK_HELP,
    default_format=native_format,
)
