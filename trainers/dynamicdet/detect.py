"""``cryoglean detect`` (PartiNet's ``partinet detect``) and ``cryoglean pick dynamicdet``.
Imports no Lightning.

Output, as PartiNet's: ``PROJECT/exp*/labels/<mic>.txt`` with one line per pick
``0 xc yc w h conf`` (normalised by the micrograph's width and height, ``%g``),
``PROJECT/exp*/<mic>.png`` (the micrograph with its boxes; not with ``--nosave``) and
``PROJECT/partinet_detect.log`` (appended: per-image counts, route and time, then
"N micrographs processed in T s" and "Average processing rate: X micrographs/s"). With
``--shard K/N`` (Slurm arrays) every task writes into ``PROJECT/NAME`` itself, not a numbered
folder, so one array run fills one ``labels/`` folder.

Unlike PartiNet's detect, ``--dy-thres`` is honoured and ``--easy-fraction`` turns the
router-score percentiles stored by step 2 into a threshold. Several ``--device`` GPUs: one
model per device, each over a contiguous part of the micrograph list, in threads.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
LOG_NAME = "partinet_detect.log"


class DetectError(ValueError):
    """Options that detect cannot use."""


def load_model(path, device: str = "cpu"):
    """(network in eval mode, run options, router calibration or None)."""
    from trainers.core.checkpoint import hparams, load_checkpoint, net_state
    from trainers.dynamicdet.network import DynamicDet

    ck = load_checkpoint(path)
    h = hparams(ck)
    if "model_cfg" not in h:
        raise DetectError(f"{path}: not a DynamicDet checkpoint (no model_cfg); give "
                          "PROJECT/exp/weights/best.pt of cryoglean train dynamicdet")
    net = DynamicDet(dict(h["model_cfg"]))
    net.load_state_dict(net_state(ck))
    return net.to(device).eval(), h, ck.get("router_calibration")


def threshold(dy_thres, easy_fraction, calibration) -> float:
    """The router threshold: ``--dy-thres``, else the score above which ``easy_fraction`` of
    the validation images lay (step 2's percentiles), else 0.5 (DynamicDet's default)."""
    if dy_thres is not None and easy_fraction is not None:
        raise DetectError("give --dy-thres or --easy-fraction, not both")
    if dy_thres is not None:
        return float(dy_thres)
    if easy_fraction is None:
        return 0.5
    f = float(easy_fraction)
    if not 0 <= f <= 1:
        raise DetectError(f"--easy-fraction {f}: must be between 0 and 1")
    if not calibration or not calibration.get("percentiles"):
        raise DetectError("--easy-fraction needs router percentiles in the checkpoint: use the "
                          "weights of a step-2 run, or give --dy-thres")
    if f >= 1:
        return float("-inf")
    if f <= 0:
        return float("inf")
    pct = np.asarray(calibration["percentiles"], dtype=np.float64)
    return float(np.interp((1 - f) * 100, np.arange(len(pct)), pct))


def devices_of(device: str | None) -> list[str]:
    import torch

    d = (device or "").strip()
    if d.lower() == "cpu" or (not d and not torch.cuda.is_available()):
        return ["cpu"]
    if not d:
        return ["cuda:0"]
    try:
        ids = [int(x) for x in d.split(",") if x.strip()]
    except ValueError:
        raise DetectError(f"--device {d!r}: expected GPU ids like 0 or 0,1, or cpu") from None
    if not torch.cuda.is_available():
        log.warning("--device %s asked for GPUs but none is available; using the CPU", d)
        return ["cpu"]
    return [f"cuda:{i}" for i in ids]


def _load_batch(paths: list[Path], img_size: int, ch: int):
    """Network inputs of micrographs of one padded shape: (B, ch, H, W) and (path, 8-bit
    image, scale, letterboxed (rows, columns)) per micrograph."""
    from trainers.dynamicdet.data import STRIDE, letterbox, read_gray8, standardise, to_input

    imgs, metas = [], []
    for p in paths:
        img8 = read_gray8(p)
        im, r = letterbox(img8, img_size)
        imgs.append(standardise(im))
        metas.append((p, img8, r, im.shape))
    H = max(-(-i.shape[0] // STRIDE) * STRIDE for i in imgs)
    W = max(-(-i.shape[1] // STRIDE) * STRIDE for i in imgs)
    x = np.zeros((len(imgs), ch, H, W), np.float32)
    for k, i in enumerate(imgs):
        x[k, :, : i.shape[0], : i.shape[1]] = to_input(i, ch)
    return x, metas


def _padded(path: Path, img_size: int) -> tuple[int, int]:
    from trainers.dynamicdet.data import STRIDE
    from trainers.labels import image_size

    nx, ny = image_size(path)
    r = img_size / max(nx, ny)
    return (-(-max(1, round(ny * r)) // STRIDE) * STRIDE,
            -(-max(1, round(nx * r)) // STRIDE) * STRIDE)


def run_batch(net, paths, img_size, thr, conf, iou, device):
    """Detections of micrographs in px of their files: list of (path, 8-bit image,
    (k, 5) x1 y1 x2 y2 conf, router score), in the order of ``paths``. Micrographs of
    different padded shapes run in separate calls (padding would change what the network
    sees), so a batch gives what each micrograph gives alone. ``conf`` is the confidence
    threshold (kept: conf > it, before NMS), the score a training run's val_metrics.json
    thresholds. Boxes centred in the padding are dropped, as validation drops them (they
    would be clipped to the border: picks on no particle); the others are clipped to the
    micrograph as PartiNet's."""
    import torch

    from trainers.dynamicdet.boxes import postprocess

    groups: dict[tuple[int, int], list[int]] = {}
    for k, p in enumerate(paths):
        groups.setdefault(_padded(Path(p), img_size) if len(paths) > 1 else (0, 0),
                          []).append(k)
    out = [None] * len(paths)
    for idx in groups.values():
        x, metas = _load_batch([paths[k] for k in idx], img_size, int(net.cfg["ch"]))
        pred, score = net.infer(torch.from_numpy(x).to(device), thr)
        dets = postprocess(pred.float(), conf, iou)
        for k, (p, img8, r, (lh, lw)), d, s in zip(idx, metas, dets, score.tolist()):
            d = d[:, :5].cpu().numpy().astype(np.float64)
            centre = (d[:, 0:2] + d[:, 2:4]) / 2
            d = d[(centre[:, 0] < lw) & (centre[:, 1] < lh)]
            d[:, :4] /= r
            ny, nx = img8.shape
            d[:, [0, 2]] = d[:, [0, 2]].clip(0, nx)
            d[:, [1, 3]] = d[:, [1, 3]].clip(0, ny)
            out[k] = (p, img8, d, float(s))
    return out


