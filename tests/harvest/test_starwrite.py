"""harvest.starwrite, the one STAR writer: what it writes reads back the same through starfile
(the oracle), harvest.starread and a RELION-style line reader; the picks format and the synth
generator write through it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import starfile

from converters.formats import _common, star
from harvest import starwrite
from harvest.starread import read_star


def relion_style_read(text: str) -> dict:
    """A reader in RELION's manner: line by line, ``_label`` lines after ``loop_`` (anything
    after the label ignored), rows split on blanks with double quotes grouping, every row exactly
    one field per label; ``_key value`` lines outside loops. Values stay text."""
    def split(line: str) -> list[str]:
        out, cur, quoted, started = [], [], False, False
        for ch in line:
            if ch == '"':
                quoted, started = not quoted, True
            elif ch.isspace() and not quoted:
                if started:
                    out.append("".join(cur))
                cur, started = [], False
            else:
                cur.append(ch)
                started = True
        if started:
            out.append("".join(cur))
        return out

    blocks: dict = {}
    name, labels, in_loop = None, [], False
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if s.startswith("data_"):
            name, labels, in_loop = s[5:], [], False
            blocks[name] = {}
        elif s == "loop_":
            in_loop, blocks[name] = True, {"labels": labels, "rows": []}
        elif s.startswith("_") and (not in_loop or not blocks[name]["rows"]):
            if in_loop:
                labels.append(s.split()[0][1:])
            else:
                key, value = split(s)
                blocks[name][key[1:]] = value
        else:
            row = split(s)
            assert len(row) == len(labels), f"row {s!r}: {len(row)} fields, {len(labels)} labels"
            blocks[name]["rows"].append(row)
    return blocks


NAMES = ["MotionCorr/job002/mic 1.mrc", "mic#2.mrc", "_odd.mrc", ";semi.mrc", "", "0001.mrc",
         "plain.mrc"]


@pytest.mark.parametrize("version", [None, 30001, 50001])
def test_star_text_reads_back_the_same_everywhere(tmp_path, version):
    table = pd.DataFrame({
        "rlnMicrographName": NAMES,
        "rlnCoordinateX": np.linspace(0.125, 4000.5, len(NAMES)),
        "rlnClassNumber": np.arange(len(NAMES), dtype=np.int64),
        "rlnIsFlipped": [True, False] * 3 + [True],
    })
    pairs = {"rlnFinalResolution": 3.25, "rlnMaskName": "Mask Create/job020/mask.mrc",
             "rlnCount": 12}
    text = starwrite.star_text([("general", pairs), ("particles", table)], version)
    p = tmp_path / "w.star"
    p.write_text(text)

    ours = read_star(p, parse_as_string=["rlnMicrographName"])
    assert ours["general"] == {"rlnFinalResolution": 3.25,
                               "rlnMaskName": "Mask Create/job020/mask.mrc", "rlnCount": 12}
    got = ours["particles"]
    assert got["rlnMicrographName"].tolist() == NAMES
    np.testing.assert_array_equal(got["rlnCoordinateX"], starwrite.round6(table["rlnCoordinateX"]))
    assert got["rlnClassNumber"].tolist() == list(range(len(NAMES)))
    assert got["rlnIsFlipped"].tolist() == [1, 0, 1, 0, 1, 0, 1]

    oracle = starfile.read(p, always_dict=True)
    assert oracle["general"]["rlnMaskName"] == "Mask Create/job020/mask.mrc"
    names = oracle["particles"]["rlnMicrographName"].tolist()
    assert names == NAMES
    np.testing.assert_array_equal(oracle["particles"]["rlnCoordinateX"], got["rlnCoordinateX"])

    relion = relion_style_read(text)
    assert relion["general"]["rlnMaskName"] == "Mask Create/job020/mask.mrc"
    assert relion["particles"]["labels"] == list(table.columns)
    assert [r[0] for r in relion["particles"]["rows"]] == NAMES
    if version is not None:
        assert text.count(f"# version {version}\n") == 2


def test_quote_rule_and_values_no_star_can_hold():
    assert starwrite.quote("a.mrc") == "a.mrc"
    for text in ("", "a b", "a\tb", "x#y", "_lead", ";lead"):
        assert starwrite.quote(text) == f'"{text}"'
    assert starwrite.quote("it's") == "it's"  # no quotes needed: written as is
    for bad in ("line\nbreak", 'say "a b"', "it's here", "'lead"):
        with pytest.raises(ValueError, match="STAR value"):
            starwrite.quote(bad)
    assert starwrite.format_value(np.float32(1.5)) == "1.500000"
    assert starwrite.format_value(np.int64(7)) == "7" and starwrite.format_value(True) == "1"
    assert starwrite.format_value(float("nan")) == "nan"
    with pytest.raises(ValueError, match="duplicate STAR labels"):
        starwrite.loop_header(["a", "a"])


@pytest.mark.parametrize("flavor", star.FLAVORS)
def test_picks_writer_output_reads_the_same_by_starfile_starread_and_relion(tmp_path, flavor):
    rng = np.random.default_rng(3)
    mics = np.array(["m 1.mrc", "m#2.mrc", "plain.mrc"], dtype=object)[np.arange(9) % 3]
    picks = _common.picks_frame(mics, rng.uniform(0, 999, 9), rng.uniform(0, 999, 9),
                                score=rng.normal(size=9), diameter=np.full(9, 100.0))
    dest = tmp_path / ("out" if flavor == "coords" else "p.star")
    files = star.write(picks, dest, flavor=flavor, pixel_size=1.1)
    for f in files:
        ours = read_star(f, parse_as_string=["rlnMicrographName"])
        oracle = starfile.read(f, always_dict=True)
        assert list(ours) == list(oracle)
        relion = relion_style_read(f.read_text())
        for name, block in ours.items():
            assert list(block.columns) == list(oracle[name].columns)
            assert relion[name]["labels"] == list(block.columns)
            for col in block.columns:
                if col in ("rlnMicrographName", "rlnOpticsGroupName"):
                    assert block[col].tolist() == oracle[name][col].astype(str).tolist()
                    assert block[col].tolist() == [
                        r[relion[name]["labels"].index(col)] for r in relion[name]["rows"]]
                else:
                    np.testing.assert_array_equal(block[col].to_numpy(np.float64),
                                                  oracle[name][col].to_numpy(np.float64))
        back = star.read(f)
        assert len(back) == (9 if flavor != "coords" else 3)
    if flavor != "coords":
        assert set(star.read(files[0])["micrograph"].map(_common.mic_stem)) == {
            "m 1", "m#2", "plain"}


def test_the_synth_generator_writes_through_the_one_writer():
    from harvest.synth import relion as synth_relion
    from harvest.synth import tomo as synth_tomo

    assert synth_relion.write_star is starwrite.write_star
    assert synth_tomo.write_star is starwrite.write_star
    assert synth_relion.round6 is starwrite.round6
