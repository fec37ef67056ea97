r"""The STAR file reader of cryoglean (RELION 3.0 – 5 files and the Python-written variants).

Long module: it is one streaming parser with its row policy and the field counting and bad-row
location that make the policy hold on its fast paths; split, one format's rules would sit in
several modules.

One reader for every STAR file cryoglean reads: the crawl (:mod:`harvest.relion`), ``cryoglean
import`` and the picks formats (:mod:`converters.formats.star`), so a file that crawls also
imports and one that fails, fails the same way. Files are written by :mod:`harvest.starwrite`.

Policy (the same for every caller)

* **Rows.** A loop row must have exactly one field per label. A short row (fewer fields,
  e.g. a truncated last line) or a long row (more fields than labels) is a
  :class:`StarFormatError` naming the file and line; nothing is padded with NaN or dropped
  (``starfile`` pads short rows, which would make a damaged file import with holes).
  A quoted empty string ``""`` is a field. Extra *labels* are fine: ``columns=`` converts only
  those a caller asks for, the others are skipped.
* **Fields** are split on whitespace; double or single quotes group a field with blanks
  (``"a b"``; quotes are removed); ``#`` outside quotes starts a comment, to the end of the line.
* **Blocks.** A ``data_`` line starts a block; ``loop_`` blocks become DataFrames, ``_key value``
  blocks dicts; a loop with labels but no rows gives an empty DataFrame with those columns; a
  block with neither gives an empty dict. A second ``loop_`` in one block, a label line
  without a value outside a loop, or any other text is an error naming the line.

:func:`read_star` returns ``{block name: block}`` like ``starfile.read(path, always_dict=True)``:

* a loop block (``loop_`` + ``_label`` lines + rows) is a :class:`pandas.DataFrame` with one
  column per label (the leading ``_`` dropped, the ``#N`` index and anything after it ignored);
* a simple block (``_key value`` lines) is a plain ``dict`` (values numericised: int, else float,
  else str), exactly as starfile returns it.

How it is faster than starfile: starfile walks the file line by line through ``linecache`` and
joins the rows into one big string before handing it to pandas. Here the file is read once,
sequentially: the short headers are parsed in Python and each loop body is streamed (1 MiB
chunks cut at line ends, stopping at the next ``data_`` line) straight into
``pandas.read_csv(sep=r"\s+", engine="c")``, so no copy of the file is held in memory;
``columns=`` converts only the labels a caller needs. Bodies under 256 KiB (per-micrograph pick
files) are split in Python instead, which avoids read_csv's fixed cost per call.

Agreement with starfile (tested on every STAR file in ../shared/realdata):
same block names (``data_`` alone gives ``""``; a repeated name keeps the last block), same
columns, same values; numeric columns come out numeric (int64 / float64), other columns as
strings; ``nan``, ``NaN`` and ``<NA>`` are missing values, nothing else is; single quotes are
quote characters like double quotes. Intentional differences:

* an empty loop gives an empty DataFrame with the labels as float64 columns (starfile does the
  same for a truly empty body, but fails when the empty body is followed by a comment line);
* a data row with the wrong number of fields is a ``StarFormatError`` (a ``ValueError``) naming
  the file and line (the policy above); starfile pads short rows with NaN;
* comment and blank lines between the ``_label`` lines of a loop header are skipped (starfile
  would take the remaining labels as data);
* a block starts only at a line that begins with ``data_`` in its first column (starfile also
  accepts leading blanks);
* labels in ``parse_as_string`` come back as object columns of Python ``str``.
"""

from __future__ import annotations

import io
import os
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harvest import fsguard

_CHUNK = 1 << 20
_SMALL = 256 << 10  # loop bodies up to this size are tokenised in Python (no read_csv overhead)
_BOOL = {"True": True, "False": False, "TRUE": True, "FALSE": False, "true": True,
         "false": False}
_NA_VALUES = ["nan", "NaN", "<NA>"]
_EXTRA = "__cryoglean_extra_field__"
_VERSION_RE = re.compile(rb"^#\s*version\s+(\d+)", re.MULTILINE)
_BLOCK = b"\ndata_"


class StarFormatError(ValueError):
    """A STAR file that cannot be read: the message names the file, the line and the problem."""


@dataclass
class StarBlock:
    """One ``data_`` block of a file: its header, and where its rows start and end."""

    name: str
    start: int  # byte offset of the ``data_`` line
    is_loop: bool = False
    labels: list[str] = field(default_factory=list)
    body_start: int = -1  # byte offset of the first row of a loop (-1: no rows)
    end: int = -1  # byte offset of the next ``data_`` line or EOF
    pairs: dict = field(default_factory=dict)  # simple block: key -> raw string value


