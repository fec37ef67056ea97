"""``cryoglean pick centernet``: a checkpoint's network and EPicker's view in the core's pick
loop. Imports no Lightning, and no pandas on the way to the label files (start-up, issue 16)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from trainers.centernet.options import PickOptions, native_format

if TYPE_CHECKING:
    import pandas as pd


def load_picker(path: str | Path, device: str = "cpu"):
    """(network in eval mode, its training options) from a checkpoint."""
    from trainers.centernet.network import CenterNet
    from trainers.core.checkpoint import hparams, load_checkpoint, net_state

    ckpt = load_checkpoint(path)
    h = hparams(ckpt)
    net = CenterNet(width=int(h.get("width", 16)), blocks=int(h.get("blocks", 1)),
                    head_conv=int(h.get("head_conv", 64)))
    net.load_state_dict(net_state(ckpt))
    return net.to(device).eval(), h


def pick_micrograph(net, h: dict, path, opts: PickOptions, device: str = "cpu") -> pd.DataFrame:
    """Picks of one micrograph in px of that micrograph file (DESIGN frame):
    DataFrame[micrograph, x, y, score, diameter | radius | filament]."""
    import pandas as pd

    return pd.DataFrame(pick_columns(net, h, path, opts, device))


def pick_columns(net, h: dict, path, opts: PickOptions, device: str = "cpu") -> dict:
    """:func:`pick_micrograph` as numpy columns (``micrograph`` one string), what the pick
    loop writes without pandas."""
    import torch

    from trainers.centernet.decode import decode, link_fibers
    from trainers.centernet.view import STRIDE_MULTIPLE, prepare, to_input, to_tensor_image
    from trainers.core.datamodule import pad_to_multiple

    prep = prepare(path, int(h.get("input_width", 1024)))
    img = pad_to_multiple(prep.image, STRIDE_MULTIPLE)
    with torch.no_grad():
        out = net(torch.from_numpy(to_tensor_image(img))[None].to(device))
    p = decode(out, K=opts.K, vis_thresh=opts.vis_thresh, edge=to_input(opts.edge, h),
               min_distance=to_input(opts.min_distance, h), valid_hw=prep.image.shape)[0]
    cols = {
        "micrograph": prep.path.stem,
        "x": p["xy"][:, 0] / prep.sx,
        "y": p["xy"][:, 1] / prep.sy,
        "score": p["score"],
    }
    mode = h.get("mode", "particle")
    if mode == "vesicle":
        cols["radius"] = p["radius"] / prep.sx
    elif mode == "fiber":
        g = link_fibers(p["xy"], p["score"], float(h.get("link_distance", 120.0)),
                        float(h.get("ang_thresh", 0.3)))
        keep = np.asarray(g) >= 0
        cols = {k: v if isinstance(v, str) else np.asarray(v)[keep] for k, v in cols.items()}
        cols["filament"] = np.asarray(g)[keep]
    else:
        cols["diameter"] = np.full(len(cols["x"]), float(h.get("particle_size") or 19.0)
                                   / prep.sx)
    return cols


def pick_centernet(opts: PickOptions) -> dict:
    """Pick every micrograph of ``opts.data`` (or one shard of them) and write one label file
    per micrograph into ``opts.output`` through the registry; returns counts and timing."""
    from trainers.core.devices import pick_device
    from trainers.core.pick import pick_folder, trained_geometry

    if not opts.output_type:
        opts.output_type = native_format()
    device = pick_device(opts.gpus)
    net, h = load_picker(opts.load_model, device)
    return pick_folder(lambda f: pick_columns(net, h, f, opts, device), opts.data,
                       opts.output, opts.output_type, opts.shard, opts.visual, opts.quiet,
                       opts.dataset, opts.split,
                       trained_geometry(opts.load_model) if opts.visual else None)
