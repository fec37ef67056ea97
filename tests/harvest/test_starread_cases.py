"""harvest.starread on hand-made STAR files: the odd cases and the errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import harvest.starread as starread
from harvest.starread import StarFormatError, read_star, scan_star


def write(tmp_path, text: str, name: str = "t.star"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_empty_loop_then_more_blocks(tmp_path):
    p = write(tmp_path, """
# version 30001

data_empty

loop_
_rlnCoordinateX #1
_rlnCoordinateY #2

# version 30001

data_

loop_
_rlnCoordinateX
_rlnCoordinateY
1.5 2.5
3 4
""")
    data = read_star(p)
    assert list(data) == ["empty", ""]
    assert len(data["empty"]) == 0 and list(data["empty"].columns) == ["rlnCoordinateX",
                                                                      "rlnCoordinateY"]
    assert data[""]["rlnCoordinateX"].tolist() == [1.5, 3.0]


def test_empty_loop_at_end_of_file(tmp_path):
    p = write(tmp_path, "data_a\nloop_\n_rlnA #1\n_rlnB #2\n")
    assert list(read_star(p)["a"].columns) == ["rlnA", "rlnB"]
    p = write(tmp_path, "data_a\nloop_\n_rlnA #1\n_rlnB #2\n   \n# just a comment\n")
    assert len(read_star(p)["a"]) == 0


def test_list_values_quotes_tabs_and_comments(tmp_path):
    p = write(tmp_path, """data_optics
loop_
_rlnOpticsGroupName #1 some comment after the label
_rlnOddZernike #2
_rlnVoltage #3
"group one"\t[0.1,0.2,0.3]   300
'group two' [1,2]\t\t200.5   # trailing comment
""")
    df = read_star(p)["optics"]
    assert df["rlnOpticsGroupName"].tolist() == ["group one", "group two"]
    assert df["rlnOddZernike"].tolist() == ["[0.1,0.2,0.3]", "[1,2]"]
    assert df["rlnVoltage"].tolist() == [300.0, 200.5]
    assert pd.api.types.is_float_dtype(df["rlnVoltage"].dtype)


def test_simple_block_is_a_dict(tmp_path):
    p = write(tmp_path, """data_general

_rlnFinalResolution  3.5
_rlnMaskName  "Mask Create/job020/mask.mrc"
_rlnCount 12

