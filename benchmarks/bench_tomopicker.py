"""Tomogram picker (cet_pick / MiLoPYP refinement) on generated tomograms, CPU.

Tomograms: NZ×NY×NX voxels with particles of two sizes (the target, radius R_BIG voxels, and
smaller decoys of radius R_SMALL), membranes (thin dense sheets) and gold beads (small, very
dense) as junk, a missing wedge (±60° tilt range) and a CTF-like band-pass, noise at SNR
``--snr``; truth known. Training tomograms have 30 % of their target particles labelled, all
inside a subregion (the x-slab holding them), as cet_pick's docs recommend. Held-out
tomograms are scored against every target particle at radius 0.5 × bbox (Topaz's d² − r²):
P/R/F1 at cet_pick's out_thresh 0.2, at the threshold chosen on one fully labelled
validation tomogram (its own random stream; the held-out truth is never used to choose
anything), and the Topaz PR curve's best F1 (an oracle threshold) and AUPRC.

Configurations (same labels, same seeds): ``pu+cr`` = nnPU loss (τ) + contrastive
regularisation (sampled anchors) + consistency; ``focal`` = plain focal loss (``--pn``: the
unlabelled particles count as negatives). A ``samples`` check compares anchor-row sample sizes.
Then inference time and peak memory on a 512×512×256 tomogram.

    PYTHONPATH=. python benchmarks/bench_tomopicker.py --out /tmp/bt [--seeds 3] [--epochs 40]
    PYTHONPATH=. python benchmarks/bench_tomopicker.py --rescore /tmp/bt   # add the chosen
                                                                           # threshold to old runs
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

R_BIG, R_SMALL = 4.0, 2.0


def tomogram(shape, n_big, n_small, snr, rng):
    nz, ny, nx = shape
    vol = np.zeros(shape, np.float32)
    zz, yy, xx = np.ogrid[0:nz, 0:ny, 0:nx]
    pts = []

    def place(r, n, margin):
        out = []
        for _ in range(n * 400):
            if len(out) == n:
                break
            c = np.array([rng.uniform(margin, nx - margin), rng.uniform(margin, ny - margin),
                          rng.uniform(nz * 0.25, nz * 0.75)])
            if all(np.linalg.norm(c - p) > 2.6 * R_BIG for p in pts + out):
                out.append(c)
        return out

    big = place(R_BIG, n_big, 24)
    pts += big
    small = place(R_SMALL, n_small, 8)
    pts += small
    for cs, r in ((big, R_BIG), (small, R_SMALL)):
        for x, y, z in cs:
            sl = (slice(max(0, int(z - 3 * r)), int(z + 3 * r) + 1),
                  slice(max(0, int(y - 3 * r)), int(y + 3 * r) + 1),
                  slice(max(0, int(x - 3 * r)), int(x + 3 * r) + 1))
            d2 = (zz[sl[0]] - z) ** 2 + (yy[:, sl[1]] - y) ** 2 + (xx[:, :, sl[2]] - x) ** 2
            vol[sl] += np.exp(-d2 / (2 * r * r)).astype(np.float32)
    # membranes: two curved sheets; gold: a few very dense dots
    for _ in range(2):
        y0, a = rng.uniform(0, ny), rng.uniform(-0.3, 0.3)
        dist = np.abs(yy - (y0 + a * xx + 6 * np.sin(xx / 17.0)))
        vol += 0.9 * np.exp(-dist ** 2 / 2.0).astype(np.float32) * np.ones((nz, 1, 1),
                                                                             np.float32)
    for _ in range(4):
        x, y, z = rng.uniform(10, nx - 10), rng.uniform(10, ny - 10), rng.uniform(5, nz - 5)
        d2 = (zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2
        vol += 4.0 * np.exp(-d2 / 2.0).astype(np.float32)
    # missing wedge (tilts ±60°: (kz, kx) with |kz| > |kx|·tan 60° missing) + band-pass
    f = np.fft.rfftn(vol)
    kz = np.fft.fftfreq(nz)[:, None, None]
    ky = np.fft.fftfreq(ny)[None, :, None]
    kx = np.fft.rfftfreq(nx)[None, None, :]
    wedge = np.abs(kz) <= np.abs(kx) * np.tan(np.radians(60)) + 1e-9
    k = np.sqrt(kx ** 2 + ky ** 2 + kz ** 2)
    band = (1 - np.exp(-(k / 0.02) ** 2)) * np.exp(-(k / 0.25) ** 2)
    sig = np.fft.irfftn(f * wedge * band, s=shape).astype(np.float32)
    sig_std = float(sig[vol > 0.5].std()) if (vol > 0.5).any() else float(sig.std())
    noisy = -sig + rng.normal(scale=sig_std / np.sqrt(snr), size=shape).astype(np.float32)
    return noisy.astype(np.float32), np.array(big).reshape(-1, 3)


def write_data(root: Path, n_train, n_test, shape, snr, seed, frac=0.3):
    import mrcfile

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    truth, lists = {}, {"train": {}, "test": {}}
    labels = []
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            name = f"{split}{i}"
            vol, big = tomogram(shape, 40, 40, snr, rng)
            path = root / f"{name}.mrc"
            with mrcfile.new(path, overwrite=True) as m:
                m.set_data(vol)
                m.voxel_size = 10.0
            truth[name] = big
            lists[split][name] = path
            if split == "train":
                # label the particles of the x-slab that holds `frac` of them
                cut = np.quantile(big[:, 0], frac)
                labels += [(name, *p) for p in big[big[:, 0] <= cut]]
    (root / "truth.json").write_text(json.dumps({k: v.tolist() for k, v in truth.items()}))
    for split in ("train", "test"):
        (root / f"{split}_imgs.txt").write_text("image_name\trec_path\n" + "".join(
            f"{k}\t{v}\n" for k, v in lists[split].items()))
    (root / "train_coords.txt").write_text("image_name\tx_coord\ty_coord\tz_coord\n" + "".join(
        f"{n}\t{int(x)}\t{int(y)}\t{int(z)}\n" for n, x, y, z in labels))
    return truth, len(labels), sum(len(v) for k, v in truth.items() if k.startswith("train"))


def run(cmd, log):
    """Run a cryoglean command under ``/usr/bin/time -v``: (wall s, CPU s, peak RSS MB)."""
    t0 = time.time()
    r = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "cryoglean.cli", *cmd],
                       capture_output=True, text=True)
    log.write_text(r.stdout + r.stderr)
    if r.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")
    stats = {}
    for ln in r.stderr.splitlines():
        key, _, val = ln.strip().rpartition(": ")
        stats[key] = val
    cpu = float(stats.get("User time (seconds)", "nan")) + float(
        stats.get("System time (seconds)", "nan"))
    rss = float(stats.get("Maximum resident set size (kbytes)", "nan")) / 1024
    return time.time() - t0, cpu, rss


def peak_rss_children_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def _picks(pick_dir: Path, names):
    import pandas as pd

    from trainers.tomopicker.pick import read_xzy

    out = []
    for name in names:
        a = np.loadtxt(pick_dir / f"{name}.txt", ndmin=2)
        p = read_xzy(pick_dir / f"{name}.txt")
        out.append(pd.DataFrame({"micrograph": name, "x": p[:, 0], "y": p[:, 1],
                                 "z": p[:, 2], "score": a[:, 3] if a.size else []}))
    return pd.concat(out)


def score(pick_dir: Path, truth: dict, bbox: int, thresh: float,
          chosen: float | None = None) -> dict:
    """Held-out scores: P/R/F1 at ``thresh`` (picks above it, rematched), the Topaz PR
    curve's best F1 (an oracle threshold) and AUPRC, and with ``chosen`` P/R/F1 at the
    threshold chosen on the validation tomogram (:func:`choose_threshold`)."""
    import pandas as pd

    from trainers.evaluate import evaluate_picks

    names = [n for n in truth if n.startswith("test")]
    picks = _picks(pick_dir, names)
    tr = pd.concat(pd.DataFrame({"micrograph": n, "x": truth[n][:, 0], "y": truth[n][:, 1],
                                 "z": truth[n][:, 2]}) for n in names)
    s = evaluate_picks(picks, tr, 0.5 * bbox, threshold=thresh).summary
    out = {k: float(s[k]) for k in ("f1", "precision", "recall", "best_f1", "best_threshold",
                                    "auprc")}
    if chosen is not None:
        c = evaluate_picks(picks, tr, 0.5 * bbox, threshold=chosen).summary
        out.update(sel_threshold=chosen, sel_f1=float(c["f1"]),
                   sel_precision=float(c["precision"]), sel_recall=float(c["recall"]))
    return out


def write_val(root: Path, shape, snr: float) -> dict:
    """One validation tomogram (same generator, its own random stream: the training and
    held-out data stay as they are), fully labelled: for choosing the score threshold."""
    import mrcfile

    path = root / "val0.mrc"
    tpath = root / "val_truth.json"
    if not tpath.is_file():
        vol, big = tomogram(tuple(shape), 40, 40, snr, np.random.default_rng(1000))
        with mrcfile.new(path, overwrite=True) as m:
            m.set_data(vol)
            m.voxel_size = 10.0
        (root / "val_imgs.txt").write_text(f"image_name\trec_path\nval0\t{path}\n")
        tpath.write_text(json.dumps({"val0": big.tolist()}))
    return {k: np.asarray(v, dtype=np.float64).reshape(-1, 3)
            for k, v in json.loads(tpath.read_text()).items()}


def choose_threshold(pick_dir: Path, val_truth: dict, bbox: int) -> tuple[float, float]:
    """The score threshold chosen without held-out truth: the best F1 of the picks on the
    validation tomogram. (Choosing it on the training tomograms' labelled subregion does not
    work: the trained labels score far higher than unseen particles.) Returns (threshold,
    validation F1)."""
    import pandas as pd

    from trainers.evaluate import evaluate_picks

    picks = _picks(pick_dir, list(val_truth))
    tr = pd.concat(pd.DataFrame({"micrograph": n, "x": v[:, 0], "y": v[:, 1], "z": v[:, 2]})
                   for n, v in val_truth.items())
    s = evaluate_picks(picks, tr, 0.5 * bbox).summary
    return float(s["best_threshold"]), float(s["best_f1"])


def pick_cmd(out: Path, exp: str, split: str) -> list[str]:
    ckpt = out / "runs" / exp / "model_last_contrastive.pth"
    return ["pick", "tomo", "--test_img_txt", str(out / f"data/{split}_imgs.txt"),
            "--load_model", str(ckpt), "--out_thresh", "0.0", "--with_score",
            "--cutoff_z", "4", "--out_id", split, "--quiet"]


def rescore(dirs: list[str], bbox: int, thresh: float, snr: float) -> None:
    """Add the threshold chosen on the validation tomogram (and the held-out scores at it)
    to the runs of earlier calls: picks it with each run's checkpoint."""
    for d in dirs:
        out = Path(d)
        res = json.loads((out / "results.json").read_text())
        truth = json.loads((out / "data/truth.json").read_text())
        truth = {k: np.asarray(v, dtype=np.float64).reshape(-1, 3) for k, v in truth.items()}
        val = write_val(out / "data", res["shape"], snr)
        for row in res["runs"]:
            exp = f"{row['config']}_s{row['seed']}"
            if not (out / "runs" / exp / "val").is_dir():
                run(pick_cmd(out, exp, "val"), out / f"{exp}.pick-val.log")
            thr, f1_val = choose_threshold(out / "runs" / exp / "val", val, bbox)
            s = score(out / "runs" / exp / "test", truth, bbox, thresh, chosen=thr)
            row.update({k: round(v, 4) for k, v in s.items()}, sel_val_f1=round(f1_val, 4))
            print(json.dumps(row), flush=True)
        (out / "results.json").write_text(json.dumps(res, indent=1))


