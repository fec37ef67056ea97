"""harvest.csfile: .cs reader on real CryoSPARC files, bad files, strings, passthrough join."""

from __future__ import annotations

import builtins
import csv
import sys

import numpy as np
import pytest
from conftest import realfile

from harvest.csfile import (
    CSDAT_MAGIC,
    CsFileError,
    cs_field_names,
    decode_strings,
    factorize_bytes,
    join_passthrough,
    read_cs,
)

CRYODRGN = "ml-struct-bio/cryodrgn"
CSTOOLS = "cryoem-uoft/cryosparc-tools"
REAL_CS = [
    (CSTOOLS, "tests/data/4k_dataset.cs"),
    (CRYODRGN, "tests/data/cryosparc_J2_particles_exported.cs"),
    (CRYODRGN, "tests/data/cryosparc_P12_J24_001_particles.cs"),
    (CRYODRGN, "tests/data/empiar_10076_7.cs"),
]


def _sources_rows(realdata, repo: str, path: str) -> tuple[int, int]:
    """rows= and ncols= of a file as SOURCES.tsv records them."""
    with open(realdata / "SOURCES.tsv", encoding="utf-8") as fh:
        for row in csv.reader(fh, delimiter="\t"):
            if len(row) >= 7 and row[0] == repo and row[2] == path:
                desc = row[-1]
                rows = int(desc.split("rows=")[1].split()[0])
                ncols = int(desc.split("ncols=")[1].split()[0])
                return rows, ncols
    pytest.skip(f"{repo}:{path} not listed in SOURCES.tsv")


def save_cs(path, arr) -> None:
    """np.save into a .cs name (np.save(path) would append .npy)."""
    with open(path, "wb") as fh:
        np.save(fh, arr, allow_pickle=False)


@pytest.mark.parametrize(("repo", "path"), REAL_CS)
def test_real_files_rows_and_fields_match_sources(realdata, repo, path):
    f = realfile(realdata, repo, path)
    rows, ncols = _sources_rows(realdata, repo, path)
    arr = read_cs(f)
    assert arr.shape == (rows,)
    assert len(arr.dtype.names) == ncols
    assert arr.dtype["uid"] == np.dtype("<u8")
    assert cs_field_names(f) == arr.dtype.names


def test_header_only_4k_dataset(realdata):
    f = realfile(realdata, CSTOOLS, "tests/data/4k_dataset.cs")
    assert f.stat().st_size == 4096
    arr = read_cs(f)
    assert len(arr) == 0 and len(arr.dtype.names) == 106
    assert arr.dtype["location/micrograph_shape"].shape == (2,)
    sub = read_cs(f, fields=["location/", "pick_stats/ncc_score"])
    assert "uid" in sub.dtype.names and "pick_stats/ncc_score" in sub.dtype.names
    assert all(n == "uid" or n.startswith(("location/", "pick_stats/")) for n in sub.dtype.names)


@pytest.mark.parametrize(("repo", "path"), REAL_CS)
def test_agrees_with_cryosparc_tools(realdata, repo, path):
    dataset = pytest.importorskip("cryosparc.dataset", reason="cryosparc-tools not installed")
    f = realfile(realdata, repo, path)
    ours = read_cs(f)
    theirs = dataset.Dataset.load(str(f))
    assert list(ours.dtype.names) == theirs.fields()
    assert len(ours) == len(theirs)
    for name in ours.dtype.names:
        a, b = ours[name], np.asarray(theirs[name])
        if a.dtype.kind == "S":
            assert decode_strings(a, strip_gt=False).tolist() == [str(v) for v in b.tolist()]
        else:
            np.testing.assert_array_equal(a, b, err_msg=name)


def test_selected_fields_are_a_compact_copy(realdata):
    f = realfile(realdata, CRYODRGN, "tests/data/cryosparc_P12_J24_001_particles.cs")
    full = read_cs(f)
    sub = read_cs(f, fields=["alignments3D/shift", "blob/psize_A", "no/such_field"])
    assert sub.dtype.names == ("uid", "blob/psize_A", "alignments3D/shift")
    assert not isinstance(sub, np.memmap)
    np.testing.assert_array_equal(sub["alignments3D/shift"], full["alignments3D/shift"])
    np.testing.assert_array_equal(sub["uid"], full["uid"])


