"""Shared pieces of the format modules: the picks frame, errors, atomic writes, file naming.

The picks frame (the pivot every format reads into and writes from) has the columns
``micrograph`` (str), ``x``, ``y`` (float64 px, particle centres) and optionally ``z``, ``score``,
``diameter`` (px), ``class_id``, ``filament`` (int group id) and ``radius`` (px, vesicles).
Pixel frame (DESIGN.md): x = column, y = row of the ``mrcfile`` array, origin at the first stored
pixel; z = section. Floats are kept; formats that store integers round on writing.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from harvest.conventions import MICROGRAPH_EXTENSIONS, micrograph_stem

PICK_COLUMNS: tuple[str, ...] = (
    "micrograph", "x", "y", "z", "score", "diameter", "class_id", "filament", "radius",
)
_FLOAT_COLUMNS = ("x", "y", "z", "score", "diameter", "radius")
_INT_COLUMNS = ("class_id", "filament")
# the extensions a micrograph name may carry: one list, in harvest.conventions
IMAGE_EXTENSIONS: tuple[str, ...] = MICROGRAPH_EXTENSIONS


class FormatError(ValueError):
    """A file that does not follow its format; the message names the file and the line."""

    def __init__(self, path, message: str, line: int | None = None):
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line


class TargetExistsError(FileExistsError):
    """Refusing to overwrite an existing file without ``overwrite=True``."""


def picks_frame(micrograph, x, y, **optional):
    """Build a picks frame with the pivot's dtypes; optional columns given as None are left out.

    ``micrograph`` may be one string (repeated) or one value per pick.
    """
    import pandas as pd

    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    if isinstance(micrograph, str):
        mic = np.full(n, micrograph, dtype=object)
    else:
        mic = np.asarray(micrograph, dtype=object)
    data = {"micrograph": mic, "x": x, "y": np.asarray(y, dtype=np.float64)}
    for name in PICK_COLUMNS[3:]:
        value = optional.get(name)
        if value is None:
            continue
        if name in _INT_COLUMNS:
            data[name] = np.asarray(value).astype(np.int64)
        else:
            data[name] = np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)).copy()
    frame = pd.DataFrame(data)
    frame["micrograph"] = frame["micrograph"].astype(str)
    return frame


class PickColumns:
    """The picks frame as numpy columns: what a writer accepts where pandas is not loaded (the
    pick path, whose start-up every Slurm array task pays; issue 16).

    ``data``: column name -> one value per pick (``micrograph`` may be one string for all),
    in the pivot's names and units (module docstring). Writers read it, like a frame, only
    through the helpers below (:func:`column`, :func:`has_values`, :func:`take_rows`,
    :func:`row_positions`, :func:`reset_rows`, :func:`factorize_names`), so the bytes they
    write do not depend on which of the two they were given (tested for every format).
    ``index``: each row's position in the table it was taken from (a frame's index).
    """

    __slots__ = ("data", "index")

    def __init__(self, data: dict, index: np.ndarray | None = None):
        n = len(np.asarray(data["x"]))
        cols = {}
        for name, values in data.items():
            if name == "micrograph" and isinstance(values, str):
                values = np.full(n, values, dtype=object)
            values = np.asarray(values)
            if values.shape != (n,):
                raise ValueError(f"picks column {name!r} has shape {values.shape}, not ({n},)")
            cols[name] = values
        self.data = cols
        self.index = np.arange(n) if index is None else np.asarray(index)

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.data)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.data[name]

    def take(self, rows) -> PickColumns:
        """The rows ``rows`` (positions or a boolean mask), keeping their index."""
        return PickColumns({k: v[rows] for k, v in self.data.items()}, self.index[rows])

    def to_frame(self):
        """The same picks as a pandas picks frame (pivot column order and dtypes)."""
        d = self.data
        return picks_frame(d["micrograph"], d["x"], d["y"],
                           **{k: v for k, v in d.items() if k not in ("micrograph", "x", "y")})


def has_values(picks, name: str, every: bool = False) -> bool:
    """Whether column ``name`` exists and has a non-missing value (``every``: no gap)."""
    if name not in picks.columns:
        return False
    if isinstance(picks, PickColumns):
        v = picks[name]
        present = (~np.isnan(v) if v.dtype.kind == "f"
                   else np.array([x is not None and x == x for x in v], dtype=bool)
                   if v.dtype.kind == "O" else np.ones(len(v), dtype=bool))
    else:
        present = picks[name].notna().to_numpy()
    return bool(present.all() if every else present.any())


def take_rows(picks, rows):
    """Rows by position or boolean mask, keeping their index (``DataFrame.iloc``)."""
    return picks.take(rows) if isinstance(picks, PickColumns) else picks.iloc[rows]


def row_positions(rows) -> np.ndarray:
    """The index of ``rows`` (positions in the table they were taken from, after
    :func:`reset_rows`)."""
    return rows.index if isinstance(rows, PickColumns) else rows.index.to_numpy()


def reset_rows(picks):
    """``picks`` with the index 0..n-1 (``reset_index(drop=True)``)."""
    if isinstance(picks, PickColumns):
        return PickColumns(picks.data)
    return picks.reset_index(drop=True)


def factorize_names(picks) -> tuple[np.ndarray, list[str]]:
    """(code per row, micrograph names in first-seen order) of the ``micrograph`` column, as
    ``pandas.factorize(sort=False)`` of it as strings."""
    if not isinstance(picks, PickColumns):
        import pandas as pd

        codes, names = pd.factorize(picks["micrograph"].astype(str), sort=False)
        return codes, [str(n) for n in names]
    mic = picks["micrograph"].astype(str)
    if not len(mic):
        return np.zeros(0, dtype=np.intp), []
    uniq, first, inverse = np.unique(mic, return_index=True, return_inverse=True)
    seen = np.argsort(first, kind="stable")
    rank = np.empty(len(uniq), dtype=np.intp)
    rank[seen] = np.arange(len(uniq))
    return rank[inverse.ravel()], [str(u) for u in uniq[seen]]


def empty_frame():
    return picks_frame([], [], [])


def concat_frames(frames: list):
    """Concatenate picks frames, keeping the pivot's column order."""
    import pandas as pd

    frames = [f for f in frames if f is not None]
    if not frames:
        return empty_frame()
    out = pd.concat(frames, ignore_index=True)
    cols = [c for c in PICK_COLUMNS if c in out.columns]
    cols += [c for c in out.columns if c not in cols]
    return out[cols]