def val_scores(dirs: list[str], bbox: int, snr: float) -> None:
    """Validation-tomogram scores only (best F1, its threshold, AUPRC) of earlier calls' runs:
    what a hyper-parameter choice may look at (no held-out truth is read)."""
    import pandas as pd

    from trainers.evaluate import evaluate_picks

    for d in dirs:
        out = Path(d)
        res = out / "results.json"
        shape = json.loads(res.read_text())["shape"] if res.is_file() else [48, 128, 128]
        val = write_val(out / "data", shape, snr)
        for run_dir in sorted((out / "runs").iterdir()):
            if not (run_dir / "val").is_dir():
                continue
            picks = _picks(run_dir / "val", list(val))
            tr = pd.concat(pd.DataFrame({"micrograph": n, "x": v[:, 0], "y": v[:, 1],
                                         "z": v[:, 2]}) for n, v in val.items())
            s = evaluate_picks(picks, tr, 0.5 * bbox).summary
            print(json.dumps({"dir": d, "run": run_dir.name,
                              **{f"val_{k}": round(float(s[k]), 4)
                                 for k in ("best_f1", "best_threshold", "auprc")}}),
                  flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/bench_tomopicker")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--snr", type=float, default=0.5)
    ap.add_argument("--shape", default="48,128,128")
    ap.add_argument("--bbox", type=int, default=12)
    ap.add_argument("--thresh", type=float, default=0.2)
    ap.add_argument("--configs", default="pu+cr,focal")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--tau", type=float, default=0.01)
    ap.add_argument("--big", action="store_true", help="also infer a 512×512×256 tomogram")
    ap.add_argument("--skip-train", action="store_true", help="only the --big inference, with "
                    "the first configuration's seed-0 run of an earlier call")
    ap.add_argument("--rescore", nargs="+", metavar="OUT", help="only add the threshold "
                    "chosen on the validation tomogram to the runs of earlier calls' OUT dirs")
    ap.add_argument("--val-scores", nargs="+", metavar="OUT", help="only print the validation "
                    "tomogram's best F1 and AUPRC of earlier calls' runs (for choosing settings)")
    a = ap.parse_args()
    if a.val_scores:
        return val_scores(a.val_scores, a.bbox, a.snr)
    if a.rescore:
        return rescore(a.rescore, a.bbox, a.thresh, a.snr)
    out = Path(a.out)
    shape = tuple(int(v) for v in a.shape.split(","))
    truth, n_lab, n_all = write_data(out / "data", 2, 2, shape, a.snr, 0)
    val = write_val(out / "data", shape, a.snr)
    print(json.dumps({"labels": n_lab, "train_particles": n_all}), flush=True)
    results = {"shape": shape, "labels": n_lab, "train_particles": n_all, "runs": []}
    configs = {"pu+cr": ["--contrastive"], "focal": ["--pn"],
               "pu": [], "pu+cr512": ["--contrastive", "--cr_samples", "512"],
               "pu+cr8192": ["--contrastive", "--cr_samples", "8192"]}
    base = ["--train_img_txt", str(out / "data/train_imgs.txt"), "--train_coord_txt",
            str(out / "data/train_coords.txt"), "--order", "zxy", "--bbox", str(a.bbox),
            "--num_epochs", str(a.epochs), "--lr", str(a.lr), "--tau", str(a.tau), "--val_interval", str(a.epochs),
            "--cutoff_z", "4", "--output", str(out / "runs"), "--gpus", "-1", "--quiet"]
    for seed in range(a.first_seed, a.first_seed + (0 if a.skip_train else a.seeds)):
        for cfg in a.configs.split(","):
            exp = f"{cfg}_s{seed}"
            load0 = os.getloadavg()[0]
            t, cpu, rss = run(["train", "tomo", *base, *configs[cfg], "--seed", str(seed),
                               "--exp_id", exp], out / f"{exp}.train.log")
            tp, _, _ = run(pick_cmd(out, exp, "test"), out / f"{exp}.pick.log")
            run(pick_cmd(out, exp, "val"), out / f"{exp}.pick-val.log")
            thr, f1_val = choose_threshold(out / "runs" / exp / "val", val, a.bbox)
            s = score(out / "runs" / exp / "test", truth, a.bbox, a.thresh, chosen=thr)
            s["sel_val_f1"] = f1_val
            row = {"config": cfg, "seed": seed, "steps": a.epochs * n_lab,
                   "train_s": round(t, 1), "train_cpu_s": round(cpu, 1),
                   "train_rss_mb": round(rss), "load": [round(load0, 1),
                                                        round(os.getloadavg()[0], 1)],
                   "pick_s": round(tp, 1), **{k: round(v, 4) for k, v in s.items()}}
            results["runs"].append(row)
            print(json.dumps(row), flush=True)
    results["train_peak_rss_mb"] = round(peak_rss_children_mb(), 1)
    if a.big:
        import mrcfile

        rng = np.random.default_rng(5)
        vol, _ = tomogram((256, 512, 512), 300, 300, a.snr, rng)
        with mrcfile.new(out / "data/big.mrc", overwrite=True) as m:
            m.set_data(vol)
        (out / "data/big_imgs.txt").write_text(f"image_name\trec_path\nbig\t{out}/data/big.mrc\n")
        exp = f"{a.configs.split(',')[0]}_s0"
        cmd = [sys.executable, "-m", "cryoglean.cli", "pick", "tomo", "--test_img_txt",
               str(out / "data/big_imgs.txt"), "--load_model",
               str(out / "runs" / exp / "model_last_contrastive.pth"), "--out_id", "big",
               "--quiet", "--compress"]
        t0 = time.time()
        r = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
        dt = time.time() - t0
        rss = [ln for ln in r.stderr.splitlines() if "Maximum resident" in ln]
        results["big"] = {"seconds": round(dt, 1), "rc": r.returncode,
                          "peak_rss": rss[0].split(":")[1].strip() + " kB" if rss else None}
        print(json.dumps(results["big"]), flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
