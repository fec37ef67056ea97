"""CenterNet picker benchmark on generated micrographs (not part of CI; takes about an hour).

Data (harvest.synth.simulate_micrograph): square micrographs of ``--size`` px with
CTF-modulated particles of ``--diameter`` px at SNR ``--snr`` (particle signal variance over
noise variance, after the CTF), ice and aggregate junk (and a carbon edge on every third
micrograph). The network sees them Fourier-cropped to ``--input_width`` px, where the particle
is diameter·input_width/size px wide (defaults: 768 px micrographs, 40 px particles, 384 px
input, so 20 px at the input scale).
Dataset A: globular particles; dataset B: ``--shape-b`` particles. 30 training micrographs
(24 train + 6 validation, for best.ckpt and the score threshold) and 10 test micrographs each.

Parts (``--parts``, default all):
  full       train on A with every particle labelled; F1 on A-test at radius 0.5 × diameter
  sparse     30 % of the particles labelled: plain focal loss vs --sparse_anno vs --pu_prior
  continual  A → B: plain fine-tuning vs continual learning (exemplars + distillation);
             F1 on A-test and B-test (needs the 'full' run)
  speed      picking micrographs/s on 4096 × 4096 MRC inputs (Fourier-cropped to the input width)

Test F1 is reported at the score threshold that maximised F1 on the validation micrographs
("F1@val-thr", the honest number) and at the test set's own best threshold ("best F1", an upper
bound), with Topaz-style AUPRC. Every training gets the same wall-clock budget (--minutes).

    .venv/bin/python benchmarks/bench_centernet.py [--parts full,sparse,continual,speed]
        [--out benchmarks/out/centernet] [--minutes 8] [--minutes-full 12] [--snr 0.05]
        [--diameter 40] [--threads 1]
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_dataset(root: Path, shape: str, n: int, seed: int, args) -> pd.DataFrame:
    """n micrographs in root/images (.mrc) + THI labels in root/labels; returns the truth."""
    from harvest.synth import FacilityConfig, simulate_micrograph
    from harvest.synth.micrographs import write_mrc
    from trainers.labels import write_labels

    if (root / "truth.csv").is_file():
        return pd.read_csv(root / "truth.csv")
    cfg = FacilityConfig(
        nx=args.size, ny=args.size, pixel_size=1.5, diameter_A=args.diameter * 1.5,
        particles_per_micrograph=args.particles, junk_per_micrograph=4, snr=args.snr,
        seed=seed, shape=shape,
    )
    rng = np.random.default_rng(seed)
    from harvest.synth.density import make_density

    density = make_density(shape, cfg.diameter_A, rng)
    (root / "images").mkdir(parents=True, exist_ok=True)
    frames = []
    for i in range(n):
        key = f"{shape}_{seed}_{i:03d}"
        img, truth = simulate_micrograph(cfg, rng, key=key, density=density,
                                         with_carbon=(i % 3 == 2))
        write_mrc(root / "images" / f"{key}.mrc", img, cfg.pixel_size)
        frames.append(pd.DataFrame({"micrograph": key, "x": truth.particles[:, 0],
                                    "y": truth.particles[:, 1]}))
    df = pd.concat(frames, ignore_index=True)
    write_labels(df, root / "labels", "thi", micrographs=[f"{shape}_{seed}_{i:03d}"
                                                          for i in range(n)])
    df.to_csv(root / "truth.csv", index=False)
    return df


def subsample_labels(src: Path, dst: Path, truth: pd.DataFrame, frac: float, seed: int):
    from trainers.labels import write_labels

    rng = np.random.default_rng(seed)
    keep = truth[rng.random(len(truth)) < frac]
    write_labels(keep, dst, "thi", micrographs=sorted(truth["micrograph"].unique()))
    return len(keep)


def train(args, name, data: Path, label: Path, minutes=None, **extra) -> dict:
    from trainers.centernet.options import TrainOptions
    from trainers.centernet.train import train_centernet

    run = Path(args.out) / "runs" / name
    if (run / "weights" / "best.ckpt").is_file() and (run / "summary.json").is_file():
        return json.loads((run / "summary.json").read_text())
    opts = TrainOptions(
        data=str(data), label=str(label), label_type="thi", mode="particle", exp_id=name,
        output=str(Path(args.out) / "runs"), batch_size=args.batch_size, lr=args.lr,
        lr_step="", num_epoch=10000, max_minutes=minutes or args.minutes,
        particle_size=args.diameter * args.input_width / args.size,
        input_width=args.input_width, crop=args.crop, val_intervals=args.val_intervals, repeat=args.repeat, width=args.width,
        head_conv=args.head_conv, train_pct=80, val_pct=20, test_pct=0, seed=args.seed,
        quiet=True, **extra,
    )
    t0 = time.time()
    s = train_centernet(opts)
    s["wall_s"] = time.time() - t0
    (run / "summary.json").write_text(json.dumps(s, default=str, indent=1))
    return s


def test_f1(args, ckpt: str, test_dir: Path, truth: pd.DataFrame, val_thr: float) -> dict:
    from trainers.centernet.options import PickOptions
    from trainers.centernet.pick import load_picker, pick_micrograph
    from trainers.data import list_micrographs
    from trainers.evaluate import evaluate_picks

    net, h = load_picker(ckpt)
    opts = PickOptions(data=str(test_dir), load_model=ckpt, output="", vis_thresh=0.0,
                       K=2000, edge=args.edge)
    files = list_micrographs(test_dir)
    picks = pd.concat([pick_micrograph(net, h, f, opts) for f in files], ignore_index=True)
    radius = 0.5 * args.diameter
    mics = [f.stem for f in files]
    full = evaluate_picks(picks, truth, radius, micrographs=mics).summary
    at = evaluate_picks(picks, truth, radius, threshold=val_thr, micrographs=mics).summary
    return {"f1_at_val_thr": at["f1"], "precision": at["precision"], "recall": at["recall"],
            "val_thr": val_thr, "best_f1": full["best_f1"], "best_thr": full["best_threshold"],
            "auprc": full["auprc"], "rmse": at["rmse"]}


def val_threshold_of(args, ckpt: str, val_dir: Path, val_truth: pd.DataFrame) -> float:
    r = test_f1(args, ckpt, val_dir, val_truth, 0.5)
    return float(r["best_thr"])


def split_dirs(root: Path, summary: dict, truth: pd.DataFrame):
    """Symlink the validation micrographs of a run into root/val_images (to pick them)."""
    split = json.loads((Path(summary["run_dir"]) / "split.json").read_text())
    vd = root / f"val_images_{Path(summary['run_dir']).name}"
    vd.mkdir(parents=True, exist_ok=True)
    for k in split["val"]:
        link = vd / f"{k}.mrc"
        if not link.exists():
            link.symlink_to((root / "images" / f"{k}.mrc").resolve())
    return vd, truth[truth["micrograph"].isin(split["val"])]


def evaluate_run(args, summary, root_train, truth_train, test_dir, truth_test, label="") -> dict:
    vd, vt = split_dirs(root_train, summary, truth_train)
    thr = val_threshold_of(args, summary["best"], vd, vt)
    r = test_f1(args, summary["best"], test_dir, truth_test, thr)
    r["train_s"] = round(summary.get("wall_s", float("nan")), 1)
    r["epochs"] = summary.get("epochs")
    r["run"] = label
    return r


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--parts", default="full,sparse,continual,speed")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "out" / "centernet"))
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--snr", type=float, default=0.05)
    ap.add_argument("--diameter", type=float, default=40.0)
    ap.add_argument("--size", type=int, default=768, help="micrograph side (px)")
    ap.add_argument("--input_width", type=int, default=384,
                    help="network input width (micrographs are Fourier-cropped to it)")
    ap.add_argument("--minutes-full", dest="minutes_full", type=float, default=12.0)
    ap.add_argument("--val_intervals", type=int, default=2)
    ap.add_argument("--particles", type=int, default=40)
    ap.add_argument("--crop", type=int, default=192)
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--batch_size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--head_conv", type=int, default=32)
    ap.add_argument("--edge", type=float, default=25.0, help="px at the 1024-wide scale")
    ap.add_argument("--frac", type=float, default=0.3)
    ap.add_argument("--shape-b", dest="shape_b", default="elongated")
    ap.add_argument("--seed", type=int, default=317)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    import torch

    # one thread: on a shared, oversubscribed 2-core machine two intra-op threads ran 2x slower
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parts = args.parts.split(",")
    res_path = out / "results.json"
    results = json.loads(res_path.read_text()) if res_path.is_file() else {}

    def save():
        res_path.write_text(json.dumps(results, indent=1, default=str))

    t0 = time.time()
    A, At = out / "data" / "A_train", out / "data" / "A_test"
    B, Bt = out / "data" / "B_train", out / "data" / "B_test"
    truth_A = make_dataset(A, "globular", 30, 1, args)
    truth_At = make_dataset(At, "globular", 10, 2, args)
    print(f"data A ready ({len(truth_A)} train particles) {time.time() - t0:.0f}s", flush=True)
    results["params"] = vars(args)

    if "full" in parts or "continual" in parts:
        sA = train(args, "A_full", A / "images", A / "labels", minutes=args.minutes_full)
        results["full"] = evaluate_run(args, sA, A, truth_A, At / "images", truth_At, "A full")
        save()
        print("full", results["full"], flush=True)

    if "sparse" in parts:
        lab = out / "data" / "A_labels_sparse"
        n_kept = subsample_labels(A / "labels", lab, truth_A, args.frac, args.seed)
        cells = (args.input_width / 4) ** 2
        prior = (len(truth_A) / 30) / cells  # particle centres per heatmap cell
        results["sparse_labelled"] = n_kept
        results["pu_prior"] = prior
        for name, extra in (("plain", {}), ("sparse", {"sparse_anno": True}),
                            ("pu", {"pu_prior": prior})):
            s = train(args, f"A_{name}{int(args.frac * 100)}", A / "images", lab, **extra)
            # validation labels are sparse too: choose the threshold on them as a user would
            vd, _ = split_dirs(A, s, truth_A)
            split = json.loads((Path(s["run_dir"]) / "split.json").read_text())
            from trainers.labels import read_labels

            vt = read_labels(lab, "thi")
            vt = vt[vt["micrograph"].isin(split["val"])]
            thr = val_threshold_of(args, s["best"], vd, vt)
            r = test_f1(args, s["best"], At / "images", truth_At, thr)
            r["train_s"] = round(s["wall_s"], 1)
            r["epochs"] = s.get("epochs")
            results[f"sparse_{name}"] = r
            save()
            print(name, r, flush=True)

    if "continual" in parts:
        truth_B = make_dataset(B, args.shape_b, 30, 3, args)
        truth_Bt = make_dataset(Bt, args.shape_b, 10, 4, args)
        exA = out / "exemplars_A"
        if not (exA / "exemplar.json").is_file():
            from trainers.centernet.exemplar import select_exemplars, write_exemplars
            from trainers.centernet.view import prepare
            from trainers.core.dataset import labelled_samples

            sA = json.loads((out / "runs" / "A_full" / "summary.json").read_text())
            split = json.loads((Path(sA["run_dir"]) / "split.json").read_text())
            view = functools.partial(prepare, input_width=args.input_width)
            samples = labelled_samples(A / "images", A / "labels", "thi", view, split["train"])
            write_exemplars(select_exemplars(samples, 200), exA, "thi")
        ckA = str(out / "runs" / "A_full" / "weights" / "best.ckpt")
        sft = train(args, "B_finetune", B / "images", B / "labels", load_model=ckA)
        scl = train(args, "B_continual", B / "images", B / "labels", load_model=ckA,
                    continual=True, load_exemplar=str(exA),
                    output_exemplar=str(out / "exemplars_AB"), sampling_size=200)
        for name, s in (("finetune", sft), ("continual", scl)):
            results[f"cont_{name}_B"] = evaluate_run(args, s, B, truth_B, Bt / "images",
                                                     truth_Bt, f"{name} on B")
            # A-test at the threshold chosen on A's validation micrographs
            sA = json.loads((out / "runs" / "A_full" / "summary.json").read_text())
            vd, vt = split_dirs(A, sA, truth_A)
            thr = val_threshold_of(args, s["best"], vd, vt)
            results[f"cont_{name}_A"] = test_f1(args, s["best"], At / "images", truth_At, thr)
            save()
            print(name, results[f"cont_{name}_A"], results[f"cont_{name}_B"], flush=True)

    if "speed" in parts:
        from harvest.synth.micrographs import write_mrc
        from trainers.centernet.options import PickOptions
        from trainers.centernet.pick import pick_centernet

        big = out / "data" / "speed4096"
        big.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        for i in range(4):
            f = big / f"big_{i}.mrc"
            if not f.exists():
                write_mrc(f, rng.normal(size=(4096, 4096)).astype(np.float32), 1.0)
        ck = str(out / "runs" / "A_full" / "weights" / "best.ckpt")
        r = pick_centernet(PickOptions(data=str(big), load_model=ck,
                                       output=str(out / "speed_picks"), output_type="thi",
                                       vis_thresh=0.3, quiet=True))
        results["speed"] = {k: r[k] for k in ("micrographs", "seconds", "micrographs_per_s")}
        results["speed"]["input_width"] = args.input_width
        # the same network run at EPicker's input width 1024 (fully convolutional)
        from trainers.centernet.pick import load_picker, pick_micrograph
        from trainers.data import list_micrographs

        net, h = load_picker(ck)
        h["input_width"] = 1024
        files = list_micrographs(big)
        t1 = time.time()
        for f in files:
            pick_micrograph(net, h, f, PickOptions(vis_thresh=0.3))
        dt = time.time() - t1
        results["speed_1024"] = {"micrographs": len(files), "seconds": dt,
                                 "micrographs_per_s": len(files) / dt, "input_width": 1024}
        save()
        print("speed", results["speed"], results["speed_1024"], flush=True)

    print(table(results))
    (out / "table.md").write_text(table(results))


def table(results: dict) -> str:
    rows = ["| run | F1@val-thr | precision | recall | best F1 | AUPRC | RMSE px | train s | epochs |",
            "|---|---|---|---|---|---|---|---|---|"]
    for k, v in results.items():
        if isinstance(v, dict) and "f1_at_val_thr" in v:
            rows.append(
                f"| {k} | {v['f1_at_val_thr']:.3f} | {v['precision']:.3f} | {v['recall']:.3f} "
                f"| {v['best_f1']:.3f} | {v['auprc']:.3f} | {v['rmse']:.2f} | "
                f"{v.get('train_s', '')} | {v.get('epochs', '')} |"
            )
    for key in ("speed", "speed_1024"):
        if key in results:
            s = results[key]
            rows.append(f"\n{key}: {s['micrographs']} micrographs 4096² → input width "
                        f"{s.get('input_width')}: {s['micrographs_per_s']:.3f} micrographs/s "
                        "(read + Fourier crop + network + decode + write)")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
