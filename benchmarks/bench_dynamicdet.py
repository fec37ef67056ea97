"""DynamicDet picker benchmark, CPU (not part of CI; ~20 minutes with the defaults).

Parts (``--parts``, default all; ``speed`` needs ``synth``'s checkpoint):
  synth  the generated benchmark CenterNet uses (benchmarks/bench_centernet.py: 768² px
         micrographs, 40 px particles, SNR 0.05, junk, 30 training (24 train + 6 validation)
         + 10 test micrographs): step 1 + step 2 (tiny model), F1 at radius 0.5 × diameter on
         the test micrographs at the validation threshold and best; a speed/accuracy table at
         easy fractions 100/90/50/0 %; CenterNet trained on the same data side by side.
  speed  routed detect speed of the synth checkpoint at easy fractions 100/90/50/0 %,
         fractions interleaved over several rounds, fastest kept (the machine is shared).
  real   EMPIAR-10017 (CryoSegNet's 4096² JPG, 629 expert picks, diameter 108 px),
         leave-one-quadrant-out: the three training quadrants cut into 1024² tiles (9 train,
         3 validation), the held-out 2048² quadrant tested; DynamicDet and CenterNet.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_dynamicdet.py [--parts synth,real]
        [--out benchmarks/out/dynamicdet] [--minutes 5] [--quadrant 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
REAL = Path("/work/shared/realdata/jianlin-cheng__CryoSegNet/finetune_dataset")


def write_yolo_set(root: Path, images: dict[str, Path], truth: pd.DataFrame, sizes: dict,
                   diameter: float, val_keys: set) -> Path:
    """PartiNet's layout (images/{split} links, labels/{split}/<stem>.txt, lists, yaml)."""
    lists = {"train": [], "val": []}
    for key, img in images.items():
        split = "val" if key in val_keys else "train"
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        link = root / "images" / split / img.name
        if not link.exists():
            link.symlink_to(img.resolve())
        nx, ny = sizes[key]
        t = truth[truth["micrograph"] == key]
        (root / "labels" / split / f"{img.stem}.txt").write_text("".join(
            f"0 {x / nx:.6f} {y / ny:.6f} {diameter / nx:.6f} {diameter / ny:.6f}\n"
            for x, y in zip(t["x"], t["y"])))
        lists[split].append(str(link.absolute()))
    for s, paths in lists.items():
        (root / f"{s}.txt").write_text("".join(p + "\n" for p in paths))
    y = root / "cryo_training.yaml"
    y.write_text(f"train: {(root / 'train.txt').absolute()}\nval: {(root / 'val.txt').absolute()}"
                 "\n\nnc: 1\nnames: [ 'particle' ]\n")
    return y


def dd_picks(ckpt: str, files: list[Path], img_size: int, thr: float, conf=0.001):
    from trainers.dynamicdet.detect import load_model, run_batch

    net, _, _ = load_model(ckpt)
    rows, easy = [], 0
    t0 = time.time()
    for f in files:
        (_, _, d, s), = run_batch(net, [f], img_size, thr, conf, 0.2, "cpu")
        easy += s >= thr
        rows.append(pd.DataFrame({"micrograph": f.stem, "x": (d[:, 0] + d[:, 2]) / 2,
                                  "y": (d[:, 1] + d[:, 3]) / 2, "score": d[:, 4]}))
    dt = time.time() - t0
    return pd.concat(rows, ignore_index=True), easy, dt


def scores(picks, truth, radius, mics, thr=None):
    from trainers.evaluate import evaluate_picks

    full = evaluate_picks(picks, truth, radius, micrographs=mics).summary
    if thr is None:
        thr = float(full["best_threshold"])
    at = evaluate_picks(picks, truth, radius, threshold=thr, micrographs=mics).summary
    return {"f1_at_val_thr": at["f1"], "precision": at["precision"], "recall": at["recall"],
            "val_thr": thr, "best_f1": full["best_f1"], "auprc": full["auprc"]}