def test_real_blob_paths_decode_and_strip_gt(realdata):
    f = realfile(realdata, CRYODRGN, "tests/data/cryosparc_J2_particles_exported.cs")
    paths = decode_strings(read_cs(f, fields=["blob/path"])["blob/path"])
    assert all(p.startswith("J1/imported/") for p in paths)
    raw = decode_strings(read_cs(f)["blob/path"], strip_gt=False)
    assert all(p.startswith(">J1/") for p in raw)


# ---------------------------------------------------------------------------------------------
# bad files
# ---------------------------------------------------------------------------------------------


def _good(n=10):
    arr = np.zeros(n, dtype=[("uid", "<u8"), ("location/center_x_frac", "<f4")])
    arr["uid"] = np.arange(n) + 100
    return arr


def test_truncated_file(tmp_path):
    p = tmp_path / "trunc.cs"
    save_cs(p, _good(1000))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) - 100])
    with pytest.raises(CsFileError, match="trunc.cs.*truncated"):
        read_cs(p)
    with pytest.raises(CsFileError, match="trunc.cs"):
        read_cs(p, fields=["uid"])
    assert cs_field_names(p) == ("uid", "location/center_x_frac")  # the header is intact
    p.write_bytes(data[:40])  # cut inside the header
    with pytest.raises(ValueError, match="trunc.cs"):
        read_cs(p)
    with pytest.raises(ValueError, match="trunc.cs"):
        cs_field_names(p)


def test_garbage_and_empty_file(tmp_path):
    p = tmp_path / "garbage.cs"
    p.write_bytes(b"PK\x03\x04 not a dataset at all" * 10)
    with pytest.raises(ValueError, match=r"garbage.cs: not a CryoSPARC .cs file: unknown magic"):
        read_cs(p)
    with pytest.raises(ValueError, match=r"garbage.cs: not a CryoSPARC .cs file"):
        cs_field_names(p)
    e = tmp_path / "empty.cs"
    e.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.cs.*unknown magic"):
        read_cs(e)
    m = tmp_path / "badheader.cs"
    m.write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': nonsense}\n" + b"\0" * 64)
    with pytest.raises(ValueError, match="badheader.cs"):
        read_cs(m)


def test_object_dtype_refused(tmp_path):
    p = tmp_path / "pickled.cs"
    arr = np.zeros(3, dtype=[("uid", "<u8"), ("blob/path", "O")])
    arr["blob/path"] = ["a", "b", "c"]
    with open(p, "wb") as fh:
        np.save(fh, arr, allow_pickle=True)
    with pytest.raises(CsFileError, match="pickled.cs.*object"):
        read_cs(p)
    with pytest.raises(CsFileError, match="pickled.cs.*object"):
        read_cs(p, fields=["uid"])


def test_not_structured_or_without_uid(tmp_path):
    p = tmp_path / "plain.cs"
    save_cs(p, np.arange(5.0))
    with pytest.raises(ValueError, match="plain.cs.*structured"):
        read_cs(p)
    q = tmp_path / "nouid.cs"
    save_cs(q, np.zeros(2, dtype=[("blob/idx", "<u4")]))
    with pytest.raises(ValueError, match="nouid.cs.*uid"):
        read_cs(q)


def test_csdat_without_optional_package(tmp_path, monkeypatch):
    p = tmp_path / "new_format.cs"
    p.write_bytes(CSDAT_MAGIC + b"\x10\x00\x00\x00{}")
    monkeypatch.setitem(sys.modules, "cryosparc.dataset", None)  # import now raises ImportError
    real_import = builtins.__import__

    def no_cryosparc(name, *args, **kwargs):
        if name.startswith("cryosparc"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cryosparc)
    with pytest.raises(ValueError, match="new_format.cs.*pip install cryosparc-tools"):
        read_cs(p)


