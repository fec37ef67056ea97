"""Values that render every Slurm template (shared by the golden, safety and cluster tests)."""

from __future__ import annotations


def values_for(template: str, path) -> dict:
    """Template values where every path is built by ``path(name)``."""
    table = {
        "crawl": {"roots": [path("projects A"), path("projects B")], "db": path("catalog.db")},
        "crawl.scrontab": {"roots": [path("projects")], "db": path("catalog.db"),
                           "site": path("report"), "runs": [path("runs")]},
        "export": {"db": path("catalog.db"), "format": "thi", "out": path("export"),
                   "project": [path("project")]},
        "denoise": {"source": path("mics"), "project": path("partinet"), "shards": 3},
        "train_centernet": {"data": path("images"), "label": path("labels"), "exp_id": "run1",
                            "output": path("runs")},
        "pick_centernet": {"data": path("images"), "model": path("last.ckpt"),
                           "output": path("picks"), "shards": 2},
        "evaluate": {"picks": path("picks"), "truth": path("truth"), "out": path("eval")},
        "tomo_files": {"dir": path("tomograms"), "name": "train", "ext": ".mrc",
                       "order": "zxy", "inference": True},
        "train_tomo": {"train_img_txt": path("train imgs.txt"),
                       "train_coord_txt": path("train coords.txt"),
                       "val_img_txt": path("val imgs.txt"), "val_coord_txt": path("val coords.txt"),
                       "exp_id": "run1", "output": path("runs"), "extra": ["--compress"]},
        "pick_tomo": {"test_img_txt": path("test imgs.txt"), "model": path("last.ckpt"),
                      "output": path("picks"), "output_type": "imod", "shards": 2},
        "cryolo_train": {"config": path("config.json")},
        "cryolo_predict": {"config": path("config.json"), "weights": path("model.h5"),
                           "input": path("mics"), "output": path("cryolo out")},
        "topaz_preprocess": {"input": path("mics"), "output": path("processed")},
        "topaz_train": {"train_images": path("images.txt"), "train_targets": path("targets.txt"),
                        "save_prefix": path("model"), "output": path("curve.txt")},
        "topaz_extract": {"model": path("model.sav"), "input": path("processed"),
                          "output": path("picks.txt")},
        "epicker_train": {"data": path("images"), "label": path("labels"), "exp_id": "run1"},
        "epicker_pick": {"data": path("images"), "model": path("model.pth"),
                         "output": path("picks")},
        "train_dynamicdet": {"data": path("cryo_training.yaml"), "project": path("train"),
                             "weight": path("start.pt")},
        "detect_dynamicdet": {"weight": path("last.pt"), "source": path("images"),
                              "project": path("detect"), "shards": 2},
        "star": {"labels": path("labels"), "images": path("images"), "output": path("picks.star"),
                 "relion_project_dir": path("relion")},
        "partinet_denoise": {"source": path("mics"), "project": path("partinet")},
        "partinet_detect": {"weight": path("w.pt"), "source": path("denoised"),
                            "project": path("partinet")},
        "partinet_star": {"labels": path("labels"), "images": path("denoised"),
                          "output": path("out.star")},
        "partinet_train": {"step": "step1", "weight": path("w.pt"), "data": path("data.yaml"),
                           "project": path("train")},
    }
    return table[template]