def train_dd(yaml_path, project, args, img_size, train_size, minutes, step2_epochs, batch):
    from trainers.dynamicdet.options import Step1Options, Step2Options
    from trainers.dynamicdet.train import train_step1, train_step2

    common = dict(data=str(yaml_path), project=str(project), img_size=img_size,
                  train_size=train_size, workers=0, device="cpu", quiet=True, batch=batch,
                  seed=args.seed)
    t0 = time.time()
    s1 = train_step1(Step1Options(cfg="tiny", epochs=10000, minutes=minutes, repeat=args.repeat,
                                  lr=args.lr, **common))
    t1 = time.time()
    s2 = train_step2(Step2Options(weight=s1["best"], epochs=step2_epochs, repeat=args.repeat,
                                  **common))
    return s1, s2, t1 - t0, time.time() - t1


def dd_evaluate(s2, val_files, val_truth, test_files, test_truth, img_size, radius,
                fractions=(1.0, 0.9, 0.5, 0.0)):
    from trainers.core.checkpoint import load_checkpoint
    from trainers.dynamicdet.detect import threshold

    ck = s2["best"]
    calib = load_checkpoint(ck).get("router_calibration")
    out = {}
    for f in fractions:
        thr = threshold(None, f, calib)
        vp, _, _ = dd_picks(ck, val_files, img_size, thr)
        vthr = scores(vp, val_truth, radius, [p.stem for p in val_files])["val_thr"]
        tp, easy, _ = dd_picks(ck, test_files, img_size, thr)
        # speed as detect runs (confidence > 0.1, its default): best of two passes
        best_dt = min(dd_picks(ck, test_files, img_size, thr, conf=0.1)[2] for _ in range(2))
        r = scores(tp, test_truth, radius, [p.stem for p in test_files], vthr)
        r.update({"easy_fraction": f, "dy_thres": thr, "test_easy": int(easy),
                  "micrographs_per_s": len(test_files) / best_dt})
        out[f"{int(f * 100)}% easy"] = r
        print(f, r, flush=True)
    return out


def cn_train(args, name, img_dir, lab_dir, out, input_width, particle, crop, minutes, val_pct):
    from trainers.centernet.options import TrainOptions
    from trainers.centernet.train import train_centernet

    opts = TrainOptions(
        data=str(img_dir), label=str(lab_dir), label_type="thi", mode="particle", exp_id=name,
        output=str(out), batch_size=4, lr=5e-4, lr_step="", num_epoch=10000,
        max_minutes=minutes, particle_size=particle, input_width=input_width, crop=crop,
        val_intervals=2, repeat=4, width=16, head_conv=32, train_pct=100 - val_pct,
        val_pct=val_pct, test_pct=0, seed=args.seed, quiet=True)
    return train_centernet(opts)


def cn_picks(ckpt, files, input_width=None):
    from trainers.centernet.options import PickOptions
    from trainers.centernet.pick import load_picker, pick_micrograph

    if not Path(ckpt).is_file():  # no validation ran within the budget
        ckpt = str(Path(ckpt).with_name("last.ckpt"))
    net, h = load_picker(ckpt)
    if input_width:
        h["input_width"] = input_width
    opts = PickOptions(load_model=ckpt, output="", vis_thresh=0.0, K=2000, edge=25.0)
    return pd.concat([pick_micrograph(net, h, f, opts) for f in files], ignore_index=True)