def check_picks(picks, what: str, required: Iterable[str] = ("micrograph", "x", "y")) -> None:
    """ValueError naming the columns a writer needs but the frame lacks."""
    missing = [c for c in required if c not in picks.columns]
    if missing:
        raise ValueError(
            f"{what}: picks frame lacks column(s) {', '.join(missing)}; "
            f"it has {', '.join(map(str, picks.columns)) or 'none'}"
        )


def column(picks, name: str, default=None, dtype=np.float64) -> np.ndarray | None:
    """A column as a numpy array, or ``default`` broadcast when the column is absent."""
    if name in picks.columns:
        if isinstance(picks, PickColumns):
            return np.asarray(picks[name], dtype=dtype)
        return picks[name].to_numpy(dtype=dtype)
    if default is None:
        return None
    return np.full(len(picks), default, dtype=dtype)


def sizes_px(picks, size, what: str, option: str = "diameter", noun: str = "diameter") -> np.ndarray:
    """Per-pick box side / diameter in px: ``size`` (the writer's option) for every pick when
    given, else the picks' ``diameter`` column, which must then have no gaps."""
    if size is not None:
        return np.full(len(picks), float(size))
    d = column(picks, "diameter")
    if d is None or np.isnan(d).any():
        raise ValueError(
            f"{what} needs a {noun}: give {option}= (px) or a 'diameter' column without gaps"
        )
    return d


