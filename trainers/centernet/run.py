"""Library entry points behind ``cryoglean train centernet`` and ``cryoglean pick centernet``."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from trainers.centernet.options import PickOptions, TrainOptions

log = logging.getLogger(__name__)
MODES = ("particle", "vesicle", "fiber")


class TrainingError(ValueError):
    """Training options or data that cannot work together."""


def _check(opts: TrainOptions) -> None:
    if opts.mode not in MODES:
        raise TrainingError(f"--mode {opts.mode!r}: choose one of {', '.join(MODES)}")
    if not opts.exp_id:
        raise TrainingError("--exp_id is required: it names the run directory OUTPUT/EXP_ID")
    if opts.continual and not opts.load_model:
        raise TrainingError("--continual needs --load_model (the model trained on the old data)")
    if opts.sparse_anno and opts.pu_prior:
        raise TrainingError("give either --sparse_anno or --pu_prior, not both")
    if opts.pu_prior is not None and not 0 < opts.pu_prior < 1:
        raise TrainingError(f"--pu_prior {opts.pu_prior}: the class prior must be in (0, 1)")
    crop = opts.crop or opts.input_width
    if crop % 32:
        raise TrainingError(f"--crop/--input_width {crop}: must be a multiple of 32")


def load_checkpoint(path: str | Path) -> dict:
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found (give weights/best.ckpt or "
                                "weights/last.ckpt of a run)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling problem is a bad checkpoint file
        raise ValueError(f"{path}: not a cryoglean CenterNet checkpoint ({exc})") from None


def net_state(ckpt: dict) -> dict:
    sd = ckpt.get("state_dict", {})
    net = {k[4:]: v for k, v in sd.items() if k.startswith("net.")}
    if not net:
        raise ValueError("checkpoint holds no CenterNet weights (no 'net.*' entries)")
    return net


def _samples(opts: TrainOptions, data, label, keys=None):
    from trainers.centernet.decode import densify_filaments
    from trainers.data import labelled_samples

    samples = labelled_samples(data, label, opts.label_type, opts.input_width, keys)
    if opts.mode == "fiber":
        for s in samples:
            if (s.group >= 0).any():
                xy, g = densify_filaments(s.xy, s.group, opts.fiber_step)
                s.xy, s.group = xy, g
                s.radius = np.full(len(xy), np.nan)
    if opts.mode != "vesicle":
        for s in samples:
            s.radius = np.full(len(s.xy), np.nan)
    return samples


def _find_val(opts: TrainOptions) -> tuple[str | None, str | None]:
    if opts.val_data:
        if not opts.val_label:
            raise TrainingError("--val_data needs --val_label")
        return opts.val_data, opts.val_label
    data, label = Path(opts.data), Path(opts.label)
    # exported layout OUT/train/images + OUT/train/labels -> OUT/val/...
    if data.parent.name == "train" and label.parent.name == "train":
        vd = data.parent.parent / "val" / data.name
        vl = label.parent.parent / "val" / label.name
        if vd.is_dir() and vl.exists():
            return str(vd), str(vl)
    return None, None


def train_centernet(opts: TrainOptions) -> dict:
    """Train a CenterNet picker into ``OUTPUT/EXP_ID`` (layout in :mod:`trainers.base`).

    Returns the driver's summary (run_dir, best/last checkpoints, last validation summary).
    """
    import pytorch_lightning as pl

    from trainers.augment import Augmenter
    from trainers.base import fit, write_options
    from trainers.centernet.exemplar import load_exemplars, select_exemplars, write_exemplars
    from trainers.centernet.targets import CenterNetEncoder
    from trainers.centernet.task import CenterNetTask
    from trainers.data import make_datamodule, split_keys, write_split

    _check(opts)
    pl.seed_everything(opts.seed, workers=True, verbose=False)
    run_dir = Path(opts.output) / opts.exp_id
    old_state = None
    if opts.load_model:
        ckpt = load_checkpoint(opts.load_model)
        old_state = net_state(ckpt)
        arch = ckpt.get("hyper_parameters", {})
        for k in ("width", "blocks", "head_conv"):
            if k in arch and arch[k] != getattr(opts, k):
                log.info("using %s=%s from %s", k, arch[k], opts.load_model)
                setattr(opts, k, arch[k])
    if opts.resume and (run_dir / "options.yaml").is_file():
        import yaml

        saved = yaml.safe_load((run_dir / "options.yaml").read_text())
        for k in ("width", "blocks", "head_conv", "mode", "particle_size", "input_width"):
            setattr(opts, k, saved.get(k, getattr(opts, k)))

    val_data, val_label = _find_val(opts)
    if val_data:
        train = _samples(opts, opts.data, opts.label)
        val = _samples(opts, val_data, val_label)
        split = {"train": [s.prep.name for s in train], "val": [s.prep.name for s in val],
                 "test": []}
    else:
        allsamples = _samples(opts, opts.data, opts.label)
        split = split_keys([s.prep.name for s in allsamples], opts.train_pct, opts.val_pct,
                           opts.test_pct, opts.seed)
        train = [s for s in allsamples if s.prep.name in split["train"]]
        val = [s for s in allsamples if s.prep.name in split["val"]]
    exemplars = []
    if opts.continual and opts.load_exemplar:
        exemplars = load_exemplars(opts.load_exemplar, opts.input_width)
        if opts.mode != "vesicle":
            for s in exemplars:
                s.radius = np.full(len(s.xy), np.nan)

    options = opts.to_dict()
    write_options(run_dir, options)
    write_split(run_dir / "split.json", split)
    crop = opts.crop or opts.input_width
    encoder = CenterNetEncoder(particle_size=opts.particle_size)
    augmenter = Augmenter(crop=crop, margin=min(128, crop // 4))
    dm = make_datamodule(train, val, encoder, augmenter, opts.batch_size, opts.num_workers,
                         opts.repeat, exemplar_samples=exemplars or None)
    task = CenterNetTask(options, old_state=old_state if opts.continual else None)
    if old_state is not None and not opts.resume:
        task.net.load_state_dict(old_state)
    task.val_samples = val
    t0 = time.time()
    summary = fit(task, dm, options, run_dir)
    summary["train_seconds"] = time.time() - t0
    summary["n_train"], summary["n_val"] = len(train), len(val)
    if opts.output_exemplar:
        chosen = select_exemplars(_samples(opts, opts.data, opts.label, split["train"]),
                                  opts.sampling_size)
        entries = write_exemplars(chosen, opts.output_exemplar, opts.label_type,
                                  previous=opts.load_exemplar)
        summary["exemplars"] = len(entries)
    return summary


# ---------------------------------------------------------------------------------------------
# Picking
# ---------------------------------------------------------------------------------------------


def parse_shard(shard: str | None, n: int) -> list[int]:
    """``K/N`` → indices of the K-th (0-based) of N contiguous chunks of ``n`` items (the rule
    of :mod:`converters.shard`, shared with ``cryoglean denoise``); all indices without K/N."""
    from converters.shard import parse_shard as parse
    from converters.shard import shard_items

    if not shard:
        return list(range(n))
    k, m = parse(shard)
    return shard_items(range(n), k, m)


def load_picker(path: str | Path, device: str = "cpu"):
    """(network in eval mode, its training options) from a checkpoint."""
    from trainers.centernet.network import CenterNet

    ckpt = load_checkpoint(path)
    h = dict(ckpt.get("hyper_parameters", {}))
    net = CenterNet(width=int(h.get("width", 16)), blocks=int(h.get("blocks", 1)),
                    head_conv=int(h.get("head_conv", 64)))
    net.load_state_dict(net_state(ckpt))
    return net.to(device).eval(), h


def pick_micrograph(net, h: dict, path, opts: PickOptions, device: str = "cpu") -> pd.DataFrame:
    """Picks of one micrograph in px of that micrograph file (DESIGN frame):
    DataFrame[micrograph, x, y, score, diameter | radius | filament]."""
    import torch

    from trainers.centernet.decode import decode, link_fibers
    from trainers.centernet.task import to_input
    from trainers.data import pad_to_multiple, prepare, to_tensor_image

    prep = prepare(path, int(h.get("input_width", 1024)))
    img = pad_to_multiple(prep.image, 32)
    with torch.no_grad():
        out = net(torch.from_numpy(to_tensor_image(img))[None].to(device))
    p = decode(out, K=opts.K, vis_thresh=opts.vis_thresh, edge=to_input(opts.edge, h),
               min_distance=to_input(opts.min_distance, h), valid_hw=prep.image.shape)[0]
    df = pd.DataFrame({
        "micrograph": prep.path.stem,
        "x": p["xy"][:, 0] / prep.sx,
        "y": p["xy"][:, 1] / prep.sy,
        "score": p["score"],
    })
    mode = h.get("mode", "particle")
    if mode == "vesicle":
        df["radius"] = p["radius"] / prep.sx
    elif mode == "fiber":
        g = link_fibers(p["xy"], p["score"], float(h.get("link_distance", 120.0)),
                        float(h.get("ang_thresh", 0.3)))
        df["filament"] = g
        df = df[df["filament"] >= 0].reset_index(drop=True)
    else:
        df["diameter"] = float(h.get("particle_size", 19.0)) / prep.sx
    return df


def pick_centernet(opts: PickOptions) -> dict:
    """Pick every micrograph of ``opts.data`` (or one shard of them) and write one label file
    per micrograph into ``opts.output`` through the registry; returns counts and timing."""
    from tqdm import tqdm

    from trainers.base import parse_gpus, show_progress
    from trainers.data import list_micrographs
    from trainers.labels import format_name
    from trainers.plots import plot_picks

    fmt = format_name(opts.output_type)
    dev = parse_gpus(opts.gpus)
    device = f"cuda:{dev['devices'][0]}" if dev["accelerator"] == "gpu" else "cpu"
    net, h = load_picker(opts.load_model, device)
    files = list_micrographs(opts.data)
    files = [files[i] for i in parse_shard(opts.shard, len(files))]
    out = Path(opts.output)
    out.mkdir(parents=True, exist_ok=True)
    total, t0 = 0, time.time()
    for f in tqdm(files, desc="pick", disable=not show_progress(opts.quiet)):
        df = pick_micrograph(net, h, f, opts, device)
        total += len(df)
        write_picks_file(df, out, fmt, f.stem)
        if opts.visual:
            from trainers.data import read_image

            r = df["radius"] if "radius" in df else (df["diameter"] / 2 if "diameter" in df
                                                     else pd.Series([4.0] * len(df)))
            plot_picks(read_image(f), df[["x", "y"]].to_numpy(), out / f"{f.stem}.png",
                       float(r.median()) if len(df) else 4.0)
    dt = time.time() - t0
    return {"micrographs": len(files), "picks": total, "seconds": dt,
            "micrographs_per_s": len(files) / dt if dt > 0 else float("nan")}


def write_picks_file(df: pd.DataFrame, out: Path, fmt: str, stem: str) -> None:
    """One label file per micrograph (an empty one when there are no picks)."""
    from trainers.labels import write_labels

    write_labels(df, out, fmt, micrographs=[stem])
