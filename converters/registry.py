"""The one registry of picker formats.

Each format is a module in ``converters/formats/`` with symmetric ``read(path, **opts) ->
DataFrame`` and ``write(picks, dest, **opts) -> list[Path]`` over the picks frame, and declared
``CAPABILITIES`` and ``EXTENSIONS``. A module may declare further formats in ``VARIANTS`` (name ->
capabilities, extensions, reader and writer attribute names), e.g. ``cryolo`` also provides
``box`` and ``cbox``. ``_MODULES`` below is the only list of formats; the CLI's choices come from
:func:`names`. Modules are imported on first use.

Each module also declares how an export of it is laid out (``LAYOUT``, a
:class:`converters.layout.Layout`; a variant's ``"layout"``) and the side information its files
need besides the picks (``READ_NEEDS``, ``WRITE_NEEDS``: names of
:data:`converters.layout.SIDE_INFORMATION`). Adding a format is one module plus one entry in
``_MODULES``; the export, import, dataset API and demo take everything from :class:`FormatSpec`.
A module may also declare writer flavours (``FLAVOURS``; a variant's ``"flavours"``: name ->
``{"options": writer keywords, "table": one table file per split}``, the first the default);
:meth:`FormatSpec.flavoured` gives the spec of one (the CLI's ``--flavour``), and a module's
``read_directory(path)`` reads directories of its own (a RELION pick job) before the generic
per-file reading.

The picks frame: ``micrograph`` (str, as the format stores it; for per-micrograph files the
label file's stem), ``x``, ``y`` (float64 px, particle centres, ``mrcfile`` array frame: x =
column, y = row, origin at the first stored pixel), optional ``z``, ``score``, ``diameter`` (px),
``class_id``, ``filament``, ``radius`` (px). Writers take it as a pandas frame or, where pandas
is not loaded (the pick path), as :class:`PickColumns` (the same columns as numpy arrays); both
give the same bytes.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import import_module
from pathlib import Path

from converters.formats._common import PickColumns  # noqa: F401  (writers' numpy input)
from converters.layout import SIDE_INFORMATION, Layout

# The only list of format modules (converters/formats/<name>.py).
_MODULES: tuple[str, ...] = (
    "yolo", "cryolo", "topaz", "thi", "coord", "star", "csv", "cetpick", "imod", "copick",
)
# Which format a shared extension means when nothing else tells (content sniffing first).
_TXT_SNIFF_ORDER: tuple[str, ...] = ("cetpick", "topaz", "yolo", "imod")
CAPABILITY_NAMES = frozenset(
    {"2d", "3d", "score", "box", "diameter", "per_micrograph", "table", "filament", "vesicle",
     "read", "write"}
)


@dataclass(frozen=True)
class FormatSpec:
    """One format: its name, capabilities, file extensions, read/write functions and the layout
    of its exports."""

    name: str
    capabilities: frozenset
    extensions: tuple
    module: str
    reader: str = "read"
    writer: str = "write"
    recursive: bool = False
    # Side information ``read`` needs besides the file (names of layout.SIDE_INFORMATION):
    # ``image_size`` = {stem: (nx, ny)} in px for formats that store normalised coordinates.
    read_needs: frozenset = frozenset()
    # Side information ``write`` needs besides the picks (``voxel_spacing`` = {stem: Å/px}).
    write_needs: frozenset = frozenset()
    layout: Layout = field(default_factory=Layout)
    # Writer flavours the module declares (``FLAVOURS``, a variant's ``"flavours"``): name ->
    # {"options": writer keyword arguments, "table": labels are one table file}; the first is
    # the default. ``flavour``/``write_options``: the one this spec writes (:meth:`flavoured`).
    flavour_table: tuple = ()
    flavour: str | None = None
    write_options: tuple = ()
    base_layout: Layout | None = None

    def _mod(self):
        return import_module(f"converters.formats.{self.module}")

    def function(self, name: str):
        """A function of the format's module (a layout hook or image-list writer)."""
        fn = getattr(self._mod(), name, None)
        if not callable(fn):
            raise RuntimeError(f"format {self.name!r}: module {self.module} has no function "
                               f"{name!r} that its layout names")
        return fn

    @property
    def writes_table(self) -> bool:
        """Labels are one table file (not one file per micrograph)."""
        return "table" in self.capabilities and "per_micrograph" not in self.capabilities

    def read(self, path, **opts):
        """Picks frame of one file of this format."""
        return getattr(self._mod(), self.reader)(path, **opts)

    def write(self, picks, dest, **opts) -> list[Path]:
        """Write ``picks`` (in this spec's flavour); returns the files written."""
        return getattr(self._mod(), self.writer)(picks, dest, **{**dict(self.write_options),
                                                                 **opts})

    @property
    def flavours(self) -> tuple[str, ...]:
        """Names of the writer flavours (the first is the default); empty when none."""
        return tuple(entry[0] for entry in self.flavour_table)

    def flavoured(self, name: str | None) -> FormatSpec:
        """This format writing flavour ``name`` (None: the default): its writer options, and
        its layout for labels that are one table (``"table": True``) or one file per
        micrograph. ValueError naming the known flavours for an unknown one."""
        if not self.flavour_table:
            if name is None:
                return self
            raise ValueError(f"format {self.name!r} has no flavours (asked for {name!r})")
        table = {n: (t, o) for n, t, o in self.flavour_table}
        if name is None:
            name = self.flavours[0]
        if name not in table:
            close = difflib.get_close_matches(str(name), list(table), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"format {self.name!r} has no flavour {name!r}; {hint}known: "
                             f"{', '.join(table)}")
        is_table, options = table[name]
        caps = set(self.capabilities)
        if is_table:
            caps.discard("per_micrograph")
            caps.add("table")
        spec = replace(self, flavour=name, capabilities=frozenset(caps), write_options=options)
        return _with_layout(spec, self.base_layout)

    @property
    def dims(self) -> tuple[int, ...]:
        return tuple(d for d in (2, 3) if f"{d}d" in self.capabilities)