def test_csdat_roundtrip_with_cryosparc_tools(tmp_path):
    dataset = pytest.importorskip("cryosparc.dataset", reason="cryosparc-tools not installed")
    d = dataset.Dataset.allocate(
        4,
        [("location/micrograph_path", "O"), ("location/center_x_frac", "f4"),
         ("location/micrograph_shape", "u4", (2,))],
    )
    d["location/micrograph_path"] = [">J3/a.mrc", "J3/b.mrc", "J3/a.mrc", ""]
    d["location/center_x_frac"] = [0.1, 0.2, 0.3, 0.4]
    d["location/micrograph_shape"] = [[100, 200]] * 4
    p = tmp_path / "csdat.cs"
    d.save(str(p), format=dataset.CSDAT_FORMAT)
    assert p.read_bytes()[:6] == CSDAT_MAGIC
    arr = read_cs(p)
    np.testing.assert_array_equal(arr["uid"], np.asarray(d["uid"]))
    np.testing.assert_allclose(arr["location/center_x_frac"], [0.1, 0.2, 0.3, 0.4], rtol=1e-6)
    assert decode_strings(arr["location/micrograph_path"]).tolist() == [
        "J3/a.mrc", "J3/b.mrc", "J3/a.mrc", ""]
    sub = read_cs(p, fields=["location/center_x_frac"])
    assert sub.dtype.names == ("uid", "location/center_x_frac")
    assert cs_field_names(p) == arr.dtype.names
    bad = tmp_path / "bad_csdat.cs"
    bad.write_bytes(CSDAT_MAGIC + b"\xff\xff\x00\x00garbage")
    with pytest.raises(ValueError, match="bad_csdat.cs"):
        read_cs(bad)


# ---------------------------------------------------------------------------------------------
# strings
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [1, 7, 8, 13, 16, 90])
def test_factorize_bytes_matches_unique(width):
    rng = np.random.default_rng(width)
    pool = np.array([bytes(rng.integers(97, 123, rng.integers(0, width + 1)).astype(np.uint8))
                     for _ in range(50)], dtype=f"S{width}")
    arr = pool[rng.integers(0, len(pool), 2000)]
    first, inverse = factorize_bytes(arr)
    np.testing.assert_array_equal(arr[first][inverse], arr)
    assert len(first) == len(np.unique(arr))
    assert sorted(first.tolist()) == first.tolist()  # first appearance order


def test_decode_strings():
    arr = np.array([b">J1/a.mrc", b"J1/a.mrc", b"", "\u00e9.mrc".encode()], dtype="S12")
    assert decode_strings(arr).tolist() == ["J1/a.mrc", "J1/a.mrc", "", "\u00e9.mrc"]
    assert decode_strings(arr, strip_gt=False)[0] == ">J1/a.mrc"
    assert decode_strings(np.zeros(0, dtype="S4")).tolist() == []


# ---------------------------------------------------------------------------------------------
# passthrough join
# ---------------------------------------------------------------------------------------------


def _main_and_passthrough(n=500, seed=0):
    rng = np.random.default_rng(seed)
    uids = np.unique(rng.integers(0, 2**64 - 1, size=2 * n, dtype=np.uint64))  # some > 2**63
    uids = rng.permutation(uids)[:n]
    main = np.zeros(n, dtype=[("uid", "<u8"), ("alignments3D/shift", "<f4", (2,)),
                              ("location/center_x_frac", "<f4")])
    main["uid"] = uids
    main["alignments3D/shift"] = rng.normal(size=(n, 2))
    main["location/center_x_frac"] = -1.0  # main's own value must win over the passthrough's
    pt = np.zeros(n, dtype=[("uid", "<u8"), ("location/center_x_frac", "<f4"),
                            ("location/micrograph_path", "S20"), ("location/micrograph_shape", "<u4", (2,)),
                            ("location/micrograph_uid", "<u8")])
    pt["uid"] = uids
    pt["location/center_x_frac"] = rng.random(n)
    pt["location/micrograph_path"] = [f"mic_{i % 7}.mrc".encode() for i in range(n)]
    pt["location/micrograph_shape"] = np.stack([np.arange(n), np.arange(n) + 1], axis=1)
    pt["location/micrograph_uid"] = uids // np.uint64(3)
    return main, pt


