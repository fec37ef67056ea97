"""``cryoglean tomo-files``: cet_pick's ``utils/generate_train_file.py``, re-implemented.

In folder DIR, every ``*EXT`` tomogram goes into ``DIR/NAME_train_imgs.txt`` (``--inference``:
``NAME_test_imgs.txt``) as ``image_name<TAB>rec_path``, and (unless ``--inference`` or
``--img_only``) every other ``*.txt`` — IMOD ``model2point`` output named ``<tomogram>.txt``
— into ``DIR/NAME_train_coords.txt`` as ``image_name x_coord y_coord z_coord`` (integers,
``int(float())``), the three columns mapped to x, y, z by ``-r ORDER`` as cet_pick does
(``xzy``: x = c0, z = c1, y = c2; ``xyz``: x, y, z = c0, c1, c2; ``zxy``: x = c1, z = c0,
y = c2). ``--compress``: the points were clicked on compressed tomograms, z is doubled
(MiLoPYP's ``--if_double``). The coordinate table and image list are written through the
registry's cet_pick-style table format. Files this command wrote earlier are not read as
point files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

OUTPUT_SUFFIXES = ("_train_imgs", "_test_imgs", "_train_coords")


class FilesError(ValueError):
    """A folder or point file that tomo-files cannot use."""


def _points(path: Path) -> np.ndarray:
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            rows.append([int(float(v)) for v in parts[:3]])
        except ValueError:
            raise FilesError(f"{path}:{i}: expected three numbers (model2point output), got "
                             f"{line.strip()!r}") from None
        if len(parts) < 3:
            raise FilesError(f"{path}:{i}: expected three columns, got {len(parts)}")
    return np.asarray(rows, dtype=np.float64).reshape(-1, 3)


def tomo_files(directory, out: str, ext: str = ".rec", order: str = "xzy",
               inference: bool = False, img_only: bool = False,
               compress: bool = False) -> dict:
    """Write the image list (and coordinate table) into ``directory``; returns their paths
    and counts."""
    import pandas as pd

    from trainers.labels import registry
    from trainers.tomopicker.volume import _coord_format

    folder = Path(directory)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder (-d DIR holds the tomograms)")
    fmt = registry().get(_coord_format())
    mod_axes = fmt.function("axes_from_columns")
    tomos = sorted(folder.glob(f"*{ext}"))
    if not tomos:
        raise FilesError(f"{folder}: no *{ext} tomogram (set the extension with -e)")
    images = {p.name[: -len(ext)]: str(p.resolve()) for p in tomos}
    img_path = folder / f"{out}_{'test' if inference else 'train'}_imgs.txt"
    fmt.function("write_image_list")(images, img_path, overwrite=True)
    result = {"images": str(img_path), "tomograms": len(images)}
    if inference or img_only:
        return result
    frames = []
    for txt in sorted(folder.glob("*.txt")):
        if txt.stem.endswith(OUTPUT_SUFFIXES):
            continue
        c = _points(txt)
        x, y, z = mod_axes(c[:, 0], c[:, 1], c[:, 2], order)
        z = np.asarray(z) * (2 if compress else 1)
        frames.append(pd.DataFrame({"micrograph": txt.stem, "x": x, "y": y, "z": z}))
    if not frames:
        raise FilesError(f"{folder}: no point file (<tomogram>.txt from model2point) to turn "
                         "into training coordinates; use --img_only for an image list alone")
    picks = pd.concat(frames, ignore_index=True)
    coords = folder / f"{out}_train_coords.txt"
    registry().write_picks(picks, str(coords), fmt.name, overwrite=True)
    result.update(coords=str(coords), points=len(picks))
    return result