@lru_cache(maxsize=1)
def _specs() -> tuple[FormatSpec, ...]:
    specs = []
    for modname in _MODULES:
        mod = import_module(f"converters.formats.{modname}")
        recursive = bool(getattr(mod, "RECURSIVE", False))
        needs = frozenset(getattr(mod, "READ_NEEDS", ()))
        wneeds = frozenset(getattr(mod, "WRITE_NEEDS", ()))
        specs.append(_flavoured(_with_layout(FormatSpec(
            modname, frozenset(mod.CAPABILITIES), tuple(mod.EXTENSIONS), modname,
            recursive=recursive, read_needs=needs, write_needs=wneeds,
            flavour_table=_flavour_table(getattr(mod, "FLAVOURS", {})),
            base_layout=getattr(mod, "LAYOUT", None)),
            getattr(mod, "LAYOUT", None))))
        for name, var in getattr(mod, "VARIANTS", {}).items():
            specs.append(_flavoured(_with_layout(FormatSpec(
                name, frozenset(var["capabilities"]), tuple(var["extensions"]), modname,
                var.get("read", "read"), var.get("write", "write"), recursive,
                frozenset(var.get("read_needs", needs)),
                frozenset(var.get("write_needs", wneeds)),
                flavour_table=_flavour_table(var.get("flavours", {})),
                base_layout=var.get("layout")), var.get("layout"))))
    for spec in specs:
        unknown = spec.capabilities - CAPABILITY_NAMES
        if unknown:
            raise RuntimeError(f"format {spec.name!r} declares unknown capabilities {unknown}")
        needs = (spec.read_needs | spec.write_needs) - set(SIDE_INFORMATION)
        if needs:
            raise RuntimeError(f"format {spec.name!r} needs unknown side information {needs}")
    return tuple(specs)


def _flavour_table(flavours: dict) -> tuple:
    """(name, table, sorted writer options) per declared flavour (hashable, like the spec)."""
    return tuple((str(k), bool(v.get("table", False)), tuple(sorted(v.get("options", {}).items())))
                 for k, v in flavours.items())


def _flavoured(spec: FormatSpec) -> FormatSpec:
    """The registry's entry: the default flavour where the format declares flavours."""
    return spec.flavoured(None) if spec.flavour_table else spec


def _with_layout(spec: FormatSpec, layout: Layout | None) -> FormatSpec:
    """``spec`` with its declared layout (the default one when none), defaults filled in."""
    ext = spec.extensions[0] if spec.extensions else ""
    return replace(spec, layout=(layout or Layout()).resolved(spec.writes_table, ext))


def names(dim: int | None = None, capability: str | None = None) -> list[str]:
    """Sorted format names: all, or those that hold ``dim``-dimensional picks (2 or 3) and/or
    have ``capability`` (``read``, ``write``, ...)."""
    if dim not in (None, 2, 3):
        raise ValueError(f"dim must be 2, 3 or None, got {dim!r}")
    if capability is not None and capability not in CAPABILITY_NAMES:
        raise ValueError(f"unknown capability {capability!r}; known: "
                         f"{', '.join(sorted(CAPABILITY_NAMES))}")
    return sorted(s.name for s in _specs()
                  if (dim is None or f"{dim}d" in s.capabilities)
                  and (capability is None or capability in s.capabilities))