def test_join_on_shuffled_rows():
    main, pt = _main_and_passthrough()
    shuffled = pt[np.random.default_rng(1).permutation(len(pt))]
    assert not np.array_equal(shuffled["uid"], main["uid"])  # a row-order join would be wrong
    cols = join_passthrough(main, shuffled)
    assert cols.unmatched == [0]
    np.testing.assert_array_equal(cols["uid"], main["uid"])
    np.testing.assert_array_equal(cols["location/micrograph_path"], pt["location/micrograph_path"])
    np.testing.assert_array_equal(cols["location/micrograph_shape"], pt["location/micrograph_shape"])
    np.testing.assert_array_equal(cols["location/micrograph_uid"], pt["location/micrograph_uid"])
    np.testing.assert_array_equal(cols["location/center_x_frac"], main["location/center_x_frac"])
    np.testing.assert_array_equal(cols["alignments3D/shift"], main["alignments3D/shift"])


def test_join_keeps_unmatched_rows_and_reports_them():
    main, pt = _main_and_passthrough(n=50)
    part = pt[np.random.default_rng(2).permutation(50)[:40]]
    extra = pt[:5].copy()
    extra["uid"] += np.uint64(1)  # rows main does not have: ignored
    cols = join_passthrough(main, np.concatenate([part, extra]))
    assert cols.unmatched == [10]
    present = cols.present["location/micrograph_path"]
    assert present.sum() == 40
    assert np.isin(main["uid"][present], part["uid"]).all()
    assert (cols["location/micrograph_path"][~present] == b"").all()
    assert (cols["location/micrograph_uid"][~present] == 0).all()
    by_uid = {u: p for u, p in zip(pt["uid"].tolist(), pt["location/micrograph_path"].tolist())}
    got = cols["location/micrograph_path"][present].tolist()
    assert got == [by_uid[u] for u in main["uid"][present].tolist()]


def test_join_with_empty_passthrough_and_float_fill():
    main, _ = _main_and_passthrough(n=5)
    empty = np.zeros(0, dtype=[("uid", "<u8"), ("ctf/df1_A", "<f4")])
    cols = join_passthrough(main, empty)
    assert cols.unmatched == [5]
    assert np.isnan(cols["ctf/df1_A"]).all()


def test_join_with_duplicate_uids_takes_first_occurrence():
    main, pt = _main_and_passthrough(n=20)
    dup = pt[:5].copy()
    dup["location/micrograph_path"] = b"duplicate"
    both = np.concatenate([pt, dup])  # duplicates come after the originals
    cols = join_passthrough(main, both[np.argsort(both["uid"], kind="stable")])
    assert cols.unmatched == [0]
    assert b"duplicate" not in set(cols["location/micrograph_path"].tolist())
    by_uid = {u: p for u, p in zip(pt["uid"].tolist(), pt["location/micrograph_path"].tolist())}
    assert cols["location/micrograph_path"].tolist() == [by_uid[u] for u in main["uid"].tolist()]


def test_join_exposes_row_mapping():
    main, pt = _main_and_passthrough(n=30)
    sh = pt[np.random.default_rng(3).permutation(30)][:25]
    cols = join_passthrough(main, sh)
    rows, found = cols.rows[0], cols.found[0]
    assert found.sum() == 25
    np.testing.assert_array_equal(sh["uid"][rows[found]], main["uid"][found])


def test_factorize_bytes_with_key_is_exact_even_when_key_lies():
    arr = np.array([b"a.mrc", b"b.mrc", b"a.mrc", b"c.mrc"] * 50, dtype="S8")
    good = np.array([7, 8, 7, 9] * 50, dtype=np.uint64)
    first, inverse = factorize_bytes(arr, key=good)
    np.testing.assert_array_equal(arr[first][inverse], arr)
    assert len(first) == 3
    bad = np.array([7, 7, 7, 9] * 50, dtype=np.uint64)  # a.mrc and b.mrc share a key
    first, inverse = factorize_bytes(arr, key=bad)
    np.testing.assert_array_equal(arr[first][inverse], arr)
    assert len(first) == 3