def part_synth(args, out: Path, results: dict):
    import bench_centernet as bc

    cargs = SimpleNamespace(size=768, diameter=40.0, particles=40, snr=0.05)
    A, At = out / "data" / "A_train", out / "data" / "A_test"
    truth = bc.make_dataset(A, "globular", 30, 1, cargs)
    truth_t = bc.make_dataset(At, "globular", 10, 2, cargs)
    keys = sorted(truth["micrograph"].unique())
    rng = np.random.default_rng(args.seed)
    val_keys = set(rng.choice(keys, 6, replace=False).tolist())
    images = {k: A / "images" / f"{k}.mrc" for k in keys}
    y = write_yolo_set(out / "data" / "A_yolo", images, truth, {k: (768, 768) for k in keys},
                       40.0, val_keys)
    s1, s2, t1, t2 = train_dd(y, out / "runs", args, 384, 192, args.minutes, args.step2_epochs,
                              8)
    results["synth_train"] = {"step1_s": t1, "step2_s": t2, "step1_epochs": s1["epochs"],
                              "step2_epochs": s2["epochs"], "router_percentiles":
                              s2.get("router_percentiles", [])[::10]}
    val_files = [images[k] for k in sorted(val_keys)]
    test_files = sorted((At / "images").glob("*.mrc"))
    vt = truth[truth["micrograph"].isin(val_keys)]
    results["synth_dd"] = dd_evaluate(s2, val_files, vt, test_files, truth_t, 384, 20.0)
    save(out, results)
    # CenterNet on the same micrographs and the same validation micrographs' role
    cn = cn_train(args, "cn_synth", A / "images", A / "labels", out / "runs_cn", 384, 20.0,
                  192, args.minutes_cn, 20)
    split = json.loads((Path(cn["run_dir"]) / "split.json").read_text())
    cvf = [images[k] for k in split["val"]]
    cvt = truth[truth["micrograph"].isin(split["val"])]
    vthr = scores(cn_picks(cn["best"], cvf), cvt, 20.0, split["val"])["val_thr"]
    t0 = time.time()
    tp = cn_picks(cn["best"], test_files)
    rate = len(test_files) / (time.time() - t0)
    r = scores(tp, truth_t, 20.0, [p.stem for p in test_files], vthr)
    r.update({"micrographs_per_s": rate, "train_s": cn.get("train_seconds"),
              "epochs": cn.get("epochs")})
    results["synth_cn"] = r
    save(out, results)


def part_real(args, out: Path, results: dict):
    import cv2

    from trainers.labels import write_labels

    img = cv2.imread(str(REAL / "images" / "Falcon_2012_06_12-14_33_35_0.jpg"), 0)
    picks = pd.read_csv(REAL / "csv_files" / "Falcon_2012_06_12-14_33_35_0.csv")
    d = 108.0
    q = args.quadrant
    root = out / "data" / f"real_q{q}"
    tiles, truth_rows, test_truth = {}, [], None
    (root / "tiles").mkdir(parents=True, exist_ok=True)
    (root / "test").mkdir(parents=True, exist_ok=True)
    for k in range(4):
        qy, qx = divmod(k, 2)
        x0, y0 = qx * 2048, qy * 2048
        sel = picks[(picks["X-Coordinate"] >= x0) & (picks["X-Coordinate"] < x0 + 2048)
                    & (picks["Y-Coordinate"] >= y0) & (picks["Y-Coordinate"] < y0 + 2048)]
        if k == q:
            f = root / "test" / f"quadrant{k}.png"
            cv2.imwrite(str(f), img[y0 : y0 + 2048, x0 : x0 + 2048])
            test_truth = pd.DataFrame({"micrograph": f.stem, "x": sel["X-Coordinate"] - x0,
                                       "y": sel["Y-Coordinate"] - y0})
            continue
        for t in range(4):
            ty, tx = divmod(t, 2)
            a, b = x0 + tx * 1024, y0 + ty * 1024
            key = f"q{k}t{t}"
            f = root / "tiles" / f"{key}.png"
            cv2.imwrite(str(f), img[b : b + 1024, a : a + 1024])
            tiles[key] = f
            s = sel[(sel["X-Coordinate"] >= a) & (sel["X-Coordinate"] < a + 1024)
                    & (sel["Y-Coordinate"] >= b) & (sel["Y-Coordinate"] < b + 1024)]
            truth_rows.append(pd.DataFrame({"micrograph": key, "x": s["X-Coordinate"] - a,
                                            "y": s["Y-Coordinate"] - b}))
    truth = pd.concat(truth_rows, ignore_index=True)
    keys = sorted(tiles)
    val_keys = {keys[i] for i in (1, 6, 11)}  # one tile of each training quadrant
    y = write_yolo_set(root / "yolo", tiles, truth, {k: (1024, 1024) for k in keys}, d,
                       val_keys)
    test_files = [root / "test" / f"quadrant{q}.png"]
    vf = [tiles[k] for k in sorted(val_keys)]
    vt = truth[truth["micrograph"].isin(val_keys)]
    s1, s2, t1, t2 = train_dd(y, out / f"runs_real{args.tag}", args, 256, 256, args.minutes_real,
                              args.step2_epochs, 4)
    r = dd_evaluate(s2, vf, vt, test_files, test_truth, 512, d / 2, fractions=(0.9, 0.0))
    results[f"real_q{q}_dd{args.tag}"] = {**r, "step1_s": t1, "step2_s": t2,
                                          "step1_epochs": s1["epochs"]}
    save(out, results)
    if args.no_cn:
        return
    # CenterNet: same tiles, the same scale (1024 → 256, test 2048 → 512), own 25 % val split
    write_labels(truth, root / "thi", "thi", micrographs=keys)
    cn = cn_train(args, f"cn_real_q{q}", root / "tiles", root / "thi", out / "runs_cn", 256,
                  27.0, 256, args.minutes_real_cn, 25)
    split = json.loads((Path(cn["run_dir"]) / "split.json").read_text())
    cvf = [tiles[k] for k in split["val"]]
    cvt = truth[truth["micrograph"].isin(split["val"])]
    vthr = scores(cn_picks(cn["best"], cvf), cvt, d / 2, split["val"])["val_thr"]
    tp = cn_picks(cn["best"], test_files, input_width=512)
    rc = scores(tp, test_truth, d / 2, [test_files[0].stem], vthr)
    rc.update({"train_s": cn.get("train_seconds"), "epochs": cn.get("epochs")})
    results[f"real_q{q}_cn"] = rc
    save(out, results)


