"""Generated tomograms: how long they take, how much memory, and how hard they are.

Hardness is measured with a naive baseline any learned tomogram picker must beat: Gaussian
low-pass (σ voxels), local minima (dark protein) in 5×7×7 windows, the 400 strongest, matched to
the truth (both size classes) with Hungarian matching on min(0, d² − r²) (Topaz's cost) at
r = 8 voxels (½ of cet_pick's bbox 16), reporting the best F1 over the number of picks kept (an
oracle threshold: an upper bound for this baseline).

    python benchmarks/bench_tomo_synth.py [--snr 0.1 0.03 1.0] [--seed 1]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from harvest.synth import FacilityConfig
from harvest.synth.tomo_volume import simulate_tomogram


def blob_baseline_f1(vol: np.ndarray, truth: np.ndarray, sigma: float, r: float) -> float:
    smooth = -ndimage.gaussian_filter(vol.astype(np.float64), sigma)
    z, y, x = np.nonzero(smooth == ndimage.maximum_filter(smooth, size=(5, 7, 7)))
    order = np.argsort(-smooth[z, y, x])[:400]
    picks = np.stack([x, y, z], 1)[order].astype(float)
    best = 0.0
    for k in range(10, len(picks) + 1, 5):
        d = cdist(picks[:k], truth)
        i, j = linear_sum_assignment(np.minimum(0.0, d**2 - r**2))
        tp = int((d[i, j] <= r).sum())
        if tp:
            p, rc = tp / k, tp / len(truth)
            best = max(best, 2 * p * rc / (p + rc))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--snr", type=float, nargs="+", default=[0.1, 0.03, 1.0])
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    print("| size (voxels) | particles | seconds | peak RSS GB |")
    print("|---|---|---|---|")
    for size, n in (((128, 128, 48), (10, 6)), ((256, 256, 96), (60, 40)),
                    ((512, 512, 256), (300, 200))):
        cfg = FacilityConfig(tomo_size=size, tomo_particles=n).validate()
        t = time.perf_counter()
        vol, truth = simulate_tomogram(cfg, np.random.default_rng(args.seed))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"| {'x'.join(map(str, size))} | {len(truth.particles)} | "
              f"{time.perf_counter() - t:.1f} | {peak:.2f} |", flush=True)
    print("\n| SNR | baseline best F1, σ 1.5 / 2.5 / 3.5 (256x256x96, 60+40 particles) |")
    print("|---|---|")
    for snr in args.snr:
        cfg = FacilityConfig(tomo_size=(256, 256, 96), tomo_particles=(60, 40),
                             tomo_snr=snr).validate()
        vol, truth = simulate_tomogram(cfg, np.random.default_rng(args.seed))
        f1 = [blob_baseline_f1(vol, truth.particles, s, 8.0) for s in (1.5, 2.5, 3.5)]
        print(f"| {snr:g} | {' / '.join(f'{v:.3f}' for v in f1)} |", flush=True)


if __name__ == "__main__":
    main()
