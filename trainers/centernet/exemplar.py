"""EPicker exemplar sets (pickers.md §D2): the first training micrographs, in order, until
``sampling_size`` particles are covered, appended to the previous set.

Layout of an exemplar folder: ``images/<name>.mrc`` (the micrograph as read, frames averaged)
and ``labels/<name>.<ext>`` (its labels in px of that image, written through the format
registry), plus ``exemplar.json`` listing entries in order with the source path. Names get a
numeric prefix (``e0003_mic_0001``) so sets from several datasets never collide.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from trainers.core.dataset import Sample


def select_exemplars(samples: list[Sample], sampling_size: int) -> list[Sample]:
    """The first samples (in the given order) whose labels reach ``sampling_size`` particles."""
    chosen, n = [], 0
    for s in samples:
        if n >= sampling_size:
            break
        chosen.append(s)
        n += len(s.xy)
    return chosen


def write_exemplars(
    chosen: list[Sample], dest: str | Path, label_type: str, previous: str | Path | None = None
) -> list[dict]:
    """Write ``previous`` exemplars (copied) and ``chosen`` into ``dest``; returns the index."""
    import shutil

    import mrcfile

    from trainers.data import read_image
    from trainers.labels import format_name, registry, write_labels

    dest = Path(dest)
    (dest / "images").mkdir(parents=True, exist_ok=True)
    (dest / "labels").mkdir(parents=True, exist_ok=True)
    fmt = format_name(label_type)
    entries: list[dict] = []
    if previous is not None and Path(previous).resolve() != dest.resolve():
        prev = read_index(previous)
        for e in prev:
            for sub in ("images", "labels"):
                for f in (Path(previous) / sub).glob(e["name"] + ".*"):
                    shutil.copy2(f, dest / sub / f.name)
            entries.append(e)
    elif previous is not None:
        entries = read_index(previous)
    start = len(entries)
    for i, s in enumerate(chosen):
        name = f"e{start + i:04d}_{s.prep.name}"
        img = read_image(s.prep.path)
        with mrcfile.new(dest / "images" / f"{name}.mrc", overwrite=True) as m:
            m.set_data(img.astype(np.float32))
        picks = pd.DataFrame(
            {"micrograph": name, "x": s.xy[:, 0] / s.prep.sx, "y": s.xy[:, 1] / s.prep.sy}
        )
        if np.isfinite(s.radius).any():
            picks["radius"] = s.radius / s.prep.sx
        if (s.group >= 0).any():
            picks["filament"] = s.group
        sized = "image_size" in registry().get(fmt).read_needs  # normalised coordinates
        extra = {"image_size": {name: (img.shape[1], img.shape[0])}} if sized else {}
        write_labels(picks, dest / "labels", fmt, micrographs=[name], **extra)
        entries.append({"name": name, "source": str(s.prep.path), "particles": int(len(s.xy))})
    (dest / "exemplar.json").write_text(
        json.dumps({"label_type": label_type, "entries": entries}, indent=1)
    )
    return entries


def read_index(folder: str | Path) -> list[dict]:
    path = Path(folder) / "exemplar.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: not an exemplar set (written by train --continual --output_exemplar)"
        )
    return json.loads(path.read_text())["entries"]


def load_exemplars(folder: str | Path, view) -> list[Sample]:
    """Exemplar samples of a folder through the picker's ``view`` (path → Prepared)."""
    from trainers.core.dataset import labelled_samples

    folder = Path(folder)
    read_index(folder)
    label_type = json.loads((folder / "exemplar.json").read_text())["label_type"]
    return labelled_samples(folder / "images", folder / "labels", label_type, view)


def interleaved_batches(n_new: int, n_ex: int, batch_size: int, rng, every: int = 8
                        ) -> list[list[int]]:
    """EPicker's replay schedule (pickers.md §D2) as index batches over
    ``ConcatDataset([new, exemplar])``: new-data batches, and after every ``every`` of them one
    full pass over the exemplars (batch size ``min(n_ex, batch_size)``); ``every`` is 8 when an
    epoch has more than 8 new batches, else the exemplar pass comes once, at the end."""
    order = rng.permutation(n_new)
    new = [order[i : i + batch_size].tolist() for i in range(0, n_new, batch_size)]
    if n_ex == 0:
        return new
    eb = max(1, min(n_ex, batch_size))
    every = every if len(new) > every else len(new)
    out: list[list[int]] = []
    for j, b in enumerate(new, 1):
        out.append(b)
        if j % every == 0:
            ex = rng.permutation(n_ex) + n_new
            out.extend(ex[i : i + eb].tolist() for i in range(0, n_ex, eb))
    return out