def label_lines(det: np.ndarray, nx: int, ny: int) -> str:
    """PartiNet's label file text: ``0 xc yc w h conf`` normalised, ``%g``."""
    lines = []
    for x1, y1, x2, y2, c in det:
        row = (0.0, (x1 + x2) / 2 / nx, (y1 + y2) / 2 / ny, (x2 - x1) / nx, (y2 - y1) / ny, c)
        lines.append(("%g " * 6).rstrip() % row)
    return "".join(line + "\n" for line in lines)


def _files(source: str) -> list[Path]:
    from trainers.data import list_micrographs

    p = Path(source)
    if p.is_file():
        return [p]
    return list_micrographs(p)


def detect(opts) -> dict:
    """Run ``cryoglean detect`` (see the module docstring); returns counts and timing."""
    from harvest.progress import Progress
    from trainers.core.pick import parse_shard
    from trainers.dynamicdet.report import draw_boxes
    from trainers.dynamicdet.train import increment_run

    files = _files(opts.source)
    files = [files[i] for i in parse_shard(opts.shard, len(files))]
    devs = devices_of(opts.device)
    models = [load_model(opts.weight, d) for d in devs]
    h, calib = models[0][1], models[0][2]
    thr = threshold(opts.dy_thres, opts.easy_fraction, calib)
    img_size = int(opts.img_size or h.get("img_size", 1280))
    if img_size % 64:
        raise DetectError(f"--img-size {img_size}: must be a multiple of 64")
    # The tasks of a Slurm array (--shard K/N) write into one run folder, PROJECT/NAME: numbered
    # folders (exp2, exp3, ...) would race and scatter one detection run over several.
    run = Path(opts.project) / opts.name if opts.shard else increment_run(opts.project, opts.name)
    (run / "labels").mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()
    lines: list[str] = []
    counts = {"picks": 0, "easy": 0}
    bar = Progress(len(files), "detect", unit="micrograph", enabled=not opts.quiet)
    batch = max(1, int(opts.batch))

    def work(k: int, part: list[Path]):
        net, dev = models[k][0], devs[k]
        for i in range(0, len(part), batch):
            t0 = time.time()
            res = run_batch(net, part[i : i + batch], img_size, thr, opts.conf_thres,
                            opts.iou_thres, dev)
            for p, img8, det, s in res:
                ny, nx = img8.shape
                (run / "labels" / f"{p.stem}.txt").write_text(label_lines(det, nx, ny))
                if not opts.nosave:
                    import cv2

                    cv2.imwrite(str(run / f"{p.stem}.png"), draw_boxes(img8, det[:, :4]))
                ms = (time.time() - t0) * 1000 / len(res)
                route = "easy" if s >= thr else "hard"
                with lock:
                    counts["picks"] += len(det)
                    counts["easy"] += route == "easy"
                    lines.append(f"{p}: {len(det)} particles, {route} (router {s:.3f}), "
                                 f"Done. ({ms:.1f}ms)")
                    bar.update(1)

    t0 = time.time()
    parts = [files[int(len(files) * k / len(devs)): int(len(files) * (k + 1) / len(devs))]
             for k in range(len(devs))]
    if len(devs) == 1:
        work(0, parts[0])
    else:
        threads = [threading.Thread(target=work, args=(k, parts[k])) for k in range(len(devs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    bar.close()
    dt = time.time() - t0
    rate = len(files) / dt if dt > 0 else float("nan")
    lines.append(f"{len(files)} micrographs processed in {dt:.2f} s")
    lines.append(f"Average processing rate: {rate:.2f} micrographs/s")
    Path(opts.project).mkdir(parents=True, exist_ok=True)
    with (Path(opts.project) / LOG_NAME).open("a") as fh:
        fh.write("".join(line + "\n" for line in lines))
    return {"run_dir": str(run), "micrographs": len(files), "picks": counts["picks"],
            "easy": counts["easy"], "dy_thres": thr, "seconds": dt, "micrographs_per_s": rate}


def pick_dynamicdet(opts) -> dict:
    """``cryoglean pick dynamicdet``: the core's pick loop (any registry format)."""
    import pandas as pd

    from trainers.core.devices import pick_device
    from trainers.core.pick import pick_folder

    device = pick_device(opts.gpus)
    net, h, _ = load_model(opts.load_model, device)
    img_size = int(h.get("img_size", 1280))

    def one(path: Path) -> pd.DataFrame:
        (_, _, d, _), = run_batch(net, [path], img_size, float(opts.dy_thres),
                                  opts.conf_thres, opts.iou_thres, device)
        return pd.DataFrame({"micrograph": path.stem, "x": (d[:, 0] + d[:, 2]) / 2,
                             "y": (d[:, 1] + d[:, 3]) / 2, "score": d[:, 4],
                             "diameter": np.maximum(d[:, 2] - d[:, 0], d[:, 3] - d[:, 1])})

    return pick_folder(one, opts.data, opts.output, opts.output_type, opts.shard, opts.visual,
                       opts.quiet, opts.dataset, opts.split)
