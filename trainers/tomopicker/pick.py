"""``cryoglean pick tomo``: cet_pick's ``test.py semi`` without Lightning.

Per tomogram: ``<tomo>.txt`` with one pick per line as ``x z y`` (``--with_score``: ``x z y
score``), integers in voxels of the volume as ``--order`` loads it with z uncompressed (for
``xzy``, IMOD's (x, y, z) of the file: ``point2model``-ready), and ``<tomo>_hm.mrc``, the
heatmap laid out like the file (x and y halved; for ``xzy`` cet_pick's own layout). With
``--output_type FMT`` the same picks go through the registry into ``OUTPUT/FMT/``, in the
DESIGN frame (voxels of the tomogram file). The volume goes through the network in chunks of
``--chunk`` slices (the 2-D part slice by slice; the 3-D head with a 3-slice halo), so memory
stays bounded and results equal a whole-volume pass.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from trainers.tomopicker.options import PickOptions

HALO = 3  # slices the 3-D head sees on each side: two 3×3×3 convs and the (3, 1, 1) head


def load_model(path: str | Path, device: str = "cpu"):
    """(network in eval mode, its training options) from ``model_*.pth`` or a ``.ckpt``."""
    from trainers.core.checkpoint import hparams, load_checkpoint, net_state
    from trainers.tomopicker.network import TomoNet

    ckpt = load_checkpoint(path)
    h = hparams(ckpt)
    if "arch" not in h:
        raise ValueError(f"{path}: not a tomogram-picker checkpoint (no arch in its options)")
    net = TomoNet(h["arch"], int(h.get("head_conv", 32)), int(h.get("last_k", 3)))
    state = net_state(ckpt) if any(k.startswith("net.") for k in ckpt.get("state_dict", {})) \
        else ckpt["state_dict"]
    net.load_state_dict(state)
    return net.to(device).eval(), h


def infer(net, vol: np.ndarray, chunk: int = 16, device: str = "cpu") -> np.ndarray:
    """Heatmap probabilities (D, H/2, W/2) of a loaded volume (D, H, W), H and W multiples of
    the network's stride."""
    import torch

    from trainers.tomopicker.losses import prob

    d = vol.shape[0]
    chunk = max(1, int(chunk))
    with torch.no_grad():
        feats = []
        for z0 in range(0, d, chunk):
            x = torch.from_numpy(np.ascontiguousarray(vol[z0:z0 + chunk]))[:, None].to(device)
            feats.append(net.unet(net.stem(x)).cpu())
        f = torch.cat(feats)  # (D, 32, h, w)
        out = []
        for z0 in range(0, d, chunk):
            lo, hi = max(0, z0 - HALO), min(d, z0 + chunk + HALO)
            y = f[lo:hi].permute(1, 0, 2, 3)[None].to(device)
            hm = prob(net.hm(net.feature_head(y)))[0, 0]
            out.append(hm[z0 - lo:z0 - lo + min(chunk, d - z0)].cpu())
    return torch.cat(out).numpy()


def _sources(opts: PickOptions) -> list[tuple[str, Path]]:
    given = [bool(opts.test_img_txt), bool(opts.data), bool(opts.dataset)]
    if sum(given) != 1:
        raise ValueError("give the tomograms to pick: --test_img_txt LIST, --data DIR or "
                         "--dataset OUT (one of them)")
    if opts.test_img_txt:
        from trainers.tomopicker.volume import read_image_list

        return sorted(read_image_list(opts.test_img_txt).items())
    if opts.data:
        folder = Path(opts.data)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such folder of tomograms")
        files = sorted(p for p in folder.iterdir()
                       if p.suffix.lower() in (".mrc", ".rec", ".st", ".map"))
        if not files:
            raise FileNotFoundError(f"{folder}: no tomogram (.mrc/.rec) in it")
        return [(p.stem, p) for p in files]
    from trainers.core.pick import micrograph_files

    return [(p.stem, p) for p in micrograph_files(None, opts.dataset, opts.split)]


def output_dir(opts: PickOptions) -> Path:
    if opts.output:
        return Path(opts.output)
    ckpt = Path(opts.load_model)
    run = ckpt.parent.parent if ckpt.parent.name == "weights" else ckpt.parent
    return run / (opts.out_id or "output")


def write_xzy(path: Path, xyz: np.ndarray, score: np.ndarray | None) -> None:
    """cet_pick's ``<tomo>.txt``: integer ``x z y`` per line (+ score)."""
    lines = []
    for i, (x, y, z) in enumerate(np.floor(xyz).astype(np.int64)):
        row = f"{x}\t{z}\t{y}"
        if score is not None:
            row += f"\t{float(score[i])}"
        lines.append(row + "\n")
    path.write_text("".join(lines))


