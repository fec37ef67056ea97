"""``cryoglean train tomo``: cet_pick's options → volumes, targets, crops → the shared driver."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np

from trainers.tomopicker.options import TrainOptions

log = logging.getLogger(__name__)


class TrainingError(ValueError):
    """Training options or data that cannot work together."""


def _check(opts: TrainOptions) -> None:
    if opts.dataset == "semi" and not Path("semi").exists():
        opts.dataset = None  # cet_pick's own --dataset semi (the task's dataset class)
    if opts.data or opts.label or opts.val_data:
        raise TrainingError("train tomo reads cet_pick's --train_img_txt/--train_coord_txt "
                            "(or an export with --dataset), not --data/--label")
    if bool(opts.dataset) == bool(opts.train_img_txt):
        raise TrainingError("give --train_img_txt with --train_coord_txt (cet_pick's files; "
                            "cryoglean tomo-files writes them) or --dataset OUT (an export)")
    if opts.train_img_txt and not opts.train_coord_txt:
        raise TrainingError("--train_img_txt needs --train_coord_txt")
    if bool(opts.val_img_txt) != bool(opts.val_coord_txt):
        raise TrainingError("give both --val_img_txt and --val_coord_txt, or neither")
    if opts.down_ratio != 2:
        raise TrainingError(f"--down_ratio {opts.down_ratio}: cet_pick's network has output "
                            "stride 2 only")
    if not 0 < opts.tau < 1:
        raise TrainingError(f"--tau {opts.tau}: the class prior must be in (0, 1)")
    if opts.bbox < 2:
        raise TrainingError(f"--bbox {opts.bbox}: give the particle box size in px (e.g. 16)")


def _from_lists(img_txt, coord_txt) -> list[tuple[str, Path, np.ndarray]]:
    from trainers.tomopicker.volume import read_coords, read_image_list

    images = read_image_list(img_txt)
    coords = read_coords(coord_txt)
    missing = sorted(set(coords) - set(images))
    if missing and not set(coords) & set(images):
        raise TrainingError(f"{coord_txt}: no coordinate names a tomogram of {img_txt} "
                            f"(e.g. {missing[0]!r}); image_name must match")
    return [(name, path, coords.get(name, np.zeros((0, 3)))) for name, path in images.items()]


def _from_export(root, order: str) -> tuple[list, list]:
    from trainers.core.dataset import VAL, from_export
    from trainers.tomopicker.volume import file_to_loaded

    records, src = from_export(root)
    if src.dims != 3:
        raise TrainingError(f"{root}: the export holds {src.dims}D picks; train tomo needs "
                            "tomogram (3D) picks")
    train, val = [], []
    for r in records:
        xyz = file_to_loaded(r.labels[["x", "y", "z"]].to_numpy(np.float64), order)
        (val if r.split == VAL else train).append((r.key, Path(r.image), xyz))
    return train, val


def write_opt_txt(run_dir: Path, options: dict) -> Path:
    """cet_pick's ``opt.txt``: the command and every option."""
    import torch

    run_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"==> torch version: {torch.__version__}", "==> Cmd:", str(sys.argv), "==> Opt:"]
    lines += [f"  {k}: {v}" for k, v in sorted(options.items())]
    path = run_dir / "opt.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


class _Loaded:
    """Volumes loaded once per path (validation often reuses the training tomograms)."""

    def __init__(self, opts):
        self.opts, self.cache = opts, {}

    def __call__(self, path: Path):
        from trainers.tomopicker.volume import load_volume

        key = str(Path(path).resolve())
        if key not in self.cache:
            o = self.opts
            self.cache[key] = load_volume(path, o.order, o.compress, o.gauss)
        return self.cache[key]


def _val_samples(items, load, opts) -> list:
    from trainers.core.dataset import Prepared, Sample

    sz = 0.5 if opts.compress else 1.0
    out = []
    for name, path, xyz in items:
        vol, fshape = load(path)
        xy = np.asarray(xyz, dtype=np.float64).reshape(-1, 3) * np.array([1.0, 1.0, sz])
        prep = Prepared(name, Path(path), vol, vol.shape[2], vol.shape[1], 1.0, 1.0,
                        nz=vol.shape[0], sz=sz)
        out.append(Sample(prep=prep, xy=xy, radius=np.full(len(xy), np.nan),
                          group=np.full(len(xy), -1, dtype=np.int64)))
    return out


class _ValEncoder:
    def __init__(self, bbox):
        self.bbox = bbox

    def encode(self, image, xy, radius, group):
        from trainers.tomopicker.targets import heatmap_coords, make_heatmap

        return {"hm": make_heatmap(image.shape, heatmap_coords(xy, compress=False), self.bbox,
                                   unlabelled=False)}


