"""One picker's coordinate files into another's, without a catalog (``cryoglean convert``).

:func:`convert` reads ``input`` (a file, a directory of per-micrograph files, or a RELION pick
job) with the format registry and writes the picks in format ``dst`` (and writer flavour
``flavour``) to ``output``: a directory for per-micrograph formats, a file (or
``<directory>/particles.<ext>``) for table formats. Coordinates stay pixels of the same images
(DESIGN.md frame: x = column, y = row); only the corner/centre convention, normalisation and
rounding change, as each format module says.

What a format needs besides the picks comes from options:

- image sizes (normalised YOLO labels, read or written): ``images`` (a folder holding
  ``<stem>.<ext>`` images: their headers) or ``micrograph_size`` (one ``(nx, ny)`` for all);
- a box side / diameter (EMAN box, cbox, crYOLO, CSV, PartiNet STAR) where the picks carry none
  (Topaz, THI, STAR coordinates): ``boxsize`` in px;
- a pixel size (copick's Å locations): ``pixel_size`` in Å/px.

An existing output is refused unless ``force`` (then the files written replace those of the
same name). A missing need is one line that names the option to give.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from converters.formats._common import TargetExistsError, mic_stem
from converters.sizes import parse_size, shown


@dataclass
class ConvertResult:
    src: str
    dst: str
    output: Path
    picks: int
    micrographs: int
    files: list[Path]

    def summary(self) -> str:
        return (f"converted {self.picks} picks on {self.micrographs} micrographs from "
                f"{self.src} to {self.dst}: {len(self.files)} file(s) in {self.output}")


class _Sizes(Mapping):
    """``{stem: (nx, ny)}`` from a folder of images (headers read on demand) or one size."""

    def __init__(self, images=None, size=None):
        self.images = Path(images) if images is not None else None
        self.size = size
        self._cache: dict = {}

    def _find(self, stem: str):
        from harvest.conventions import MICROGRAPH_EXTENSIONS

        if self.images is not None:
            for ext in MICROGRAPH_EXTENSIONS:
                p = self.images / f"{stem}{ext}"
                if p.is_file():
                    from harvest.imageio import micrograph_shape

                    return micrograph_shape(p)
        return self.size

    def __getitem__(self, name):
        stem = mic_stem(str(name))
        if stem not in self._cache:
            self._cache[stem] = self._find(stem)
        if self._cache[stem] is None:
            raise KeyError(name)
        return self._cache[stem]

    def __iter__(self):
        return iter(k for k, v in self._cache.items() if v is not None)

    def __len__(self):
        return sum(v is not None for v in self._cache.values())


def _check_output(output: Path, force: bool) -> None:
    if force or not os.path.lexists(output):
        return
    if output.is_dir() and not any(output.iterdir()):
        return  # an empty folder: nothing to overwrite
    raise TargetExistsError(f"{output}: exists; pass --force to replace what the conversion "
                            "writes there, or choose another -o")


def convert(src: str, dst: str, input, output, *, force: bool = False, images=None,
            micrograph_size=None, boxsize: float | None = None, pixel_size: float | None = None,
            flavour: str | None = None) -> ConvertResult:
    """Convert picks of format ``src`` at ``input`` to format ``dst`` at ``output`` (see the
    module docstring)."""
    from converters import registry

    rspec, wspec = registry.get(src), registry.get(dst).flavoured(flavour)
    if "read" not in rspec.capabilities:
        raise ValueError(f"format {src!r} cannot be read")
    if "write" not in wspec.capabilities:
        raise ValueError(f"format {dst!r} cannot be written; writable: "
                         f"{', '.join(registry.names(capability='write'))}")
    input, output = Path(input), Path(output)
    if not input.exists():
        raise FileNotFoundError(f"{input}: no such file or directory to convert")
    if images is not None and not Path(images).is_dir():
        raise FileNotFoundError(f"{images}: no such folder of images (--images)")
    _check_output(output, force)
    sizes = _Sizes(images, parse_size(micrograph_size))
    ropts = {"image_size": sizes} if "image_size" in rspec.read_needs else {}
    if "image_size" in rspec.read_needs and images is None and micrograph_size is None:
        raise ValueError(f"{src} coordinates are normalised by the image size: pass --images "
                         "DIR (the images the picks were made on) or --micrograph-size NXxNY")
    picks = registry.read_picks(input, src, **ropts)
    if picks.empty:
        raise ValueError(f"{input}: no picks found to convert")
    stems = sorted({mic_stem(m) for m in picks["micrograph"].astype(str)})
    wopts: dict = {"overwrite": bool(force)}
    if boxsize is not None:
        if not boxsize > 0:
            raise ValueError(f"--boxsize must be > 0 px, got {boxsize}")
        wopts["boxsize"] = wopts["diameter"] = float(boxsize)
    elif _needs_box(wspec) and not _has_sizes(picks):
        raise ValueError(f"{dst} writes a box per particle and the {src} picks carry no size: "
                         "pass --boxsize PX")
    if "image_size" in wspec.write_needs:
        lacking = [s for s in stems if s not in sizes]
        if lacking:
            raise ValueError(f"{dst} labels are normalised by the image size, unknown for "
                             f"{shown(lacking)}: pass --images DIR or --micrograph-size NXxNY")
        wopts["image_size"] = {s: sizes[s] for s in stems}
    if "voxel_spacing" in wspec.write_needs:
        if pixel_size is None or not pixel_size > 0:
            raise ValueError(f"{dst} stores positions in Å: pass --pixel-size (Å per px)")
        wopts["voxel_spacing"] = {s: float(pixel_size) for s in stems}
    if not wspec.writes_table:
        output.mkdir(parents=True, exist_ok=True)
    elif output.suffix == "" or output.is_dir():
        output.mkdir(parents=True, exist_ok=True)
    files = wspec.write(picks, output, **wopts)
    return ConvertResult(src=src, dst=dst if wspec.flavour is None else f"{dst} ({wspec.flavour})",
                         output=output, picks=len(picks), micrographs=len(stems),
                         files=[Path(f) for f in files])


def _needs_box(spec) -> bool:
    return spec.layout.needs_diameter


def _has_sizes(picks) -> bool:
    return "diameter" in picks.columns and bool(np.isfinite(
        picks["diameter"].to_numpy(float)).all())
