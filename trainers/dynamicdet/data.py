"""What DynamicDet's network sees, and its training data.

* :func:`read_gray8`: a micrograph as 8-bit grey, as PartiNet reads it (PNG/JPG as stored;
  MRC min–max to 0…255 as PartiNet 1.0.1).
* :func:`prepare` (the picker's view for :mod:`trainers.core.dataset`): letterboxed so the long
  side is ``img_size`` (INTER_AREA when shrinking, which averages noise), standardised to zero
  mean and unit variance; coordinates scale by ``sx = sy = r``. Padding to a multiple of 64
  (PartiNet's stride) happens at the network input. :func:`to_input` repeats the grey plane
  into the network's channels (PartiNet feeds grey PNGs as 3-channel BGR).
* :func:`open_yaml_dataset`: PartiNet's ``cryo_training.yaml`` (``train``/``val`` = an image
  list file, a folder of images or a list of either; labels beside in ``…/labels/…`` as
  YOLOv7 finds them: ``class cx cy w h`` normalised; class 0 = particle, class 1 rows
  (cryoglean's negatives) are ignored) → :class:`trainers.core.dataset.Labelled` records.
* :class:`Views`: random training views with flips, 90° rotations, scale jitter and mosaic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainers.augment import crop as crop_window
from trainers.augment import hflip, inside, rot90, vflip
from trainers.core.dataset import Labelled, Prepared
from trainers.data import DataError

STRIDE = 64  # PartiNet letterboxes with stride 64 (P6 models)


def read_gray8(path) -> np.ndarray:
    """(ny, nx) uint8 in the DESIGN frame."""
    path = Path(path)
    if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif", ".tiff"):
        import cv2

        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise DataError(f"{path}: cannot read the image (corrupt or not an image)")
        if img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        if img.dtype == np.uint8:
            return img
        img = img.astype(np.float32)
    else:
        from trainers.data import read_image

        img = read_image(path).astype(np.float32)
    lo, hi = float(img.min()), float(img.max())
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return ((img - lo) * scale).astype(np.uint8)


def letterbox(img8: np.ndarray, img_size: int) -> tuple[np.ndarray, float]:
    """Resize so the long side is ``img_size``; returns (float32 image, scale r)."""
    import cv2

    h, w = img8.shape
    r = img_size / max(h, w)
    if r != 1.0:
        interp = cv2.INTER_AREA if r < 1 else cv2.INTER_LINEAR
        img8 = cv2.resize(img8, (max(1, round(w * r)), max(1, round(h * r))),
                          interpolation=interp)
    return img8.astype(np.float32), r


def standardise(img: np.ndarray) -> np.ndarray:
    return ((img - img.mean()) / (img.std() + 1e-6)).astype(np.float32)


def prepare(path, img_size: int) -> Prepared:
    path = Path(path)
    img8 = read_gray8(path)
    ny, nx = img8.shape
    img, r = letterbox(img8, img_size)
    return Prepared(path.stem, path, standardise(img), nx, ny, r, r)


def to_input(img: np.ndarray, ch: int = 3) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(img[None].astype(np.float32), ch, 0))


# --- PartiNet's dataset yaml --------------------------------------------------------------
def _images_of(entry, base: Path) -> list[Path]:
    from trainers.data import IMAGE_SUFFIXES

    out = []
    for e in entry if isinstance(entry, list) else [entry]:
        p = Path(str(e))
        p = p if p.is_absolute() else base / p
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file() and p.suffix == ".txt":
            for line in p.read_text().splitlines():
                if line.strip():
                    q = Path(line.strip())
                    out.append(q if q.is_absolute() else p.parent / q)
        else:
            raise DataError(f"{p}: image list or folder of the dataset yaml not found")
    return out


def label_path(image: Path) -> Path:
    """YOLOv7's rule: the last ``images`` folder of the path becomes ``labels``, suffix .txt."""
    parts = list(image.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def read_label_file(path: Path, nx: int, ny: int):
    import pandas as pd

    rows = []
    if path.is_file():
        for n, line in enumerate(path.read_text().splitlines(), 1):
            tok = line.split()
            if not tok:
                continue
            try:
                vals = [float(t) for t in tok[:5]]
            except ValueError:
                raise DataError(f"{path}:{n}: expected 'class cx cy w h' numbers") from None
            if len(vals) < 5:
                raise DataError(f"{path}:{n}: expected 'class cx cy w h', got {line!r}")
            if int(vals[0]) == 0:
                rows.append((vals[1] * nx, vals[2] * ny, max(vals[3] * nx, vals[4] * ny)))
    a = np.array(rows, dtype=np.float64).reshape(-1, 3)
    return pd.DataFrame({"x": a[:, 0], "y": a[:, 1], "diameter": a[:, 2]})


def open_yaml_dataset(path) -> list[Labelled]:
    """Records of both splits of a ``cryo_training.yaml``."""
    import yaml

    from harvest.conventions import micrograph_key
    from trainers.labels import image_size

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise DataError(f"{path}: not a YAML file ({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict) or "train" not in doc:
        raise DataError(f"{path}: a dataset yaml needs 'train' (and 'val') image lists, as "
                        "written by cryoglean export / split")
    out = []
    for split in ("train", "val"):
        if not doc.get(split):
            continue
        for img in _images_of(doc[split], path.parent):
            nx, ny = image_size(img)
            out.append(Labelled(micrograph_key(img.name), img,
                                read_label_file(label_path(img), nx, ny), split))
    if not out:
        raise DataError(f"{path}: the dataset yaml lists no images")
    return out


# --- training views ------------------------------------------------------------------------
@dataclass
class Views:
    """Random square training views of ``size`` px: a window at a random place, scaled by
    a factor in [1 − scale, 1 + scale], left–right/top–bottom flips and quarter turns; with
    probability ``mosaic`` four such views of ``size/2`` from random micrographs tiled 2×2.
    Returns (view, boxes (n, 4): cx, cy, w, h in view px)."""

    samples: list
    size: int
    diameter: float
    scale: float = 0.25
    mosaic: float = 0.5
    flip: bool = True

    def one(self, s, size: int, rng) -> tuple[np.ndarray, np.ndarray]:
        import cv2

        f = float(rng.uniform(1 - self.scale, 1 + self.scale))
        src = max(8, int(round(size / f)))
        h, w = s.prep.image.shape
        x0 = int(rng.integers(min(0, w - src), max(w - src, 0) + 1))
        y0 = int(rng.integers(min(0, h - src), max(h - src, 0) + 1))
        view, xy = crop_window(s.prep.image, s.xy, x0, y0, src, src, 0.0)
        d = np.where(np.isfinite(s.radius), 2 * s.radius, self.diameter)
        if src != size:
            view = cv2.resize(view, (size, size), interpolation=cv2.INTER_AREA if src > size
                              else cv2.INTER_LINEAR)
        k = size / src
        xy, d = xy * k, d * k
        if self.flip and rng.random() < 0.5:
            view, xy = hflip(view, xy)
        if self.flip and rng.random() < 0.5:
            view, xy = vflip(view, xy)
        if self.flip:
            view, xy = rot90(view, xy, int(rng.integers(4)))
        keep = inside(xy, size, size)
        boxes = np.column_stack([xy[keep], d[keep], d[keep]]).reshape(-1, 4)
        return np.ascontiguousarray(view, dtype=np.float32), boxes

    def __call__(self, i: int, rng) -> tuple[np.ndarray, np.ndarray]:
        if rng.random() >= self.mosaic:
            return self.one(self.samples[i], self.size, rng)
        half = self.size // 2
        out = np.zeros((self.size, self.size), np.float32)
        boxes = []
        for q, j in enumerate([i, *rng.integers(len(self.samples), size=3)]):
            v, b = self.one(self.samples[int(j)], half, rng)
            oy, ox = (q // 2) * half, (q % 2) * half
            out[oy : oy + half, ox : ox + half] = v
            boxes.append(b + np.array([ox, oy, 0, 0]))
        return out, np.concatenate(boxes)


class Encoder:
    """Targets of a whole micrograph (validation): boxes of side = particle diameter."""

    def __init__(self, diameter: float, ch: int = 3):
        self.diameter, self.ch = float(diameter), ch

    def encode(self, image, xy, radius, group):
        d = np.where(np.isfinite(radius), 2 * np.asarray(radius), self.diameter)
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        return {"boxes": np.column_stack([xy, d, d]).astype(np.float32).reshape(-1, 4)}

    @staticmethod
    def collate(items: list[dict]) -> dict:
        import torch

        targets = [np.column_stack([np.full(len(it["boxes"]), i, np.float32), it["boxes"]])
                   for i, it in enumerate(items)]
        out = {"input": torch.from_numpy(np.stack([it["input"] for it in items])),
               "targets": torch.from_numpy(np.concatenate(targets).reshape(-1, 5))}
        if "index" in items[0]:
            out["index"] = torch.tensor([it["index"] for it in items])
        return out


def train_dataset(views: Views, ch: int, repeat: int = 1):
    import torch

    class _Train(torch.utils.data.Dataset):
        def __len__(self):
            return len(views.samples) * repeat

        def __getitem__(self, i):
            rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,))))
            img, boxes = views(i % len(views.samples), rng)
            return {"input": to_input(img, ch), "boxes": boxes.astype(np.float32)}

    return _Train()
