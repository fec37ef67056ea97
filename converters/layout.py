"""How an export of one format is laid out: the declaration each format module makes beside its
``read``/``write`` (``LAYOUT = Layout(...)``; ``VARIANTS`` entries take a ``"layout"`` key).

The export (:mod:`converters.export`), the dataset API (:mod:`converters.dataset`), the import and
the demo read it through ``registry.get(fmt).layout`` and name no format themselves.

Paths are templates relative to the export root. ``{split}`` becomes the split's folder name
(``split_dirs``: ``train``/``val`` unless the picker names them otherwise) and ``{ext}`` the
format's first label extension. A label destination is a folder of per-micrograph files, or one
table file for formats that write tables (``"table"`` without ``"per_micrograph"`` in their
capabilities). Left out, they are ``{split}/images``, ``{split}/labels`` (per micrograph) or
``{split}/labels/particles{ext}`` (table), and negatives go to the parallel ``labels_negative``.

Code a format truly needs (YOLO's dataset yaml, crYOLO's config) is a function of its module
named by ``side_files``: ``fn(ctx: SideFiles) -> list[Path]``, called after the labels and image
lists are written. Side information that a format's files need besides the picks (``image_size``
for normalised coordinates, ``voxel_spacing`` for Å) is declared by the module as
``READ_NEEDS``/``WRITE_NEEDS`` and computed from the exported micrographs by
:func:`side_information`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

TRAIN, VAL = "train", "val"  # converters.split's names (not imported: format modules import us)
SPLITS = (TRAIN, VAL)
MICROGRAPH_NAMES = ("stem", "file")
IMAGE_DEFAULT_KEYS = frozenset({"images", "width", "normalize", "equalize"})


@dataclass(frozen=True)
class ImageList:
    """A list of the exported images that the picker reads besides its labels.

    ``path``: template of the list file; ``writer``: name of a function of the format module,
    ``writer({stem: image path}, dest) -> Path`` (absolute paths of the final location, or of the
    original micrograph when the export wrote no images); ``every_split``: also for a split
    without micrographs (an empty list); ``needs_images``: only when the export wrote images
    (not ``--images none``).
    """

    path: str
    writer: str
    every_split: bool = True
    needs_images: bool = False


@dataclass(frozen=True)
class Layout:
    """Where an export of one format puts its images, labels, negatives and side files.

    ``images``, ``labels``, ``negatives``: path templates (see the module docstring; ``None``:
    the default). ``negative_class``: negatives are this class in the positives' label files
    instead of a parallel destination (``class_names`` then names the classes written).
    ``split_dirs``: folder name of each split in the templates. ``native``: the picker's own
    layout, which always holds both splits (folders, label files and lists even when a split is
    empty). ``needs_diameter``: labels carry a box of side = the particle diameter, so every
    micrograph needs one. ``image_defaults``: ``images`` mode (``link`` when absent), ``width``
    (a default view: never upsampled), ``normalize``, ``equalize``. ``micrograph_name``: what a
    table's micrograph column holds: the ``stem`` or the image ``file`` name (stem + image
    extension). ``image_lists``: :class:`ImageList` files. ``side_files``: name of the module's
    hook for further side files (see :class:`SideFiles`).
    """

    images: str = "{split}/images"
    labels: str | None = None
    negatives: str | None = None
    negative_class: int | None = None
    class_names: tuple[str, ...] = ("particle", "negative")
    split_dirs: MappingProxyType = field(
        default_factory=lambda: MappingProxyType({TRAIN: TRAIN, VAL: VAL}))
    native: bool = False
    needs_diameter: bool = False
    image_defaults: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    micrograph_name: str = "file"
    image_lists: tuple[ImageList, ...] = ()
    side_files: str | None = None

    def __post_init__(self) -> None:
        # plain dicts in a declaration become read-only mappings (the dataclass is frozen)
        object.__setattr__(self, "split_dirs", MappingProxyType(dict(self.split_dirs)))
        object.__setattr__(self, "image_defaults", MappingProxyType(dict(self.image_defaults)))
        object.__setattr__(self, "image_lists", tuple(self.image_lists))
        unknown = set(self.image_defaults) - IMAGE_DEFAULT_KEYS
        if unknown:
            raise ValueError(f"layout image_defaults has unknown keys {sorted(unknown)}")
        if set(self.split_dirs) != set(SPLITS):
            raise ValueError(f"layout split_dirs must name {SPLITS}, got {dict(self.split_dirs)}")
        if self.micrograph_name not in MICROGRAPH_NAMES:
            raise ValueError(f"layout micrograph_name must be one of {MICROGRAPH_NAMES}")

    def __hash__(self) -> int:  # the mappings are not hashable; equal layouts hash equal
        return hash((self.images, self.labels, self.negatives, self.image_lists,
                     self.side_files))

    def resolved(self, table: bool, ext: str) -> Layout:
        """This layout with the default label and negative destinations filled in and ``{ext}``
        replaced (``table``: labels are one table file)."""
        tail = f"/particles{ext}" if table else ""
        labels = self.labels or "{split}/labels" + tail
        negatives = self.negatives or "{split}/labels_negative" + tail
        return replace(self, labels=labels.replace("{ext}", ext),
                       negatives=negatives.replace("{ext}", ext))

    # paths --------------------------------------------------------------------------------
    def path(self, template: str, split: str | None = None) -> Path:
        """``template`` with ``{split}`` replaced by the folder name of ``split``."""
        if "{split}" in template:
            if split is None:
                raise ValueError(f"layout path {template!r} needs a split")
            template = template.replace("{split}", self.split_dirs[split])
        return Path(template)

    def image_dir(self, split: str) -> Path:
        return self.path(self.images, split)

    def label_path(self, split: str, negative: bool = False) -> Path:
        """Label destination of ``split`` (folder or table file); ``negative``: where the
        negatives go (the positives' own destination when negatives are a class)."""
        if negative and self.negative_class is None:
            return self.path(self.negatives, split)
        return self.path(self.labels, split)

    def negatives_place(self) -> str:
        """Where negatives go, both splits in one string (for the manifest)."""
        if self.negative_class is not None:
            return f"class {self.negative_class}"
        if all(self.split_dirs[s] == s for s in SPLITS):
            return self.negatives
        return ", ".join(str(self.path(self.negatives, s)) for s in SPLITS)


@dataclass
class SideFiles:
    """What a ``side_files`` hook gets: ``tmp`` (where the export is being built: write here),
    ``final`` (where it will be: paths written into files), the format's ``layout``,
    ``micrographs`` (DataFrame: ``stem``, ``split``, ``image`` = final absolute path of the
    exported image or the original micrograph, ``out_nx``, ``out_ny``, ``diameter_px`` in
    exported px, NaN when unknown) and the ``class_names`` the labels hold."""

    tmp: Path
    final: Path
    layout: Layout
    micrographs: object
    class_names: tuple[str, ...]

    def dest(self, template: str, split: str | None = None) -> Path:
        """Where to write the file of ``template``."""
        return self.tmp / self.layout.path(template, split)

    def final_path(self, template: str, split: str | None = None) -> Path:
        """The absolute path the file or folder of ``template`` will have."""
        return self.final / self.layout.path(template, split)


# ---------------------------------------------------------------------------------------------
# Side information (READ_NEEDS / WRITE_NEEDS)
# ---------------------------------------------------------------------------------------------


def _image_size(mics) -> dict:
    from pandas import notna

    return {str(stem): (int(nx), int(ny))
            for stem, nx, ny in zip(mics["stem"], mics["out_nx"], mics["out_ny"])
            if notna(nx) and notna(ny)}


def _voxel_spacing(mics) -> dict:
    from pandas import notna

    return {str(stem): round(float(psize) / float(sx), 6)
            for stem, psize, sx in zip(mics["stem"], mics["pixel_size"], mics["scale_x"])
            if notna(psize) and float(psize) > 0}


# name -> (what it is, function of a micrographs frame with stem, out_nx, out_ny, pixel_size,
# scale_x -> {stem: value} for the micrographs where it is known)
SIDE_INFORMATION = {
    "image_size": ("the image size (px)", _image_size),
    "voxel_spacing": ("the pixel size (Å per exported px)", _voxel_spacing),
}


def side_information(name: str, micrographs) -> dict:
    """``{stem: value}`` of side information ``name`` for the micrographs it is known for.

    ``micrographs``: a frame with ``stem``, ``out_nx``, ``out_ny`` (px of the images the labels
    refer to), ``pixel_size`` (Å per original px) and ``scale_x`` (exported / original).
    """
    if name not in SIDE_INFORMATION:
        raise ValueError(f"unknown side information {name!r}; known: "
                         f"{', '.join(SIDE_INFORMATION)}")
    return SIDE_INFORMATION[name][1](micrographs)


def describe(name: str) -> str:
    """What side information ``name`` is, in words."""
    return SIDE_INFORMATION[name][0] if name in SIDE_INFORMATION else name