def read_xzy(path: Path) -> np.ndarray:
    """(n, 3) x, y, z from a ``<tomo>.txt`` written by :func:`write_xzy`."""
    a = np.loadtxt(path, ndmin=2)
    if a.size == 0:
        return np.zeros((0, 3))
    return a[:, [0, 2, 1]]


def _heatmap_file(heat: np.ndarray, order: str) -> np.ndarray:
    from trainers.tomopicker.volume import AXES

    return np.ascontiguousarray(np.transpose(heat, np.argsort(AXES[order])), dtype=np.float32)


def pick_one(net, h: dict, name: str, path: Path, opts: PickOptions, out: Path,
             device: str = "cpu"):
    """Pick one tomogram and write its files; returns the picks as numpy columns (``x``, ``y``,
    ``z``, ``score``, ``diameter``; DESIGN frame, one ``micrograph`` name) and the file's shape.
    No pandas: every array task pays its import (issue 16)."""
    import mrcfile

    from trainers.core.datamodule import pad_to_multiple
    from trainers.tomopicker.decode import decode
    from trainers.tomopicker.network import n_blocks_of
    from trainers.tomopicker.volume import load_volume, loaded_to_file

    order = opts.order or h.get("order", "xzy")
    compress = bool(opts.compress or h.get("compress"))
    gauss = h.get("gauss", 0.0) if opts.gauss is None else opts.gauss
    vol, fshape = load_volume(path, order, compress, gauss)
    d, hh, ww = vol.shape
    heat = infer(net, pad_to_multiple(vol, 2 ** n_blocks_of(h["arch"])), opts.chunk, device)
    heat = heat[:, : hh // 2, : ww // 2]
    import torch

    p = decode(torch.from_numpy(heat), opts.K, opts.nms, opts.out_thresh, opts.cutoff_z,
               edge=opts.edge, valid_dhw=(d, hh, ww))
    xyz = p["xy"].copy()
    if compress:
        xyz[:, 2] *= 2
    write_xzy(out / f"{name}.txt", xyz, p["score"] if opts.with_score else None)
    with mrcfile.new(out / f"{name}_hm.mrc", overwrite=True) as mrc:
        mrc.set_data(_heatmap_file(heat, order))
    fxyz = loaded_to_file(np.floor(xyz), order)
    return {"micrograph": name, "x": fxyz[:, 0], "y": fxyz[:, 1], "z": fxyz[:, 2],
            "score": p["score"], "diameter": np.full(len(fxyz), float(h.get("bbox", 16)))}, fshape


def _voxel_size(path: Path) -> float:
    import mrcfile

    with mrcfile.open(path, permissive=True, header_only=True) as mrc:
        v = float(mrc.voxel_size.x)
    return v if v > 0 else 1.0


def pick_tomo(opts: PickOptions) -> dict:
    """Pick every tomogram of the list (or one ``--shard`` of it); returns counts and timing."""
    from harvest.progress import Progress
    from trainers.core.devices import pick_device
    from trainers.core.pick import as_picks, parse_shard
    from trainers.labels import format_name, registry, write_labels

    if opts.visual:
        raise ValueError("--visual draws 2D micrographs; for tomograms see the heatmap "
                         "<tomo>_hm.mrc, or the debug/ pictures of the training run")
    items = _sources(opts)
    items = [items[i] for i in parse_shard(opts.shard, len(items))]
    device = pick_device(opts.gpus)
    net, h = load_model(opts.load_model, device)
    out = output_dir(opts)
    out.mkdir(parents=True, exist_ok=True)
    fmt = format_name(opts.output_type) if opts.output_type else None
    if fmt and "3d" not in registry().get(fmt).capabilities:
        raise ValueError(f"--output_type {opts.output_type}: that format holds no z; choose "
                         f"a 3D one ({', '.join(registry().names(3))})")
    total, t0 = 0, time.time()
    with Progress(len(items), "pick", unit="tomogram", enabled=not opts.quiet) as bar:
        for name, path in items:
            picks, _ = pick_one(net, h, name, path, opts, out, device)
            total += len(picks["x"])
            if fmt:
                extra = {}
                if "voxel_spacing" in registry().get(fmt).write_needs:
                    extra["voxel_spacing"] = {name: _voxel_size(path)}
                write_labels(as_picks(picks), out / fmt, fmt, micrographs=[name], **extra)
            bar.update(1)
    dt = time.time() - t0
    return {"micrographs": len(items), "picks": total, "seconds": dt, "output": str(out),
            "micrographs_per_s": len(items) / dt if dt > 0 else float("nan")}
