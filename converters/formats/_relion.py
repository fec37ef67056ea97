"""RELION's own pick files, for the ``star`` reader: a pick job's index, job directories and
RELION 5 tomography picks (formats.md §4.2, §5.3).

- **Index** (RELION 4/5 ``AutoPick/jobNNN/autopick.star``, ``ManualPick/jobNNN/manualpick.star``):
  ``data_coordinate_files`` with ``rlnMicrographName`` → ``rlnMicrographCoordinates`` (a
  per-micrograph coordinate file, path relative to the project directory). Picks take the
  micrograph name from the index. The project directory is ``project_root`` when given, else the
  nearest folder above the index from which the listed files exist.
- **Job directory**: its index; else (RELION 3.x) ``coords_suffix_<suffix>.star`` and every
  ``*_<suffix>.star`` below the job; else a tomography pick job's ``optimisation_set.star``
  (``rlnTomoParticlesFile``) or ``particles.star``.
- **Tomography** (``rlnTomoName`` with ``rlnCenteredCoordinateX/Y/ZAngst``, RELION 5
  ``Picks/jobNNN/particles.star``): placed in voxels of the tomogram by the crawler's own
  functions (:func:`harvest.relion.particles.particle_set_from_star`, which uses
  :mod:`harvest.relion.tomo`), with the tomograms.star named by the job's
  ``optimisation_set.star`` (``rlnTomoTomogramsFile``) or given as ``tomograms``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._common import FormatError, concat_frames, picks_frame

INDEX_LABEL = "rlnMicrographCoordinates"
INDEX_NAMES = ("autopick.star", "manualpick.star")
OPTIMISATION_SET = "optimisation_set.star"


def read_star(path, **opts) -> dict:
    """:func:`harvest.starread.read_star`, imported when a STAR file is read (it loads pandas;
    writing picks does not need it)."""
    from harvest.starread import read_star as read

    return read(path, **opts)


def _tables(path) -> dict:
    return {k: v for k, v in read_star(path, parse_as_string=("rlnMicrographName",
                                                              INDEX_LABEL)).items()}


def project_root_for(start: Path, listed: str) -> Path | None:
    """The nearest folder at or above ``start`` from which the relative path ``listed`` exists
    (RELION writes paths relative to the project directory)."""
    for folder in (start, *start.parents):
        if (folder / listed).exists():
            return folder
    return None


def index_table(blocks: dict):
    """The ``data_coordinate_files`` table of a pick job's index, or None."""
    for table in blocks.values():
        if hasattr(table, "columns") and INDEX_LABEL in table.columns:
            return table
    return None


def read_index(path: Path, table, project_root=None, **opts):
    """Picks of every coordinate file a pick job's index lists (micrograph = the index's
    ``rlnMicrographName``)."""
    from . import star

    if "rlnMicrographName" not in table.columns:
        raise FormatError(path, f"{INDEX_LABEL} without rlnMicrographName; not a pick index")
    listed = table[INDEX_LABEL].astype(str).tolist()
    if not listed:
        return picks_frame([], [], [])
    root = Path(project_root) if project_root else project_root_for(path.parent, listed[0])
    if root is None:
        raise FileNotFoundError(
            f"{path}: the coordinate files it lists (e.g. {listed[0]}) are not found from any "
            "folder above it; import from the RELION project directory, or give its root")
    frames, missing = [], []
    for mic, rel in zip(table["rlnMicrographName"].astype(str), listed):
        p = root / rel
        if not p.is_file():
            missing.append(rel)
            continue
        f = star.read(p, **opts)
        frames.append(f.assign(micrograph=mic))
    if missing:
        raise FileNotFoundError(
            f"{path}: {len(missing)} listed coordinate file(s) missing under {root} "
            f"(e.g. {missing[0]})")
    return concat_frames(frames)


def tomograms_star(path: Path, project_root=None) -> tuple[Path | None, Path | None]:
    """(tomograms.star, project directory) of a RELION 5 pick job: ``rlnTomoTomogramsFile`` of
    the ``optimisation_set.star`` beside ``path``, resolved against the project directory."""
    opt = path.parent / OPTIMISATION_SET
    if not opt.is_file():
        return None, None
    for block in read_star(opt).values():
        value = None
        if isinstance(block, dict):
            value = block.get("rlnTomoTomogramsFile")
        elif hasattr(block, "columns") and "rlnTomoTomogramsFile" in block.columns and len(block):
            value = block["rlnTomoTomogramsFile"].iloc[0]
        if value:
            value = str(value)
            root = Path(project_root) if project_root else project_root_for(path.parent, value)
            if root is not None and (root / value).is_file():
                return root / value, root
    return None, None


def read_tomo(path: Path, project_root=None, tomograms=None, **_):
    """RELION 5 tomogram picks in voxels of their tomogram (``z`` included), micrograph =
    ``rlnTomoName``; the conversion is the crawler's (no recentring: picks as placed)."""
    from harvest.relion.particles import particle_set_from_star

    tomos, root = tomograms_star(path, project_root)
    if tomograms:
        tomos = Path(tomograms)
    if tomos is None:
        raise FormatError(path, (
            "RELION 5 centred coordinates (rlnCenteredCoordinateXAngst) need the project's "
            f"tomograms.star: none named by an {OPTIMISATION_SET} beside it; give tomograms="))
    root = project_root or root or tomos.parent
    rec, _ = particle_set_from_star(path, "picks", "picked", root, recentre=False,
                                    tomograms_star=tomos)
    p = rec.particles
    score = p["score"].to_numpy(float) if "score" in p.columns else None
    return picks_frame(p["micrograph"].astype(str).to_numpy(dtype=object), p["x"], p["y"],
                       z=p["z"].to_numpy(float) if "z" in p.columns else None,
                       score=None if score is None or np.isnan(score).all() else score)


def read_job_directory(path: Path, **opts):
    """Picks of a RELION pick job directory (see the module docstring), or None when ``path``
    is not one."""
    from . import star

    for name in INDEX_NAMES:
        p = path / name
        if p.is_file():
            table = index_table(_tables(p))
            if table is not None:
                return read_index(p, table, **opts)
    suffixes = sorted(path.glob("coords_suffix_*.star"))
    if suffixes:
        suffix = suffixes[0].name[len("coords_suffix_"):-len(".star")]
        files = sorted(p for p in path.rglob(f"*_{suffix}.star")
                       if p.is_file() and not p.name.startswith("coords_suffix_"))
        if not files:
            raise FileNotFoundError(f"{path}: no *_{suffix}.star coordinate files below it")
        return concat_frames([star.read(p, **opts) for p in files])
    opt = path / OPTIMISATION_SET
    if opt.is_file():
        for block in read_star(opt).values():
            value = block.get("rlnTomoParticlesFile") if isinstance(block, dict) else None
            if value:
                root = opts.get("project_root") or project_root_for(path, str(value))
                if root is not None:
                    return star.read(Path(root) / str(value), **opts)
    if (path / "particles.star").is_file():
        return star.read(path / "particles.star", **opts)
    return None


def micrograph_names(table, path: Path):
    """Micrograph per row: ``rlnMicrographName``, else ``rlnTomoName`` (tomogram annotations),
    else the file's name without RELION's pick suffix (one string)."""
    from harvest.conventions import pick_file_micrograph

    for label in ("rlnMicrographName", "rlnTomoName"):
        if label in table.columns:
            return table[label].astype(str).to_numpy(dtype=object)
    return pick_file_micrograph(path.name)


def has_centred(table) -> bool:
    return "rlnCenteredCoordinateXAngst" in table.columns and "rlnCoordinateX" not in (
        table.columns)

