"""``cryoglean train centernet``: EPicker's options → the shared core (data, task, driver)."""

from __future__ import annotations

import functools
import logging

import numpy as np

from trainers.centernet.options import MODES, TrainOptions, native_format

log = logging.getLogger(__name__)
EPICKER_PARTICLE_SIZE = 19.0  # EPicker's default diameter at its 1024-px input


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


def fit_labels_to_mode(samples, opts: TrainOptions) -> list:
    """Fiber labels densified along each filament; sizes kept only in vesicle mode."""
    from trainers.centernet.decode import densify_filaments

    for s in samples:
        if opts.mode == "fiber" and (s.group >= 0).any():
            s.xy, s.group = densify_filaments(s.xy, s.group, opts.fiber_step)
        if opts.mode != "vesicle":
            s.radius = np.full(len(s.xy), np.nan)
    return samples


def _particle_size(opts: TrainOptions, src, train) -> float:
    """``--particle_size``, else the manifest's diameter (px of the exported images) × the
    network-input scale, else EPicker's 19."""
    if opts.particle_size is not None:
        return float(opts.particle_size)
    if src.kind == "export" and src.diameter_px and train:
        scale = float(np.median([s.prep.sx for s in train]))
        size = src.diameter_px * scale
        log.info("particle size %.1f px at the input (export diameter %.1f px × %.3f)",
                 size, src.diameter_px, scale)
        return size
    return EPICKER_PARTICLE_SIZE


def train_centernet(opts: TrainOptions) -> dict:
    """Train a CenterNet picker into ``OUTPUT/EXP_ID`` (layout in :mod:`trainers.core.driver`).

    Returns the driver's summary (run_dir, best/last checkpoints, last validation summary).
    """
    import pytorch_lightning as pl

    from trainers.augment import Augmenter
    from trainers.centernet.exemplar import (
        interleaved_batches,
        load_exemplars,
        select_exemplars,
        write_exemplars,
    )
    from trainers.centernet.targets import CenterNetEncoder
    from trainers.centernet.task import CenterNetTask
    from trainers.centernet.view import STRIDE_MULTIPLE, prepare, to_tensor_image
    from trainers.core.checkpoint import hparams, load_checkpoint, net_state
    from trainers.core.datamodule import make_datamodule
    from trainers.core.dataset import training_data
    from trainers.core.driver import RunSettings, run_dir_of, saved_options, train_run

    _check(opts)
    pl.seed_everything(opts.seed, workers=True, verbose=False)
    run_dir = run_dir_of(opts.output, opts.exp_id)
    old_state = None
    if opts.load_model:
        ckpt = load_checkpoint(opts.load_model)
        old_state = net_state(ckpt)
        arch = hparams(ckpt)
        for k in ("width", "blocks", "head_conv"):
            if k in arch and arch[k] != getattr(opts, k):
                log.info("using %s=%s from %s", k, arch[k], opts.load_model)
                setattr(opts, k, arch[k])
    if opts.resume:
        saved = saved_options(run_dir)
        for k in ("width", "blocks", "head_conv", "mode", "particle_size", "input_width"):
            setattr(opts, k, saved.get(k, getattr(opts, k)))

    if not opts.dataset and not opts.label_type:
        opts.label_type = native_format()
    view = functools.partial(prepare, input_width=opts.input_width)
    train, val, split, src = training_data(opts, view)
    train, val = fit_labels_to_mode(train, opts), fit_labels_to_mode(val, opts)
    opts.particle_size = _particle_size(opts, src, train)
    if opts.dataset:
        opts.label_type = src.format  # the manifest's format (exemplars are written in it)
    exemplars = []
    if opts.continual and opts.load_exemplar:
        exemplars = fit_labels_to_mode(load_exemplars(opts.load_exemplar, view), opts)

    options = opts.to_dict()
    crop = opts.crop or opts.input_width
    encoder = CenterNetEncoder(particle_size=opts.particle_size)
    augmenter = Augmenter(crop=crop, margin=min(128, crop // 4))
    dm = make_datamodule(train, val, encoder, augmenter, to_tensor_image, opts.batch_size,
                         opts.num_workers, opts.repeat, replay_samples=exemplars or None,
                         replay_batches=interleaved_batches, multiple=STRIDE_MULTIPLE)
    task = CenterNetTask(options, old_state=old_state if opts.continual else None)
    if old_state is not None and not opts.resume:
        task.net.load_state_dict(old_state)
    task.val_samples = val
    settings = RunSettings(
        max_epochs=opts.num_epoch, gpus=opts.gpus, resume=opts.resume, quiet=opts.quiet,
        val_every=opts.val_intervals, limit_train_batches=opts.limit_train_batches,
        max_minutes=opts.max_minutes, fast_dev_run=opts.fast_dev_run,
        # the exemplar replay schedule is a batch sampler of its own
        distributed_sampler=not opts.continual,
    )
    summary = train_run(task, dm, settings, run_dir, options, split, len(train), len(val))
    if opts.output_exemplar:
        chosen = select_exemplars(train, opts.sampling_size)
        entries = write_exemplars(chosen, opts.output_exemplar, opts.label_type,
                                  previous=opts.load_exemplar)
        summary["exemplars"] = len(entries)
    return summary