data_x
loop_
_rlnA
7
""")
    data = read_star(p)
    assert data["general"] == {"rlnFinalResolution": 3.5,
                               "rlnMaskName": "Mask Create/job020/mask.mrc", "rlnCount": 12}
    assert data["x"]["rlnA"].tolist() == [7]


def test_numeric_columns_stay_numeric_and_nan_tokens(tmp_path):
    p = write(tmp_path, "data_\nloop_\n_a\n_b\n_c\n1 nan x\n2 3.5 <NA>\n")
    df = read_star(p)[""]
    assert df["a"].dtype == np.int64
    assert df["b"].dtype == np.float64 and np.isnan(df["b"].iloc[0])
    assert df["c"].iloc[0] == "x" and pd.isna(df["c"].iloc[1])


def test_short_and_long_rows_are_errors_with_line(tmp_path):
    p = write(tmp_path, "data_p\nloop_\n_a #1\n_b #2\n_c #3\n1 2 3\n4 5\n7 8 9\n")
    with pytest.raises(StarFormatError, match=r"t\.star:7: row has 2 fields.*3 labels"):
        read_star(p)
    p = write(tmp_path, "data_p\nloop_\n_a #1\n_b #2\n1 2\n4 5 6\n")
    with pytest.raises(StarFormatError, match=r"t\.star:6: row has 3 fields"):
        read_star(p)
    # the column subset still sees short rows
    p = write(tmp_path, "data_p\nloop_\n_a #1\n_b #2\n_c #3\n1 2 3\n4 5\n")
    with pytest.raises(StarFormatError, match="row has 2 fields"):
        read_star(p, columns={"p": ["a"]})


def test_unknown_block_and_malformed_header(tmp_path):
    p = write(tmp_path, "data_a\nloop_\n_x\n1\n")
    with pytest.raises(StarFormatError, match=r"no block data_particles.*data_a"):
        read_star(p, blocks=["particles"])
    p = write(tmp_path, "data_a\n_key\n")
    with pytest.raises(StarFormatError, match="expected '_key value'"):
        read_star(p)
    p = write(tmp_path, "data_a\nthis is not star\n")
    with pytest.raises(StarFormatError, match="unexpected line"):
        read_star(p)
    with pytest.raises(FileNotFoundError):
        read_star(tmp_path / "missing.star")
    assert issubclass(StarFormatError, ValueError)


def test_blocks_selection_skips_the_rest(tmp_path):
    p = write(tmp_path, "data_a\nloop_\n_x\n1\n2\ndata_b\nloop_\n_y\n3\ndata_c\n_k v\n")
    data = read_star(p, blocks=["c", "b"])
    assert list(data) == ["b", "c"]
    assert data["b"]["y"].tolist() == [3] and data["c"] == {"k": "v"}
    assert [b.name for b in scan_star(p)] == ["a", "b", "c"]
    assert [b.labels for b in scan_star(p)] == [["x"], ["y"], []]


def test_columns_as_function(tmp_path):
    p = write(tmp_path, "data_optics\nloop_\n_g\n_px\n1 1.5\ndata_particles\nloop_\n_g\n_x\n_y\n"
                        "1 10 20\n")
    data = read_star(p, columns=lambda name, labels: None if name == "optics" else ["x"])
    assert list(data["optics"].columns) == ["g", "px"]
    assert list(data["particles"].columns) == ["x"]


@pytest.mark.parametrize("chunk", [16, 37, 64, 1 << 20])
def test_block_boundaries_across_chunks(tmp_path, monkeypatch, chunk):
    """Streaming in tiny chunks finds every data_ line, even split between two reads."""
    rows_a = "\n".join(f"{i} {i * 0.5:.3f} mic_{i:04d}.mrc" for i in range(57))
    rows_b = "\n".join(f"{i} 'q {i}'" for i in range(23))
    text = (f"# version 30001\ndata_a\nloop_\n_i #1\n_v #2\n_m #3\n{rows_a}\n\n# version 30001\n"
            f"data_b\nloop_\n_i\n_s\n{rows_b}\ndata_c\n_k 5\n")
    p = write(tmp_path, text)
    monkeypatch.setattr(starread, "_CHUNK", chunk)
    data = read_star(p)
    assert list(data) == ["a", "b", "c"]
    assert data["a"]["i"].tolist() == list(range(57))
    assert data["a"]["m"].iloc[-1] == "mic_0056.mrc"
    assert data["b"]["s"].tolist() == [f"q {i}" for i in range(23)]
    assert data["c"] == {"k": 5}


def test_agrees_with_starfile_on_generated_file(tmp_path):
    starfile = pytest.importorskip("starfile")
    rng = np.random.default_rng(0)
    n = 5000
    particles = pd.DataFrame({
        "rlnCoordinateX": rng.uniform(0, 4096, n).round(6),
        "rlnCoordinateY": rng.uniform(0, 4096, n).round(6),
        "rlnMicrographName": [f"MotionCorr/job002/Movies/mic_{i % 40:04d}.mrc" for i in range(n)],
        "rlnClassNumber": rng.integers(1, 5, n),
        "rlnOriginXAngst": rng.normal(0, 2, n).round(6),
    })
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"],
                           "rlnImagePixelSize": [1.1]})
    path = tmp_path / "gen.star"
    starfile.write({"optics": optics, "particles": particles}, path)
    ref = starfile.read(path, always_dict=True)
    got = read_star(path)
    for name in ref:
        pd.testing.assert_frame_equal(got[name], ref[name], check_dtype=False)
        for col in ref[name].columns:
            assert pd.api.types.is_numeric_dtype(got[name][col]) == \
                pd.api.types.is_numeric_dtype(ref[name][col])