def mic_stem(name: str) -> str:
    """File stem for a micrograph name: basename without a known image extension
    (:func:`harvest.conventions.micrograph_stem`)."""
    return micrograph_stem(name)


def group_rows(picks) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Order rows by micrograph (stable, first-seen order) for per-micrograph writing.

    Returns (row order, micrograph names, start offsets into the ordered rows; len = names + 1).
    """
    codes, names = factorize_names(picks)
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=len(names)) if len(codes) else np.zeros(0, np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return order, names, starts


def table_target(dest, default_name: str) -> Path:
    """Where a table format writes: ``dest`` itself, or ``dest/default_name`` for a directory."""
    dest = Path(dest)
    if dest.is_dir() or dest.suffix == "":
        return dest / default_name
    return dest


def is_single_file(dest, extensions: tuple[str, ...]) -> bool:
    dest = Path(dest)
    return not dest.is_dir() and dest.suffix.lower() in extensions


def check_targets(paths: Iterable[Path], overwrite: bool) -> None:
    if overwrite:
        return
    for p in paths:
        if os.path.lexists(p):
            raise TargetExistsError(
                f"{p}: exists; pass overwrite=True (--force) to replace it, or choose another output"
            )


def write_atomic(path: Path, data, overwrite: bool = False, _checked: bool = False) -> Path:
    """Write ``data`` (str, bytes, or a list of bytes/str/numpy uint8 buffers written one after
    the other) to a temporary file beside ``path``, then rename it into place.

    Readers never see a half-written file; an existing file is replaced only with ``overwrite``.
    """
    path = Path(path)
    if not _checked:
        if not overwrite and os.path.lexists(path):
            raise TargetExistsError(
                f"{path}: exists; pass overwrite=True (--force) to replace it, or choose "
                "another output"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
    parts = data if isinstance(data, (list, tuple)) else [data]
    views = [memoryview(p.encode("utf-8") if isinstance(p, str) else p).cast("B") for p in parts]
    views = [v for v in views if v.nbytes]
    # unique per process and thread; O_EXCL guards against anything else
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            _write_all(fd, views)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def _write_all(fd: int, views: list[memoryview]) -> None:
    """Write the buffers with as few system calls as possible (one writev for small files)."""
    while views:
        done = os.writev(fd, views[:512]) if hasattr(os, "writev") else os.write(fd, views[0])
        while views and done >= views[0].nbytes:
            done -= views[0].nbytes
            views.pop(0)
        if views and done:
            views[0] = views[0][done:]


def write_per_micrograph(
    picks,
    dest,
    ext: str,
    render,
    *,
    overwrite: bool = False,
    micrographs: Iterable[str] | None = None,
    header: bytes = b"",
    footer: bytes = b"",
) -> list[Path]:
    """One file per micrograph in directory ``dest`` (``<stem><ext>``), or the single file
    ``dest`` when it carries the extension and the picks cover at most one micrograph.

    ``render(rows) -> (bytes, offsets)`` formats the picks ``rows`` (already ordered by
    micrograph) as text; file i gets the bytes of its rows. ``micrographs`` adds empty files for
    micrographs without picks (negatives for training).
    """
    order, names, starts = group_rows(picks)
    if micrographs is not None:
        seen = set(names)
        for m in micrographs:
            if str(m) not in seen:
                names.append(str(m))
                starts = np.append(starts, starts[-1])
                seen.add(str(m))
    dest = Path(dest)
    if is_single_file(dest, (ext,)):
        if len(names) > 1:
            raise ValueError(
                f"{dest}: one {ext} file holds one micrograph, but the picks cover {len(names)}; "
                "give a directory instead"
            )
        targets = [dest]
    else:
        targets = [dest / f"{mic_stem(n)}{ext}" for n in names]
        if len(set(targets)) != len(targets):
            raise ValueError(
                f"{dest}: two micrographs map to the same {ext} file name; make names unique"
            )
    check_targets(targets, overwrite)
    rows = take_rows(picks, order) if len(order) else picks
    text, offsets = render(rows)

    def parts(i: int) -> list:
        return [header, text[offsets[starts[i]] : offsets[starts[i + 1]]], footer]

    if len(targets) > 1 and not dest.exists():
        # a new directory: fill a hidden sibling, then rename it into place at once
        _write_new_directory(dest, targets, parts)
        return targets
    if targets:
        targets[0].parent.mkdir(parents=True, exist_ok=True)

    def one(i: int) -> Path:
        return write_atomic(targets[i], parts(i), overwrite, _checked=True)

    _run(one, len(targets))
    return targets


def _run(fn, n: int) -> None:
    if n > 16:
        # file creation dominates for many small files; the syscalls release the GIL
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(fn, range(n)))
    else:
        for i in range(n):
            fn(i)


def _write_new_directory(dest: Path, targets: list[Path], parts) -> None:
    """Write all files into ``.<dest>.<pid>.tmp`` beside ``dest`` and rename that directory to
    ``dest``: readers see no directory or the complete one (one rename instead of one per
    file)."""
    import shutil

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.mkdir()
    try:

        def one(i: int) -> None:
            fd = os.open(tmp / targets[i].name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                _write_all(fd, [memoryview(p).cast("B") for p in parts(i) if len(p)])
            finally:
                os.close(fd)

        _run(one, len(targets))
        try:
            os.rename(tmp, dest)
        except OSError:  # dest appeared meanwhile: move the files one by one
            for t in targets:
                if os.path.lexists(t):
                    raise TargetExistsError(
                        f"{t}: exists; pass overwrite=True (--force) to replace it"
                    ) from None
                os.replace(tmp / t.name, t)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def read_text(path) -> str:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return path.read_text(encoding="utf-8", errors="replace")


def parse_float(token: str, path, line: int, what: str) -> float:
    try:
        return float(token)
    except ValueError:
        raise FormatError(path, f"{what} {token!r} is not a number", line) from None


def numeric_rows(path, lines: list[tuple[int, str]], ncols_min: int, what: str,
                 na_tokens: tuple[str, ...] = (), exact: int | None = None) -> np.ndarray:
    """Whitespace-separated numeric rows ``(line number, text)`` to a float array.

    Rows may have different lengths (the result is as wide as the widest row, NaN-padded) unless
    ``exact`` demands a count; a row shorter than ``ncols_min`` or holding a non-number (other
    than one of ``na_tokens``, read as NaN) raises FormatError naming its line.
    """
    import pandas as pd

    if not lines:
        return np.zeros((0, exact or ncols_min))
    split = [s.split() for _, s in lines]
    counts = np.fromiter((len(t) for t in split), dtype=np.int64, count=len(split))
    for i in np.flatnonzero((counts < ncols_min) | ((counts != exact) if exact else False)):
        want = exact if exact else f"at least {ncols_min}"
        raise FormatError(path, f"expected {want} columns ({what}), found {counts[i]}",
                          lines[i][0])
    width = int(counts.max())
    flat = pd.Series([t for tok in split for t in tok], dtype=object)
    values = pd.to_numeric(flat, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.isnan(values)
    if bad.any():
        bad &= ~flat.isin(na_tokens).to_numpy() if na_tokens else bad
        bad &= ~flat.str.lower().isin(("nan",)).to_numpy()
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            row = int(np.searchsorted(np.cumsum(counts), k, side="right"))
            raise FormatError(path, f"{flat.iloc[k]!r} is not a number ({what})", lines[row][0])
    if (counts == width).all():
        return values.reshape(len(split), width)
    out = np.full((len(split), width), np.nan)
    mask = np.arange(width)[None, :] < counts[:, None]
    out[mask] = values
    return out