def part_speed(args, out: Path, results: dict):
    """Routed detect speed of the synth run's step-2 checkpoint at each easy fraction: the
    fractions interleaved over ``--rounds`` rounds (the shared machine's load changes by the
    minute) and the fastest round kept; end to end (read, letterbox, network, NMS at conf
    0.1) and the network alone."""
    import torch

    from trainers.dynamicdet.boxes import postprocess
    from trainers.dynamicdet.detect import _load_batch, load_model, threshold

    ck = str(out / "runs" / "exp2" / "weights" / "best.pt")
    net, _, calib = load_model(ck)
    files = sorted((out / "data" / "A_test" / "images").glob("*.mrc"))
    _load_batch(files[:1], 384, 3)  # warm-up (imports, first allocation)
    fr = (1.0, 0.9, 0.5, 0.0)
    best = {f: [float("inf"), float("inf"), 0] for f in fr}
    for _ in range(args.rounds):
        for f in fr:
            thr = threshold(None, f, calib)
            t_all = t_net = 0.0
            easy = 0
            for path in files:
                t0 = time.time()
                x, _ = _load_batch([path], 384, 3)
                t1 = time.time()
                pred, sc = net.infer(torch.from_numpy(x), thr)
                t2 = time.time()
                postprocess(pred, 0.1, 0.2)
                t_all += time.time() - t0
                t_net += t2 - t1
                easy += int(float(sc[0]) >= thr)
            b = best[f]
            best[f] = [min(b[0], t_all), min(b[1], t_net), easy]
    n = len(files)
    results["speed"] = {f"{int(f * 100)}% easy": {
        "micrographs_per_s": n / v[0], "network_micrographs_per_s": n / v[1],
        "test_easy": v[2], "dy_thres": threshold(None, f, calib)} for f, v in best.items()}
    print(results["speed"], flush=True)


def save(out: Path, results: dict):
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--parts", default="synth,speed,real")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "out" / "dynamicdet"))
    ap.add_argument("--minutes", type=float, default=5.0, help="DynamicDet step 1, synth")
    ap.add_argument("--minutes-cn", dest="minutes_cn", type=float, default=4.0)
    ap.add_argument("--minutes-real", dest="minutes_real", type=float, default=4.0)
    ap.add_argument("--minutes-real-cn", dest="minutes_real_cn", type=float, default=3.0)
    ap.add_argument("--step2-epochs", dest="step2_epochs", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--quadrant", type=int, default=3)
    ap.add_argument("--seed", type=int, default=317)
    ap.add_argument("--rounds", type=int, default=5, help="speed: interleaved rounds")
    ap.add_argument("--no-cn", dest="no_cn", action="store_true", help="real: DynamicDet only")
    ap.add_argument("--tag", default="", help="real: suffix of the result key and run folder")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)  # the shared 2-core machine (bench_centernet.py's finding)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rp = out / "results.json"
    results = json.loads(rp.read_text()) if rp.is_file() else {}
    results["params"] = vars(args)
    if "synth" in args.parts:
        part_synth(args, out, results)
    if "speed" in args.parts:
        part_speed(args, out, results)
    if "real" in args.parts:
        part_real(args, out, results)
    save(out, results)
    print(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
