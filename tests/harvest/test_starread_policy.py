"""One STAR policy for every reader path: the reader itself, the crawl's particle parser
(harvest.relion) and the picks format (converters.formats.star, what `cryoglean import` and the
trainers read). A file reads the same way, or fails with the same line, on all three; starfile
is the oracle where the file is valid."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import starfile

from converters.formats import star
from converters.formats._common import FormatError
from harvest.relion import particle_set_from_star
from harvest.starread import StarFormatError, read_star

OPTICS = """# version 30001

data_optics

loop_
_rlnOpticsGroup #1
_rlnOpticsGroupName #2
_rlnMicrographPixelSize #3
_rlnVoltage #4
1 opticsGroup1 1.000000 300.000000

"""


def particles(rows: str, labels=("rlnCoordinateX", "rlnCoordinateY", "rlnMicrographName",
                                 "rlnOpticsGroup")) -> str:
    head = "".join(f"_{name} #{i}\n" for i, name in enumerate(labels, 1))
    return OPTICS + f"# version 30001\n\ndata_particles\n\nloop_\n{head}{rows}"


def write(tmp_path, text: str, name: str = "p.star"):
    p = tmp_path / name
    p.write_text(text)
    return p


def crawl(path):
    """The crawl's reading of a particles file: one set, its micrograph names."""
    pset, _ = particle_set_from_star(path, "set", "picked", path.parent)
    return pset.particles


# --- rows with the wrong number of fields: an error naming the line, everywhere ----------------


@pytest.mark.parametrize("case,rows,line,count", [
    ("short", "1 2 a.mrc 1\n3 4 b.mrc\n5 6 c.mrc 1\n", 22, 3),
    ("long", "1 2 a.mrc 1\n3 4 b.mrc 1 99\n", 22, 5),
    ("short last line", "1 2 a.mrc 1\n3 4\n", 22, 2),
])
def test_wrong_field_count_fails_the_same_way_on_every_path(tmp_path, case, rows, line, count):
    p = write(tmp_path, particles(rows))
    expect = rf"p\.star:{line}: row has {count} fields, loop data_particles has 4 labels"
    with pytest.raises(StarFormatError, match=expect):
        read_star(p)
    with pytest.raises(StarFormatError, match=expect):
        read_star(p, columns={"particles": ["rlnCoordinateX"]})  # a subset sees it too
    with pytest.raises(StarFormatError, match=expect):
        crawl(p)
    with pytest.raises(FormatError, match=expect) as info:
        star.read(p)
    assert "\n" not in str(info.value)


def test_starfile_would_pad_the_short_row(tmp_path):
    """Why the policy is needed: the oracle silently pads, so the file used to import with a
    hole while the crawl refused it."""
    p = write(tmp_path, particles("1 2 a.mrc 1\n3 4 b.mrc\n"))
    df = starfile.read(p, always_dict=True)["particles"]
    assert len(df) == 2 and pd.isna(df["rlnOpticsGroup"].iloc[1])


# --- valid files read alike ---------------------------------------------------------------------


def test_extra_labels_quotes_and_numeric_names(tmp_path):
    labels = ("rlnCoordinateX", "rlnCoordinateY", "rlnMicrographName", "rlnOpticsGroup",
              "rlnAngleRot", "rlnImageName")
    rows = ('10.5 20.5 "mics/my mic.mrc" 1 33.0 000001@Extract/a.mrcs\n'
            "30 40 'mics/other one.mrc' 1 44.0 000002@Extract/a.mrcs  # a comment\n"
            "\n"
            "50.25 60.75 mics/0001.mrc 1 55.5 000003@Extract/a.mrcs\n")
    p = write(tmp_path, particles(rows, labels))
    names = ["mics/my mic.mrc", "mics/other one.mrc", "mics/0001.mrc"]
    x, y = [10.5, 30.0, 50.25], [20.5, 40.0, 60.75]
    got = read_star(p, parse_as_string=["rlnMicrographName"])["particles"]
    assert list(got.columns) == list(labels)
    assert got["rlnMicrographName"].tolist() == names and got["rlnAngleRot"].tolist() == [
        33.0, 44.0, 55.5]
    oracle = starfile.read(p, always_dict=True)["particles"]
    np.testing.assert_array_equal(got["rlnCoordinateX"], oracle["rlnCoordinateX"])
    assert oracle["rlnMicrographName"].tolist()[:2] == names[:2]
    picks = star.read(p)
    assert picks["micrograph"].tolist() == names  # "0001" stays text on the format path too
    np.testing.assert_array_equal(picks[["x", "y"]].to_numpy(), np.c_[x, y])
    crawled = crawl(p)
    assert crawled["micrograph"].tolist() == names
    np.testing.assert_array_equal(crawled[["x", "y"]].to_numpy(), np.c_[x, y])


