"""Shared helpers of the trainers tests (no tests here): tiny generated micrographs with bright
discs, label files written through the format registry, a one-thread torch fixture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def disc_image(n=256, centres=(), radius=8.0, noise=0.05, seed=0, value=1.0):
    """Dark float32 image with bright discs at ``centres`` ((x, y) px) and a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:n, 0:n]
    img = rng.normal(0, noise, size=(n, n)).astype(np.float32)
    for x, y in centres:
        img[(xx - x) ** 2 + (yy - y) ** 2 <= radius**2] += value
    return img


def random_centres(n_img, count, margin, min_sep, rng):
    pts = []
    while len(pts) < count:
        p = rng.uniform(margin, n_img - margin, size=2)
        if all(np.hypot(*(p - q)) >= min_sep for q in pts):
            pts.append(p)
    return np.array(pts)


def write_mrc(path: Path, img: np.ndarray) -> None:
    import mrcfile

    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(img.astype(np.float32))


def use_registry(monkeypatch=None):
    """Skip unless the format registry (converters.registry) offers EPicker THI."""
    try:
        from converters import registry

        registry.get("thi")
    except (ImportError, ValueError, AttributeError) as exc:
        pytest.skip(f"format registry with 'thi' not available: {exc}")
    return "registry"


def write_dataset(root: Path, n_mics=2, n=256, count=6, radius=8.0, seed=0, mode="particle"):
    """Micrographs ``root/images/mic_XXXX.mrc`` with discs and THI labels ``root/labels``.

    Returns (images dir, labels dir, truth DataFrame[micrograph, x, y]).
    """
    from trainers.labels import write_labels

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    frames = []
    for i in range(n_mics):
        name = f"mic_{i:04d}"
        if mode == "fiber":
            # two straight fibres of point-pairs in different directions
            pts, groups = [], []
            for g, (a, b) in enumerate([((30, 40), (220, 90)), ((60, 210), (200, 150))]):
                t = np.linspace(0, 1, 6)[:, None]
                seg = np.array(a) + t * (np.array(b) - np.array(a))
                pts.extend(seg)
                groups.extend([g] * len(seg))
            dense = []
            for g in (0, 1):
                p = np.array([q for q, gg in zip(pts, groups) if gg == g])
                for a, b in zip(p[:-1], p[1:]):
                    for t in np.linspace(0, 1, 12):
                        dense.append(a + t * (b - a))
            img = disc_image(n, dense, radius=3, seed=seed + i)
            df = pd.DataFrame({"micrograph": name, "x": [p[0] for p in pts],
                               "y": [p[1] for p in pts], "filament": groups})
        else:
            c = random_centres(n, count, 2 * radius + 6, 3 * radius, rng)
            r = rng.uniform(radius * 0.7, radius * 1.3, size=count) if mode == "vesicle" else None
            if mode == "vesicle":
                img = disc_image(n, [], seed=seed + i)
                yy, xx = np.mgrid[0:n, 0:n]
                for (x, y), rr in zip(c, r):
                    img[(xx - x) ** 2 + (yy - y) ** 2 <= rr**2] += 1.0
            else:
                img = disc_image(n, c, radius=radius, seed=seed + i)
            df = pd.DataFrame({"micrograph": name, "x": c[:, 0].round(), "y": c[:, 1].round()})
            if mode == "vesicle":
                df["radius"] = r.round()
                df["score"] = 1.0
        write_mrc(root / "images" / f"{name}.mrc", img)
        frames.append(df)
    truth = pd.concat(frames, ignore_index=True)
    write_labels(truth, root / "labels", "thi")
    return root / "images", root / "labels", truth


@pytest.fixture
def one_thread():
    """One torch thread per test process: the suite runs 2 xdist workers on 2 cores, and
    oversubscribed intra-op threads made training steps several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