def _datamodule(train_items, val_samples, load, opts):
    import pytorch_lightning as pl
    import torch

    from trainers.core.datamodule import make_eval_dataset
    from trainers.tomopicker.crops import check_size, make_dataset
    from trainers.tomopicker.network import n_blocks_of
    from trainers.tomopicker.targets import heatmap_coords, make_heatmap

    volumes, heatmaps, labels = [], [], []
    for t, (name, path, xyz) in enumerate(train_items):
        vol, _ = load(path)
        check_size(name, vol)
        hxyz = heatmap_coords(xyz, opts.compress)
        volumes.append(vol)
        heatmaps.append(make_heatmap(vol.shape, hxyz, opts.bbox, unlabelled=not opts.pn))
        d, h, w = heatmaps[-1].shape
        inside = ((hxyz >= 0) & (hxyz < np.array([w, h, d]))).all(axis=1)
        labels += [(t, *c) for c in hxyz[inside]]
    if not labels:
        raise TrainingError("no training label lies inside its tomogram as loaded (check "
                            "--order and the coordinate file)")
    train_ds = make_dataset(volumes, heatmaps, labels, opts.bbox, opts.pn)
    multiple = 2 ** n_blocks_of(opts.arch)

    class TomoDataModule(pl.LightningDataModule):
        def train_dataloader(self):
            return torch.utils.data.DataLoader(
                train_ds, batch_size=opts.batch_size, shuffle=True,
                num_workers=opts.num_workers, drop_last=len(train_ds) > opts.batch_size)

        def val_dataloader(self):
            if not val_samples:
                return []
            ds = make_eval_dataset(val_samples, _ValEncoder(opts.bbox),
                                   lambda im: np.ascontiguousarray(im, dtype=np.float32),
                                   multiple)
            return torch.utils.data.DataLoader(ds, batch_size=1, num_workers=opts.num_workers)

    return TomoDataModule(), len(labels)


def _keep_out_of_val_metrics(run_dir: Path, name: str) -> None:
    """The driver writes the last validation as val_metrics.json, which pipelines read as the
    run's pick threshold; for a run validated on its training tomograms it goes to ``name``."""
    from trainers.core import VAL_METRICS

    written = Path(run_dir) / VAL_METRICS
    if written.is_file():
        written.replace(Path(run_dir) / name)


def train_tomo(opts: TrainOptions) -> dict:
    """Train the tomogram picker into ``OUTPUT/EXP_ID``; returns the driver's summary."""
    import pytorch_lightning as pl

    from trainers.core.driver import RunSettings, run_dir_of, saved_options, train_run
    from trainers.tomopicker.task import TomoTask

    _check(opts)
    pl.seed_everything(opts.seed, workers=True, verbose=False)
    run_dir = run_dir_of(opts.output, opts.exp_id)
    if opts.resume:
        saved = saved_options(run_dir)
        for k in ("arch", "head_conv", "order", "compress", "gauss", "bbox"):
            setattr(opts, k, saved.get(k, getattr(opts, k)))
    if opts.dataset:
        train_items, val_items = _from_export(opts.dataset, opts.order)
    else:
        train_items = _from_lists(opts.train_img_txt, opts.train_coord_txt)
        val_items = (_from_lists(opts.val_img_txt, opts.val_coord_txt)
                     if opts.val_img_txt else [])
    val_on_train = not val_items
    if val_on_train:
        log.info("no validation tomograms: validating on the training ones (as cet_pick); "
                 "their summary is train_metrics.json, not a pick threshold")
        val_items = train_items
    load = _Loaded(opts)
    val = _val_samples(val_items, load, opts)
    dm, n_labels = _datamodule(train_items, val, load, opts)
    options = {**opts.to_dict(), "run_dir": str(run_dir), "val_on_train": val_on_train}
    write_opt_txt(run_dir, options)
    task = TomoTask(options)
    task.val_samples = val
    task.debug_dir = run_dir / "debug"
    settings = RunSettings(
        max_epochs=opts.num_epochs, gpus=opts.gpus, resume=opts.resume, quiet=opts.quiet,
        val_every=opts.val_interval, limit_train_batches=opts.limit_train_batches,
        max_minutes=opts.max_minutes, fast_dev_run=opts.fast_dev_run,
    )
    split = {"train": [n for n, _, _ in train_items], "val": [n for n, _, _ in val_items],
             "test": []}
    summary = train_run(task, dm, settings, run_dir, options, split, len(train_items),
                        len(val))
    trainer = getattr(task, "trainer", None)
    if val_on_train and (trainer is None or trainer.is_global_zero):
        _keep_out_of_val_metrics(run_dir, task.metrics_name())
    summary["labels"] = n_labels
    return summary