def get(name: str) -> FormatSpec:
    """The format called ``name``; ValueError with close matches for an unknown name."""
    for spec in _specs():
        if spec.name == name:
            return spec
    known = names()
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ValueError(f"unknown format {name!r}; {hint}known: {', '.join(known)}")


def _head(path: Path, n: int = 20) -> list[str]:
    lines = []
    with path.open(errors="replace") as fh:
        for line in fh:
            if line.strip():
                lines.append(line.rstrip("\n"))
            if len(lines) >= n:
                break
    return lines


def guess_format(path) -> str:
    """Format name of a file from its extension, sniffing the content of ``.txt`` files
    (cet_pick / Topaz headers, YOLO rows, IMOD points)."""
    path = Path(path)
    ext = path.suffix.lower()
    candidates = [s.name for s in _specs() if ext in s.extensions]
    if not candidates:
        known = sorted({e for s in _specs() for e in s.extensions})
        raise ValueError(f"{path}: cannot tell the format from extension {ext!r} "
                         f"(known: {', '.join(known)}); pass the format name")
    if len(candidates) == 1:
        return candidates[0]
    if ext[1:] in candidates:
        return ext[1:]
    head = _head(path)
    for name in _TXT_SNIFF_ORDER:
        if name in candidates:
            looks_like = getattr(get(name)._mod(), "looks_like", None)
            if looks_like is not None and looks_like(head):
                return name
    raise ValueError(f"{path}: cannot tell which of {', '.join(candidates)} this {ext} file is; "
                     "pass the format name")


def _files_of(directory: Path, spec: FormatSpec) -> list[Path]:
    pattern = directory.rglob("*") if spec.recursive else directory.iterdir()
    return sorted(p for p in pattern if p.is_file() and p.suffix.lower() in spec.extensions
                  and not p.name.startswith("."))


def read_picks(path, fmt: str | None = None, **opts):
    """Picks frame of one file, or of every file of the format in a directory (per-micrograph
    files: micrograph = file stem). ``fmt`` is guessed from the extension when None."""
    from converters.formats._common import concat_frames

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    if path.is_file():
        spec = get(fmt) if fmt else get(guess_format(path))
        return spec.read(path, **opts)
    if fmt:
        spec = get(fmt)
        # a format may know directories of its own (a RELION pick job): its read_directory
        read_dir = getattr(spec._mod(), "read_directory", None)
        if read_dir is not None and spec.reader == "read":
            frame = read_dir(path, **opts)
            if frame is not None:
                return frame
    else:
        exts = {}
        for p in path.iterdir():
            if p.is_file() and not p.name.startswith("."):
                exts.setdefault(p.suffix.lower(), p)
        if not exts:  # nested layouts (copick: <run>/Picks/*.json)
            for p in path.rglob("*"):
                if p.is_file() and not p.name.startswith("."):
                    exts.setdefault(p.suffix.lower(), p)
        found = []
        for sample in exts.values():
            try:
                found.append(guess_format(sample))
            except ValueError:
                continue
        if len(set(found)) != 1:
            raise ValueError(
                f"{path}: cannot tell the format of this directory "
                f"({'formats ' + ', '.join(sorted(set(found))) if found else 'no known files'}); "
                "pass the format name"
            )
        spec = get(found[0])
    files = _files_of(path, spec)
    if not files:
        raise FileNotFoundError(
            f"{path}: no {'/'.join(spec.extensions)} files for format {spec.name!r}"
        )
    return concat_frames([spec.read(f, **opts) for f in files])


def write_picks(picks, dest, fmt: str, **opts) -> list[Path]:
    """Write ``picks`` in format ``fmt``: one file per micrograph into directory ``dest`` for
    per-micrograph formats, or one table file (``dest``, or ``dest/particles.<ext>``)."""
    spec = get(fmt)
    if "write" not in spec.capabilities:
        raise ValueError(f"format {fmt!r} cannot be written")
    return spec.write(picks, dest, **opts)


def get_flavoured(name: str, flavour: str | None = None) -> FormatSpec:
    """:func:`get` in writer flavour ``flavour`` (None: the default one)."""
    return get(name).flavoured(flavour)