def _numericise(value: str):
    try:
        return int(value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            return value


def _line_of(path: str, offset: int) -> int:
    """1-based line number of a byte offset (only computed for error messages)."""
    with fsguard.open_file(path) as fh:
        return fh.read(offset).count(b"\n") + 1


class _BodyStream:
    """The rows of one loop, streamed from ``start`` up to the next line that starts with
    ``data_`` (or EOF); ``end`` is that offset once reached. Each chunk handed out ends at a
    line end, so a ``data_`` line is never split between chunks. Single quotes become double
    quotes on the fly (starfile does the same to the whole text). Nothing beyond one chunk is
    held in memory."""

    def __init__(self, fh, start: int):
        self._fh = fh
        self._pos = start
        self._line_start = True
        self.end: int | None = None
        fh.seek(start)

    def read(self, size: int = -1) -> bytes:
        if self.end is not None:
            return b""
        size = _CHUNK if size is None or size < 0 else max(16, min(size, _CHUNK))
        data = self._fh.read(size)
        if not data:
            self.end = self._pos
            return b""
        if len(data) == size:
            cut = data.rfind(b"\n") + 1
            if cut:  # hand out whole lines only; the rest is read again next time
                if cut < len(data):
                    data = data[:cut]
                    self._fh.seek(self._pos + cut)
        if self._line_start and data.startswith(b"data_"):
            i = 0
        else:
            i = data.find(_BLOCK)
            i = -1 if i == -1 else i + 1
        if i != -1:
            data = data[:i]
            self.end = self._pos + i
        self._pos += len(data)
        self._line_start = data.endswith(b"\n")
        if b"'" in data:
            data = data.replace(b"'", b'"')
        return data

    def drain(self) -> int:
        """Skip to the end of the body; returns its end offset."""
        while self.read(_CHUNK):
            pass
        return self.end if self.end is not None else self._pos


def _parse_header(path: str, fh, start: int) -> tuple[StarBlock, int]:
    """Parse the ``data_`` line at ``start`` and the labels/pairs that follow. Returns the block
    and the offset where reading goes on (a loop's first row, else the next ``data_`` line or
    EOF)."""
    fh.seek(start)
    raw = fh.readline()
    name = raw.rstrip(b"\r\n").decode("utf-8", "replace")[5:].strip()
    block = StarBlock(name=name, start=start)
    pos = start + len(raw)
    in_loop = False
    while True:
        raw = fh.readline()
        if not raw or raw.startswith(b"data_"):
            block.end = pos
            return block, pos
        text = raw.strip()
        if not text or text.startswith(b"#"):
            pos += len(raw)
            continue
        if text.startswith(b"loop_"):
            if block.is_loop or block.pairs:
                raise StarFormatError(
                    f"{path}:{_line_of(path, pos)}: a second loop_ in block data_{name}; "
                    "one table per data_ block is supported"
                )
            block.is_loop = in_loop = True
        elif text.startswith(b"_"):
            decoded = text.decode("utf-8", "replace")
            if in_loop:
                block.labels.append(decoded.split()[0][1:])
            else:
                try:
                    parts = shlex.split(decoded)
                except ValueError as exc:
                    raise StarFormatError(
                        f"{path}:{_line_of(path, pos)}: cannot split {decoded!r}: {exc}"
                    ) from None
                if len(parts) != 2:
                    raise StarFormatError(
                        f"{path}:{_line_of(path, pos)}: expected '_key value' in block "
                        f"data_{name}, got {decoded!r}"
                    )
                block.pairs[parts[0][1:]] = parts[1]
        elif in_loop:
            if not block.labels:
                raise StarFormatError(
                    f"{path}:{_line_of(path, pos)}: loop_ without labels in block data_{name}"
                )
            block.body_start = pos
            return block, pos
        else:
            raise StarFormatError(
                f"{path}:{_line_of(path, pos)}: unexpected line "
                f"{text[:60].decode('utf-8', 'replace')!r} in block data_{name} (neither "
                "'_key value', 'loop_' nor a comment)"
            )
        pos += len(raw)


def _first_block(fh) -> int:
    """Offset of the first line that starts with ``data_`` (or EOF)."""
    pos = 0
    fh.seek(0)
    for raw in fh:
        if raw.startswith(b"data_"):
            return pos
        pos += len(raw)
    return pos


def _walk(path: str, fh, read_body) -> list[StarBlock]:
    """Walk the blocks of an open file; ``read_body(block)`` is called for each loop with rows
    and must leave ``block.end`` set (reading or draining its rows)."""
    blocks = []
    pos = _first_block(fh)
    size = os.fstat(fh.fileno()).st_size
    while pos < size:
        block, pos = _parse_header(path, fh, pos)
        if block.is_loop and not block.labels:
            raise StarFormatError(
                f"{path}:{_line_of(path, block.start)}: loop_ without labels in block "
                f"data_{block.name}"
            )
        if block.body_start != -1:
            read_body(block)
            pos = block.end
        blocks.append(block)
    return blocks


def scan_star(path: str | os.PathLike) -> list[StarBlock]:
    """Blocks of a STAR file with their labels and byte ranges, converting no rows.

    Raises :class:`StarFormatError` for a malformed header and ``FileNotFoundError`` when the file
    is missing.
    """
    path = os.fspath(path)

    def skip(block: StarBlock) -> None:
        block.end = _BodyStream(fh, block.body_start).drain()

    with fsguard.open_file(path) as fh:
        return _walk(path, fh, skip)


def star_version(path: str | os.PathLike) -> int | None:
    """The ``# version NNNNN`` number written before the first block (RELION 3.1+), or None."""
    with fsguard.open_file(path) as fh:
        head = fh.read(4096)
    m = _VERSION_RE.search(head)
    return int(m.group(1)) if m else None


def _locate_bad_row(path: str, fh, block: StarBlock) -> str:
    """Slow path, only after a field-count check failed: find the first bad row."""
    fh.seek(block.body_start)
    data = fh.read(block.end - block.body_start).decode("utf-8", "replace")
    n = len(block.labels)
    first_line = _line_of(path, block.body_start)
    for i, text in enumerate(data.split("\n")):
        try:  # '#' starts a comment outside quotes only
            count = len(shlex.split(text.replace("'", '"'), comments=True))
        except ValueError:
            count = len(text.split("#", 1)[0].split())
        if count and count != n:
            return (
                f"{path}:{first_line + i}: row has {count} fields, loop data_{block.name} "
                f"has {n} labels"
            )
    return ""


_COMMENT = re.compile(rb"#[^\n]*")


def _field_counts_ok(data: bytes, n: int) -> bool:
    """False when a line of ``data`` (whole lines) holds more than ``n`` fields, True when none
    does and no line is short either; with short rows about, the answer may be True (the caller
    finds those itself: their last label comes out empty). Fields are split on whitespace,
    quotes group blanks, ``#`` starts a comment. Vectorised (a few byte-wise numpy passes per
    chunk, ~1 ms per MiB): a partial read (``usecols``) cannot see rows that are too long, so
    they are counted here."""
    if b"#" in data:
        if b'"' in data:  # a '#' may sit inside quotes: per line, the slow and sure way
            for line in data.decode("utf-8", "replace").split("\n"):
                try:
                    count = len(shlex.split(line, comments=True))
                except ValueError:
                    return False
                if count not in (0, n):
                    return False
            return True
        data = _COMMENT.sub(b"", data)
    a = np.frombuffer(data, dtype=np.uint8)
    if a.size == 0:
        return True
    tok = a > 32  # not blank (space, tab, CR, LF and other control bytes are separators)
    if b'"' in data:  # blanks between a quote and its partner belong to the field
        tok |= (np.cumsum(a == 34, dtype=np.uint8) & 1).astype(bool)
    # Fast path (no blank lines): n fields per line in total. A long row cannot hide behind a
    # short one here: short rows are caught by the caller (the last label comes out empty).
    fields = np.count_nonzero(np.greater(tok[1:], tok[:-1])) + int(tok[0])
    if fields == n * (data.count(b"\n") + (not data.endswith(b"\n"))):
        return True
    starts = np.flatnonzero(tok[1:] & ~tok[:-1]) + 1
    if tok[0]:
        starts = np.concatenate(([0], starts))
    ends = np.flatnonzero(a == 10)
    if ends.size == 0 or ends[-1] != a.size - 1:
        ends = np.concatenate((ends, [a.size]))
    per_line = np.diff(np.searchsorted(starts, ends), prepend=0)
    return bool(np.all((per_line == 0) | (per_line == n)))


def _dummy_row(fh, body_start: int) -> bytes | None:
    """The loop's first row with one more field (``0``) appended, or None where that row
    holds a quote or a comment (the extra field could land inside them)."""
    fh.seek(body_start)
    line = fh.readline(1 << 20)
    if not line.endswith(b"\n") or any(c in line for c in (b"#", b'"', b"'")):
        return None
    return line.rstrip(b"\r\n") + b" 0\n"


class _Prepended:
    """``head``, then the chunks of ``stream`` (what read_csv reads)."""

    def __init__(self, head: bytes, stream):
        self._head, self._stream = head, stream

    def read(self, size: int = -1) -> bytes:
        if self._head:
            head, self._head = self._head, b""
            return head
        return self._stream.read(size)


class _CountingStream:
    """A :class:`_BodyStream` whose chunks are also checked by :func:`_field_counts_ok`;
    ``ok`` turns False at the first chunk with a row of the wrong length."""

    def __init__(self, stream, n: int):
        self._stream = stream
        self._n = n
        self.ok = True

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        if self.ok and data and not _field_counts_ok(data, self._n):
            self.ok = False
        return data


def _small_column(tokens: list[str], as_text: bool):
    """Type one column like read_csv does: int64, else float64 (nan/NaN/<NA> missing), else
    bool, else text; ``as_text``: object ``str``, nan/NaN/<NA> missing (NaN) as read_csv does."""
    na = {"nan", "NaN", "<NA>"}
    if as_text:
        return np.array([np.nan if t in na else t for t in tokens], dtype=object)
    try:
        return np.array(tokens, dtype=np.int64)
    except (ValueError, OverflowError):
        pass
    try:
        return np.array(["nan" if t in na else t for t in tokens], dtype=np.float64)
    except ValueError:
        pass
    if all(t in _BOOL for t in tokens):
        return np.array([_BOOL[t] for t in tokens], dtype=bool)
    values = [None if t in na else t for t in tokens]
    return pd.array(values, dtype="str") if hasattr(pd, "StringDtype") else values


def _parse_small(data: bytes, labels: list[str], wanted: list[str], as_string) -> pd.DataFrame | None:
    """A small loop body without quotes: split in Python. None where read_csv must decide
    (quotes, or a row with the wrong number of fields, so the error path reports it)."""
    if b'"' in data:
        return None
    text = data.decode("utf-8", "replace")
    if "#" in text:
        text = "\n".join(line.split("#", 1)[0] for line in text.split("\n"))
    n = len(labels)
    rows = [line.split() for line in text.split("\n")]
    rows = [r for r in rows if r]
    if any(len(r) != n for r in rows):
        return None
    if not rows:
        return pd.DataFrame({c: np.zeros(0) for c in wanted})
    index = {c: i for i, c in enumerate(labels)}
    columns = list(zip(*rows))
    return pd.DataFrame({
        c: _small_column(list(columns[index[c]]), c in as_string) for c in wanted
    })


def _has_empty_or_value(col: pd.Series, any_value: bool) -> bool:
    """any_value: does the column hold any value at all; else: does it hold an empty field."""
    if pd.api.types.is_numeric_dtype(col.dtype):
        return any_value and bool(col.notna().any())
    values = col.astype(object)
    if any_value:
        return bool(((values != "") & values.notna()).any())
    return bool((values == "").any())


def _read_loop(
    path: str,
    fh,
    block: StarBlock,
    columns: Iterable[str] | None,
    as_string: frozenset[str],
    as_category: frozenset[str] = frozenset(),
) -> pd.DataFrame:
    """Convert the rows of one loop (streamed from the open file); sets ``block.end``."""
    df = _read_loop_frame(path, fh, block, columns, as_string, as_category)
    for c in as_category & set(df.columns):
        df[c] = _first_seen_categorical(df[c])
    return df


def _first_seen_categorical(col: pd.Series) -> pd.Categorical:
    """``col`` as a Categorical with object ``str`` categories in order of first appearance
    (what ``pd.factorize(sort=False)`` gives), whether read_csv made it a Categorical (its
    categories are sorted) or the small-body path an object column."""
    if not isinstance(col.dtype, pd.CategoricalDtype):
        codes, uniq = pd.factorize(col.to_numpy(dtype=object), sort=False)
        return pd.Categorical.from_codes(codes, pd.Index(np.asarray(uniq, dtype=object),
                                                         dtype=object))
    cat = col.array
    codes = np.asarray(cat.codes, dtype=np.int64)
    valid = codes >= 0
    seen, first = np.unique(codes[valid], return_index=True)
    order = seen[np.argsort(first, kind="stable")]  # category codes by first appearance
    remap = np.full(len(cat.categories), -1, dtype=np.int64)
    remap[order] = np.arange(len(order))
    new = np.where(valid, remap[np.where(valid, codes, 0)], -1)
    names = np.asarray(cat.categories, dtype=object)[order]
    return pd.Categorical.from_codes(new, pd.Index([str(v) for v in names], dtype=object))


def _read_loop_frame(
    path: str,
    fh,
    block: StarBlock,
    columns: Iterable[str] | None,
    as_string: frozenset[str],
    as_category: frozenset[str],
) -> pd.DataFrame:
    labels = block.labels
    if len(set(labels)) != len(labels):
        raise StarFormatError(
            f"{path}:{_line_of(path, block.start)}: duplicate labels in loop data_{block.name}"
        )
    if columns is None:
        wanted = list(labels)
    else:
        want = set(columns)
        wanted = [c for c in labels if c in want]
    # Short rows leave the last label missing, so it is always parsed. One extra never-present
    # field is parsed too: a long row fills it. With usecols, pandas takes the number of fields
    # from the first row and rejects more names than that, so a large partial read is fed a
    # copy of its first row with one more field first (row 0, dropped after; every column
    # keeps the dtype it would have). Where that row holds a quote or a comment, the fields of
    # every row are counted instead (_field_counts_ok on each chunk, ~0.25 s per 10^6 rows).
    small = os.fstat(fh.fileno()).st_size - block.body_start <= _SMALL
    dummy = _dummy_row(fh, block.body_start) if columns is not None and not small else None
    stream = _BodyStream(fh, block.body_start)
    source, counted, extra = stream, None, True  # extra: parse one field more than labels
    if small:
        # small body (per-micrograph pick files): pure Python beats read_csv's fixed cost
        data = b"".join(iter(lambda: stream.read(_CHUNK), b""))
        block.end = stream.end
        df = _parse_small(data, labels, wanted, as_string)
        if df is not None:
            return df
        if columns is not None:  # no dummy row here: count the fields of the whole body
            extra = False
            if not _field_counts_ok(data, len(labels)):
                msg = _locate_bad_row(path, fh, block)
                if msg:
                    raise StarFormatError(msg + "; fix or regenerate the file")
        source = io.BytesIO(data)  # quotes or odd rows: let pandas (and the checks) decide
    elif columns is not None:
        if dummy is not None:
            source = _Prepended(dummy, stream)
        else:
            extra = False
            source = counted = _CountingStream(stream, len(labels))
    names = [*labels, _EXTRA] if extra else list(labels)
    usecols = None if columns is None else list(
        dict.fromkeys([*wanted, labels[-1], *([_EXTRA] if extra else [])]))
    na_values = {c: _NA_VALUES for c in labels} | ({_EXTRA: [""]} if extra else {})
    streamed = not isinstance(source, io.BytesIO)  # else the small body was read already
    try:
        df = pd.read_csv(
            source,
            sep=r"\s+",
            engine="c",
            header=None,
            names=names,
            usecols=usecols,
            comment="#",
            keep_default_na=False,
            na_values=na_values,
            dtype={c: "category" if c in as_category else object
                   for c in as_string if c in labels},
            skip_blank_lines=True,
        )
    except pd.errors.EmptyDataError:
        if streamed:
            block.end = stream.drain()
        return pd.DataFrame({c: np.zeros(0) for c in wanted})
    except pd.errors.ParserError as exc:
        if streamed:
            block.end = stream.drain()
        msg = _locate_bad_row(path, fh, block) or (
            f"{path}: loop data_{block.name} (rows from line "
            f"{_line_of(path, block.body_start)}): {exc}"
        )
        raise StarFormatError(msg) from None
    except ValueError:  # with usecols, a first row longer than the names (pandas' own check)
        if streamed:
            block.end = stream.drain()
        msg = _locate_bad_row(path, fh, block)
        if msg:
            raise StarFormatError(msg + "; fix or regenerate the file") from None
        raise
    if streamed:
        block.end = stream.drain()
    if dummy is not None:
        df = df.iloc[1:].reset_index(drop=True)
    # keep_default_na=False turns a missing field into "" (never a valid whitespace token)
    bad = counted is not None and not counted.ok
    if not bad:
        bad = _EXTRA in df.columns and _has_empty_or_value(df[_EXTRA], any_value=True)
    if not bad:
        bad = _has_empty_or_value(df[labels[-1]], any_value=False)
    if bad:
        # slow check: a quoted "" is a legitimate empty value (RELION job.star writes them)
        msg = _locate_bad_row(path, fh, block)
        if msg:
            raise StarFormatError(msg + "; fix or regenerate the file")
    df = df[wanted]
    # starfile numericises columns that read_csv left as text where every value parses
    for col in wanted:
        if col in as_string:
            continue
        dtype = df[col].dtype
        if pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
            try:
                df[col] = pd.to_numeric(df[col])
            except (ValueError, TypeError):
                pass
    return df


ColumnSpec = Mapping[str, Iterable[str]] | Callable[[str, list[str]], Iterable[str] | None]


def read_star(
    path: str | os.PathLike,
    blocks: Iterable[str] | None = None,
    columns: ColumnSpec | None = None,
    parse_as_string: Iterable[str] = (),
    parse_as_category: Iterable[str] = (),
) -> dict[str, pd.DataFrame | dict]:
    """Read a STAR file into ``{block name: DataFrame (loop) | dict (simple block)}``.

    ``blocks``: names of the blocks to return (the rows of others are skipped, not converted);
    a requested block that is absent is a :class:`StarFormatError` naming the file.
    ``columns``: which labels of a loop to convert: ``{block name: labels}`` or a function
    ``(block name, labels) -> labels | None`` (None: all); labels not in the block are ignored.
    ``parse_as_string``: labels kept as text (e.g. micrograph names that look like numbers),
    returned as object columns of Python ``str`` (what callers index with; no Arrow round trip).
    ``parse_as_category``: labels returned as a :class:`pandas.Categorical` of ``str`` (object
    categories in order of first appearance, missing values as code -1, like
    ``pd.factorize(sort=False)``): the tokenizer builds it without a Python string per row
    (micrograph names of 10⁶ particles).

    Values are as written: coordinates stay in whatever frame and unit the file uses.
    One sequential pass over the file; memory holds one chunk plus the converted columns.
    """
    path = os.fspath(path)
    wanted = None if blocks is None else list(blocks)
    as_category = frozenset(parse_as_category)
    as_string = frozenset(parse_as_string) | as_category
    out: dict[str, pd.DataFrame | dict] = {}

    def pick_columns(block: StarBlock):
        if columns is None:
            return None
        if callable(columns):
            return columns(block.name, block.labels)
        return columns.get(block.name)

    def body(block: StarBlock) -> None:
        if wanted is not None and block.name not in wanted:
            block.end = _BodyStream(fh, block.body_start).drain()
            return
        out[block.name] = _read_loop(path, fh, block, pick_columns(block), as_string,
                                     as_category)

    with fsguard.open_file(path) as fh:
        found = _walk(path, fh, body)
    for block in found:
        if wanted is not None and block.name not in wanted:
            continue
        if block.is_loop and block.body_start == -1:
            cols = pick_columns(block)
            keep = block.labels if cols is None else [c for c in block.labels if c in set(cols)]
            out[block.name] = pd.DataFrame({
                c: _first_seen_categorical(pd.Series([], dtype=object)) if c in as_category
                else np.zeros(0) for c in keep})
        elif not block.is_loop:
            out[block.name] = {
                k: (v if k in as_string else _numericise(v)) for k, v in block.pairs.items()
            }
    if wanted is not None:
        missing = [b for b in wanted if b not in out]
        if missing:
            raise StarFormatError(
                f"{path}: no block {', '.join('data_' + m for m in missing)}; blocks in the file: "
                f"{', '.join('data_' + b.name for b in found) or 'none'}"
            )
    # block order as in the file (first occurrence), values of the last occurrence
    order = list(dict.fromkeys(b.name for b in found))
    return {name: out[name] for name in order if name in out}


def loop(path: str | os.PathLike, block: str | None = None, **kwargs) -> pd.DataFrame:
    """One loop block as a DataFrame: ``block`` by name, or the only/last loop block of the file.

    ``kwargs`` go to :func:`read_star` (``parse_as_string``; ``columns`` as a list of labels).
    """
    cols = kwargs.pop("columns", None)
    if block is None:
        infos = [b for b in scan_star(path) if b.is_loop]
        if not infos:
            raise StarFormatError(f"{os.fspath(path)}: no loop_ table in the file")
        block = infos[-1].name
    data = read_star(
        path, blocks=[block], columns=None if cols is None else {block: cols}, **kwargs
    )[block]
    if isinstance(data, dict):
        return pd.DataFrame([data])
    return data