def test_empty_loop_reads_as_no_rows_on_every_path(tmp_path):
    p = write(tmp_path, particles(""))
    got = read_star(p)
    assert len(got["particles"]) == 0 and "rlnMicrographName" in got["particles"].columns
    assert len(starfile.read(p, always_dict=True)["particles"]) == 0
    assert len(star.read(p)) == 0
    assert len(crawl(p)) == 0


def test_loop_and_key_value_blocks_and_an_empty_block(tmp_path):
    text = ("data_general\n\n_rlnTomoSubTomosAre2DStacks 1\n_rlnName \"a b\"\n\n"
            "data_empty\n\n"
            "data_\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n1.5 2.5\n3 4\n")
    p = write(tmp_path, text, "m.star")
    got = read_star(p)
    assert got["general"] == {"rlnTomoSubTomosAre2DStacks": 1, "rlnName": "a b"}
    assert got["empty"] == {}  # a block with neither pairs nor a loop
    assert got[""]["rlnCoordinateX"].tolist() == [1.5, 3.0]
    picks = star.read(p)  # the key-value blocks are skipped, the loop is the picks
    assert picks["micrograph"].tolist() == ["m", "m"]
    assert picks["x"].tolist() == [1.5, 3.0] and picks["y"].tolist() == [2.5, 4.0]


@pytest.mark.parametrize("text,match", [
    ("data_a\nloop_\nloop_\n_x\n1\n", "a second loop_"),
    ("data_a\n_key\n", "expected '_key value'"),
    ("data_a\nnot star\n", "unexpected line"),
])
def test_malformed_headers_fail_on_both_paths(tmp_path, text, match):
    p = write(tmp_path, text)
    with pytest.raises(StarFormatError, match=match):
        read_star(p)
    with pytest.raises(FormatError, match=match):
        star.read(p)


@pytest.mark.parametrize("chunk", [64, 1 << 20])
@pytest.mark.parametrize("bad", ["", "long", "short"])
def test_streamed_partial_read_counts_fields(tmp_path, monkeypatch, chunk, bad):
    """Large bodies stream through pandas; reading a subset of the columns (what the crawl
    does) still sees a row that is too long or too short, with quotes and comments about."""
    import harvest.starread as starread

    monkeypatch.setattr(starread, "_SMALL", 0)
    monkeypatch.setattr(starread, "_CHUNK", chunk)
    rows = [f'{i}.5 {i} "mic {i}#a.mrc" 1' if i % 3 else f"{i}.5 {i} m{i}.mrc 1  # note"
            for i in range(40)]
    if bad == "long":
        rows[25] += " 7"
    elif bad == "short":
        rows[25] = "25.5 25 m25.mrc"
    p = write(tmp_path, particles("\n".join(rows) + "\n\n# version 30001\n"))
    if not bad:
        df = read_star(p, columns={"particles": ["rlnCoordinateX", "rlnMicrographName"]},
                       parse_as_string=["rlnMicrographName"])["particles"]
        assert df["rlnMicrographName"].iloc[1] == "mic 1#a.mrc" and len(df) == 40
        assert crawl(p)["micrograph"].iloc[2] == "mic 2#a.mrc"
        return
    _partial_read_and_crawl_fail(p, r"p\.star:46: row has (5|3) fields")


def _partial_read_and_crawl_fail(p, match: str) -> None:
    with pytest.raises(StarFormatError, match=match):
        read_star(p, columns={"particles": ["rlnCoordinateX"]})
    with pytest.raises(StarFormatError, match=match):
        crawl(p)


@pytest.mark.parametrize("bad,line", [("", 0), ("long", 46), ("short", 46), ("long word", 46),
                                      ("long first", 21), ("short first", 21)])
