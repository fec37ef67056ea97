"""Benchmark: de-duplication of picks across particle sets (converters.select.deduplicate).

Generates micrographs with ``n`` particles each, seen by three sets (refined, classified3d,
picked) with sub-pixel jitter, and times the KD-tree greedy de-duplication against a naive
baseline (full pairwise distance matrix per micrograph, same greedy rule), side by side.
Also times Fourier cropping a 4096² micrograph to width 1024 (EPicker's view) against
``cv2.resize(INTER_AREA)`` as a reference point.

Run: .venv/bin/python benchmarks/bench_export_dedup.py
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from converters import images
from converters.select import _priority_order, deduplicate


def make_picks(n_mics: int, per_mic: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for m in range(n_mics):
        xy = rng.uniform(0, 4096, size=(per_mic, 2))
        for set_id, stage in ((1, "refined"), (2, "classified3d"), (3, "picked")):
            jitter = rng.normal(0, 0.7, size=xy.shape)
            frames.append(pd.DataFrame({
                "mic": f"1:mic_{m:05d}", "x": xy[:, 0] + jitter[:, 0],
                "y": xy[:, 1] + jitter[:, 1], "stage": stage, "set_id": set_id,
                "score": rng.uniform(size=per_mic),
            }))
    return pd.concat(frames, ignore_index=True)


def naive(picks: pd.DataFrame, radius: float) -> pd.Series:
    keep = pd.Series(True, index=picks.index)
    order = _priority_order(picks)
    for _, grp in order.groupby("mic", sort=False):
        xy = grp[["x", "y"]].to_numpy()
        d2 = ((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1)
        kept = np.zeros(len(grp), dtype=bool)
        for j in range(len(grp)):
            kept[j] = not (kept[:j] & (d2[j, :j] < radius * radius)).any()
        keep.loc[grp.index[~kept]] = False
    return keep


def timed(fn, *args, repeat: int = 3):
    best = np.inf
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    print("| micrographs | picks | kd-tree s | naive s | naive / kd-tree | same result |")
    print("|---:|---:|---:|---:|---:|:--|")
    for n_mics, per_mic in ((20, 300), (100, 300), (20, 1500)):
        picks = make_picks(n_mics, per_mic)
        t_kd, k_kd = timed(deduplicate, picks, 20.0)
        t_nv, k_nv = timed(naive, picks, 20.0, repeat=1)
        print(f"| {n_mics} | {len(picks)} | {t_kd:.3f} | {t_nv:.3f} | {t_nv / t_kd:.1f}x "
              f"| {bool((k_kd == k_nv).all())} |")

    rng = np.random.default_rng(0)
    img = rng.normal(size=(4096, 4096)).astype(np.float32)
    shape = images.output_shape(4096, 4096, width=1024)
    t_fc, _ = timed(images.fourier_crop, img, shape)
    import cv2

    t_cv, _ = timed(cv2.resize, img, (shape[1], shape[0]), None, 0, 0, cv2.INTER_AREA)
    print()
    print("| 4096² → 1024² | seconds |")
    print("|---|---:|")
    print(f"| fourier_crop (rfft2 crop) | {t_fc:.3f} |")
    print(f"| cv2.resize INTER_AREA (reference, not equivalent) | {t_cv:.3f} |")
    print(f"| ratio fourier / cv2 | {t_fc / t_cv:.1f}x |")


if __name__ == "__main__":
    main()
