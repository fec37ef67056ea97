"""PartiNet's file stages: ``star`` (detections -> STAR) and ``split`` (STAR -> YOLO dataset).

The rules are PartiNet 1.0.1's (``partinet/process_utils/star_file.py`` and ``split_train.py``,
read for facts; pickers.md §B3, formats.md §9), so that a PartiNet user gets the same files:

``star`` (:func:`detections_to_star`)
    For each image in ``--images`` (sorted by name) with a detection file ``<stem>.txt`` in
    ``--labels`` (``class xc yc w h conf``, normalised to the image): keep rows with
    ``conf > threshold`` (strictly greater), ``x = ceil(xc·W)``, ``y = ceil(yc·H)``,
    ``diameter = ceil(max(w·W, h·H))`` in pixels of that image (W, H from its header:
    :func:`harvest.imageio.micrograph_shape`), micrograph name ``<stem>.mrc``. The STAR is
    PartiNet's single-block ``data_`` table (``rlnMicrographName, rlnCoordinateX,
    rlnCoordinateY, rlnDiameter``; :mod:`converters.formats.star`, flavour ``partinet``).
    With ``relion=True`` also RELION's autopick layout under ``PROJECT/partinet/``:
    ``pick.star`` (``data_coordinate_files``: micrograph -> coordinate file, paths relative to
    the RELION project) and ``movies/<stem>.star`` per micrograph (``rlnCoordinateX/Y`` and,
    beyond PartiNet, the confidence as ``rlnAutopickFigureOfMerit``), written by
    :mod:`harvest.starwrite`.
    Differences: labels without a confidence column are an error (PartiNet drops every row of
    them silently); no rows at all still writes the STAR header (PartiNet writes no file).

``split`` (:func:`split_star`)
    Picks of a STAR (``rlnMicrographName``, ``rlnCoordinateX/Y`` and ``rlnDiameter`` in px, or
    ``diameter=`` for a STAR without it) grouped by micrograph stem; each micrograph's image
    found as ``<stem>`` + ``.png .jpg .jpeg .tif .tiff .mrc`` (PartiNet's order) in
    ``--images``, a micrograph without image skipped (as PartiNet, with a warning). The split is
    PartiNet's: scikit-learn's ``train_test_split(range(n), test_size=0.25, shuffle=True,
    random_state=42)``, i.e. numpy ``RandomState(42).permutation(n)``, the first
    ``ceil(0.25·n)`` indices validation, the rest training (:func:`partinet_split_indices`,
    same numbers without scikit-learn). PartiNet indexes the label files in ``os.listdir``
    order, which the file system decides; here they are sorted by stem, so the same
    micrographs land in the same split as PartiNet's wherever its listing came out sorted.
    Output: the layout of ``export yolo`` (:mod:`converters.formats.yolo`, whose writers are
    used): ``images/{train,val}/`` (copies), ``labels/{train,val}/<stem>.txt``
    (``class x/W y/H d/W d/H``, 6 decimals), ``train.txt``/``val.txt`` (absolute image paths)
    and ``cryo_training.yaml``. The directory is built beside OUT and renamed into place
    (:mod:`converters.atomic`); an existing OUT is replaced only with ``force`` (PartiNet
    writes into it, leaving older files).

Coordinates stay floats where the input has floats (PartiNet parses STAR values with
``int()``, which refuses ``12.5``); they are in the pixel frame of the images given.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from converters.atomic import atomic_directory
from converters.formats import star as star_format
from converters.formats import yolo
from converters.formats._common import mic_stem, picks_frame
from harvest import starwrite
from harvest.imageio import list_micrographs, micrograph_shape
from harvest.starread import loop

log = logging.getLogger(__name__)

# PartiNet's image lookup order for a micrograph stem (split_train.py)
SPLIT_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".mrc")
STAR_NAME_EXTENSION = ".mrc"  # PartiNet names every micrograph <stem>.mrc in its STAR
RELION_DIR = "partinet"  # PROJECT/partinet/pick.star, PROJECT/partinet/movies/<stem>.star
RELION_VERSION = 30001  # the "# version" line RELION 3.1-5 write in autopick.star


class PartiNetFileError(ValueError):
    """An input of ``star``/``split`` that cannot be used (one line: file, problem, fix)."""


# ------------------------------------------------------------------------------------------
# star: detections -> STAR
# ------------------------------------------------------------------------------------------


@dataclass
class StarResult:
    star: Path
    particles: int
    micrographs: int  # micrographs with at least one pick kept
    images: int  # images looked at
    without_labels: list[str] = field(default_factory=list)
    relion_files: list[Path] = field(default_factory=list)


def read_detections(labels, images, conf: float = 0.1) -> tuple[pd.DataFrame, int, list[str]]:
    """Detections above ``conf`` as a picks frame in pixels of the images, PartiNet's rounding.

    Returns (frame with ``micrograph`` = ``<stem>.mrc``, ``x``, ``y``, ``diameter`` (all
    ceil'd, float64) and ``score``; number of images; stems of images without a label file).
    """
    labels, images = Path(labels), Path(images)
    if not labels.is_dir():
        raise FileNotFoundError(f"{labels}: labels directory not found (detect writes "
                                "PROJECT/exp/labels)")
    files = list_micrographs(images, "images folder")
    frames, missing = [], []
    for image in files:
        label = labels / f"{image.stem}.txt"
        if not label.is_file():
            missing.append(image.stem)  # PartiNet skips images without detections
            continue
        nx, ny = micrograph_shape(image)
        det = yolo.read(label, image_size=(nx, ny))
        if len(det) and "score" not in det.columns:
            raise PartiNetFileError(
                f"{label}: detections without a confidence column (6th); star needs the labels "
                "that detect writes (class xc yc w h conf)"
            )
        if not len(det):
            continue
        kept = det[det["score"].to_numpy() > float(conf)]  # strictly greater, as PartiNet
        if not len(kept):
            continue
        frames.append(picks_frame(
            f"{image.stem}{STAR_NAME_EXTENSION}",
            np.ceil(kept["x"].to_numpy()),
            np.ceil(kept["y"].to_numpy()),
            diameter=np.ceil(kept["diameter"].to_numpy()),
            score=kept["score"].to_numpy(),
        ))
    if frames:
        picks = pd.concat(frames, ignore_index=True)
    else:
        picks = picks_frame([], [], [], diameter=[], score=[])
    return picks, len(files), missing


def detections_to_star(labels, images, output, conf: float = 0.1, relion: bool = False,
                       relion_project_dir=None, mrc_prefix: str = "") -> StarResult:
    """``cryoglean star``: write PartiNet's STAR (and RELION's layout); see the module doc.

    ``relion_project_dir``: the RELION project (default: the folder of ``output``);
    ``mrc_prefix``: folder put before ``<stem>.mrc`` in ``pick.star`` (e.g.
    ``MotionCorr/job003/movies``), so RELION finds its own micrographs.
    """
    if not math.isfinite(float(conf)):
        raise PartiNetFileError(f"--conf {conf!r} must be a number")
    output = Path(output)
    if output.is_dir() or output.suffix == "":
        raise PartiNetFileError(f"{output}: --output names the STAR file to write (FILE.star), "
                                "not a folder")
    picks, n_images, missing = read_detections(labels, images, conf)
    star_format.write(picks, output, flavor="partinet", overwrite=True)
    result = StarResult(output, len(picks), int(picks["micrograph"].nunique()), n_images,
                        missing)
    if relion:
        project = Path(relion_project_dir) if relion_project_dir else output.parent
        result.relion_files = write_relion_picks(picks, project, mrc_prefix)
    return result


def write_relion_picks(picks: pd.DataFrame, project, mrc_prefix: str = "") -> list[Path]:
    """RELION's autopick layout of ``picks`` (from :func:`read_detections`) under
    ``project/partinet``: ``pick.star`` and ``movies/<stem>.star``; returns the paths written
    (pick.star first). Micrographs in first-seen order; only those with picks, as PartiNet."""
    root = Path(project) / RELION_DIR
    written: list[Path] = []
    index = []
    for name, rows in picks.groupby("micrograph", sort=False):
        stem = mic_stem(str(name))
        coords = pd.DataFrame({
            "rlnCoordinateX": rows["x"].to_numpy(np.float64),
            "rlnCoordinateY": rows["y"].to_numpy(np.float64),
            "rlnAutopickFigureOfMerit": rows["score"].to_numpy(np.float64),
        })
        rel = f"{RELION_DIR}/movies/{stem}.star"
        written.append(starwrite.write_star(Path(project) / rel, [("", coords)], RELION_VERSION))
        mic = f"{mrc_prefix.rstrip('/')}/{name}" if mrc_prefix else str(name)
        index.append((mic, rel))
    table = pd.DataFrame(index, columns=["rlnMicrographName", "rlnMicrographCoordinates"])
    table = table.astype(object)
    pick = starwrite.write_star(root / "pick.star", [("coordinate_files", table)], RELION_VERSION)
    return [pick, *written]


# ------------------------------------------------------------------------------------------
# split: STAR -> YOLO training dataset
# ------------------------------------------------------------------------------------------


@dataclass
class SplitResult:
    output: Path
    train: list[str]
    val: list[str]
    particles: int
    without_image: list[str] = field(default_factory=list)


def partinet_split_indices(n: int, test_size: float = 0.25, seed: int = 42):
    """(train indices, val indices) of ``n`` items as scikit-learn's
    ``train_test_split(range(n), test_size=test_size, shuffle=True, random_state=seed)``:
    ``RandomState(seed).permutation(n)``, validation = its first ``ceil(test_size·n)``.
    ``test_size`` 0 puts everything in training (scikit-learn refuses 0)."""
    if not 0.0 <= float(test_size) < 1.0:
        raise PartiNetFileError(f"--test-size {test_size} must be at least 0 and below 1")
    n_val = math.ceil(float(test_size) * n)
    if n and n - n_val <= 0:
        raise PartiNetFileError(
            f"{n} micrograph(s) with --test-size {test_size} leave none for training; give more "
            "micrographs or --test-size 0 (all for training)"
        )
    perm = np.random.RandomState(seed).permutation(n)
    return perm[n_val:], perm[:n_val]


def read_star_picks(path, diameter: float | None = None) -> pd.DataFrame:
    """Picks of a STAR file for ``split``: its particles table (``data_particles``, else the
    last loop), with ``rlnDiameter`` (px) or ``diameter`` filling it; a picks frame whose
    ``micrograph`` is the STAR's name."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: STAR file not found")
    from harvest.starread import scan_star

    names = [b.name for b in scan_star(path) if b.is_loop]
    table = loop(path, "particles" if "particles" in names else None,
                 parse_as_string=["rlnMicrographName"])
    need = ["rlnMicrographName", "rlnCoordinateX", "rlnCoordinateY"]
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise PartiNetFileError(
            f"{path}: STAR table lacks {', '.join('_' + c for c in missing)}; split needs "
            "micrograph names and coordinates (px)"
        )
    if "rlnDiameter" in table.columns:
        d = pd.to_numeric(table["rlnDiameter"], errors="coerce").to_numpy(np.float64)
        if diameter is not None:
            d = np.where(np.isnan(d), float(diameter), d)
    elif diameter is not None:
        d = np.full(len(table), float(diameter))
    else:
        raise PartiNetFileError(
            f"{path}: no _rlnDiameter column; give the particle diameter in px with --diameter"
        )
    if np.isnan(d).any() or (d <= 0).any():
        raise PartiNetFileError(f"{path}: _rlnDiameter has missing or non-positive values; "
                                "fix them or give --diameter")
    return picks_frame(table["rlnMicrographName"].astype(str).to_numpy(),
                       table["rlnCoordinateX"].to_numpy(np.float64),
                       table["rlnCoordinateY"].to_numpy(np.float64), diameter=d)


def _find_image(images: Path, stem: str) -> Path | None:
    for ext in SPLIT_IMAGE_EXTENSIONS:
        p = images / f"{stem}{ext}"
        if p.is_file():
            return p
    return None


def split_star(star, images, output, test_size: float = 0.25, seed: int = 42,
               class_id: int = 0, diameter: float | None = None,
               force: bool = False) -> SplitResult:
    """``cryoglean split``: PartiNet's training dataset from a STAR; see the module doc."""
    images = Path(images)
    if not images.is_dir():
        raise FileNotFoundError(f"{images}: images folder not found")
    picks = read_star_picks(star, diameter)
    picks["stem"] = [mic_stem(os.path.basename(m)) for m in picks["micrograph"]]
    found: dict[str, Path] = {}
    without = []
    for stem in sorted(set(picks["stem"])):
        img = _find_image(images, stem)
        if img is None:
            log.warning("%s: no image %s.{png,jpg,jpeg,tif,tiff,mrc}; its picks are skipped",
                        images, stem)
            without.append(stem)
        else:
            found[stem] = img
    if not found:
        raise PartiNetFileError(
            f"{star}: none of its {picks['stem'].nunique()} micrograph(s) has an image in "
            f"{images} (<stem>.png/.jpg/.jpeg/.tif/.tiff/.mrc); point --images at them"
        )
    stems = sorted(found)
    train_idx, val_idx = partinet_split_indices(len(stems), test_size, seed)
    side = {stems[i]: "train" for i in train_idx} | {stems[i]: "val" for i in val_idx}
    sizes = {s: micrograph_shape(found[s]) for s in stems}
    picks = picks[picks["stem"].isin(found)].reset_index(drop=True)
    picks["micrograph"] = picks["stem"]
    with atomic_directory(output, force) as tmp:
        final = Path(os.path.abspath(output))
        lists = {}
        for split in ("train", "val"):
            mine = [s for s in stems if side[s] == split]
            img_dir = tmp / "images" / split
            img_dir.mkdir(parents=True)
            (tmp / "labels" / split).mkdir(parents=True)
            for s in mine:
                shutil.copyfile(found[s], img_dir / found[s].name)  # PartiNet copies as is
            rows = picks[picks["stem"].isin(mine)].drop(columns="stem")
            if mine:
                yolo.write(rows, tmp / "labels" / split, image_size=sizes, class_id=class_id,
                           micrographs=mine, overwrite=True)
            lists[split] = final / f"{split}.txt"
            yolo.write_image_list([final / "images" / split / found[s].name for s in mine],
                                  tmp / f"{split}.txt")
        yolo.write_dataset_yaml(tmp, lists["train"], lists["val"])
    return SplitResult(final, [s for s in stems if side[s] == "train"],
                       [s for s in stems if side[s] == "val"], len(picks), without)