def test_streamed_partial_read_with_a_plain_first_row(tmp_path, monkeypatch, bad, line):
    """A plain first row (no quote, no comment): the partial read is fed a copy of it with
    one more field, instead of counting every row's fields. Long and short rows anywhere are
    still errors naming their line; the values and dtypes are the full read's."""
    import harvest.starread as starread

    monkeypatch.setattr(starread, "_SMALL", 0)
    monkeypatch.setattr(starread, "_CHUNK", 64)
    rows = [f"{i}.5 {i} m{i}.mrc {i % 2}" for i in range(40)]
    rows[7] = '7.5 7 "mic 7#b.mrc" 1  # quotes and comments after the first row'
    rows[9] = "9 9 m9.mrc 1"  # an int in a float column
    edit = {"long": (25, rows[25] + " 7"), "short": (25, "25.5 25 m25.mrc"),
            "long word": (25, rows[25] + " extra"), "long first": (0, rows[0] + " 7"),
            "short first": (0, "0.5 0 m0.mrc")}
    if bad:
        k, row = edit[bad]
        rows[k] = row
    p = write(tmp_path, particles("\n".join(rows) + "\n\n# version 30001\n"))
    with open(p, "rb") as fh:  # this test's path: the first row is plain in every case
        assert starread._dummy_row(fh, starread.scan_star(p)[1].body_start) is not None
    if not bad:
        cols = ["rlnCoordinateX", "rlnMicrographName", "rlnOpticsGroup"]
        part = read_star(p, columns={"particles": cols})["particles"]
        full = read_star(p)["particles"][cols]
        pd.testing.assert_frame_equal(part, full)
        assert len(part) == 40 and part["rlnMicrographName"].iloc[7] == "mic 7#b.mrc"
        assert part["rlnCoordinateX"].dtype == np.float64 and part.index.equals(pd.RangeIndex(40))
        assert list(crawl(p)["micrograph"].iloc[[0, 7]]) == ["m0.mrc", "mic 7#b.mrc"]
        return
    _partial_read_and_crawl_fail(p, rf"p\.star:{line}: row has (5|3) fields")


@pytest.mark.parametrize("text,n,ok", [
    (b"1 2 3\n4 5 6\n", 3, True),
    (b"1 2 3\n\n  \n4 5 6", 3, True),
    (b"1 2 3\n4 5 6 7\n", 3, False),
    (b'1 "a b" 3\n4 "" 6\n', 3, True),
    (b'1 "a b" 3 4\n', 3, False),
    (b"1 2 3 # four five\n# only a comment\n", 3, True),
    (b'1 "x#y z" 3 # c d\n', 3, True),
    (b'1 "x#y z" 3 4 # c\n', 3, False),
    (b"1\t2\t3\r\n", 3, True),
    (b"1 2 3\n\n4 5 6 7\n", 3, False),  # a blank line leaves the fast path: still found
    (b"1 2 3\n4\n", 3, False),
])
def test_field_counter(text, n, ok):
    from harvest.starread import _field_counts_ok

    assert _field_counts_ok(text, n) is ok


@pytest.mark.parametrize("small", [True, False])
def test_category_columns_equal_factorized_strings(tmp_path, monkeypatch, small):
    """``parse_as_category`` gives what ``pd.factorize(sort=False)`` of the string column gives:
    categories in order of first appearance, as Python ``str`` (names that look like numbers
    stay text), missing values as code -1; on the streamed path (with its dummy first row) and
    the small-body path alike."""
    import harvest.starread as starread

    if not small:
        monkeypatch.setattr(starread, "_SMALL", 0)
        monkeypatch.setattr(starread, "_CHUNK", 64)
    names = ["z.mrc", "007", "a.mrc", "z.mrc", "nan", "007", "b.mrc", "a.mrc"]
    rows = "".join(f"{i}.5 {i} {m} 1\n" for i, m in enumerate(names))
    p = write(tmp_path, particles(rows))
    cols = {"particles": ["rlnCoordinateX", "rlnMicrographName"]}
    text = read_star(p, columns=cols, parse_as_string=["rlnMicrographName"])["particles"]
    cat = read_star(p, columns=cols, parse_as_category=["rlnMicrographName"])["particles"]
    col = cat["rlnMicrographName"]
    assert isinstance(col.dtype, pd.CategoricalDtype)
    codes, uniq = pd.factorize(text["rlnMicrographName"].to_numpy(dtype=object), sort=False)
    np.testing.assert_array_equal(col.cat.codes.to_numpy(), codes)
    assert list(col.cat.categories) == list(uniq) == ["z.mrc", "007", "a.mrc", "b.mrc"]
    assert all(type(c) is str for c in col.cat.categories)
    assert col.cat.codes.iloc[4] == -1  # "nan" is a missing value
    pd.testing.assert_series_equal(cat["rlnCoordinateX"], text["rlnCoordinateX"])


def test_category_column_of_an_empty_loop(tmp_path):
    p = write(tmp_path, particles(""))
    df = read_star(p, parse_as_category=["rlnMicrographName"])["particles"]
    assert len(df) == 0 and isinstance(df["rlnMicrographName"].dtype, pd.CategoricalDtype)
