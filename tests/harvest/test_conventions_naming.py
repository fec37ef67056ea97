"""harvest.conventions' naming rules (stem, key, project prefix) and the callers that use them
instead of rules of their own."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from converters import denoise, importer
from converters import select as sel
from converters.formats import _common
from harvest.conventions import (
    MICROGRAPH_EXTENSIONS,
    PROCESSING_SUFFIXES,
    export_stems,
    first_stem_clash,
    micrograph_key,
    micrograph_stem,
    project_stem,
    strip_project_prefix,
)

UID = "014810031491354839884"  # CryoSPARC's 21-digit UID prefix


@pytest.mark.parametrize("name,key", [
    (f"J3/motioncorrected/{UID}_mic_0001_patch_aligned_doseweighted.mrc", "mic_0001"),
    ("MotionCorr/job002/Movies/mic_0001.mrc", "mic_0001"),
    (f"{UID}_mic_0001_patch_aligned.mrc", "mic_0001"),
    ("mic_0001_doseweighted.mrc", "mic_0001"),
    ("mic_0001_DW.mrc", "mic_0001"),
    ("mic_0001_patch_aligned_DW.MRC", "mic_0001"),  # stacked suffixes, any extension case
    (f">{UID}_mic_0001.mrc", "mic_0001"),  # CryoSPARC's '>' relative-path mark
    ("C:\\data\\mics\\mic_0001.tiff", "mic_0001"),
    (f"{UID}_mic_0001.mrc".encode(), "mic_0001"),  # .cs fields are bytes
    (Path("a/b/mic_0001.mrcs"), "mic_0001"),
    ("01481003149135483988_mic.mrc", "01481003149135483988_mic"),  # 20 digits: not a UID
    ("0148100314913548398840_mic.mrc", "0148100314913548398840_mic"),  # 22 digits: neither
    ("_DW.mrc", "_DW"),  # a suffix alone is a name, not a suffix
    ("mic.eer", "mic"),
    ("run.tomostar", "run"),  # Warp's tilt-series name matches its tomogram
    ("Tomograms/Unt_083.tomostar", "Unt_083"),
    (".tomostar", ".tomostar"),  # a suffix alone is a name
])
def test_micrograph_key(name, key):
    assert micrograph_key(name) == key


def test_suffixes_longest_first():
    assert PROCESSING_SUFFIXES[0] == "_patch_aligned_doseweighted"
    assert micrograph_key("x_patch_aligned_doseweighted.mrc") == "x"


@pytest.mark.parametrize("name,stem", [
    ("J3/motioncorrected/x_patch_aligned.mrc", "x_patch_aligned"),  # stems keep suffixes
    ("a.b.c", "a.b.c"),
    ("C:\\data\\m.tiff", "m"),
    ("d/m.JPEG", "m"),
    ("d/m.txt", "m.txt"),
    ("dir/", "dir"),
])
def test_micrograph_stem_and_mic_stem_agree(name, stem):
    assert micrograph_stem(name) == stem
    assert _common.mic_stem(name) == stem


def test_every_known_extension_is_stripped_once():
    for ext in MICROGRAPH_EXTENSIONS:
        assert micrograph_stem(f"d/mic{ext}") == "mic"
        assert micrograph_stem(f"d/mic{ext}{ext}") == f"mic{ext}"


def test_project_prefix_round_trip():
    assert project_stem("mic_1", 7) == "p7_mic_1"
    assert strip_project_prefix("p7_mic_1", 7) == "mic_1"
    assert strip_project_prefix("p7_mic_1", 8) == "p7_mic_1"
    assert strip_project_prefix("p7_", 7) == "p7_"
    assert strip_project_prefix("mic_1", 7) == "mic_1"


def test_export_stems_prefix_only_shared_keys_and_select_uses_it():
    keys, pids = ["m1", "m1", "m2", "m3"], [1, 2, 2, 1]
    assert export_stems(keys, pids).tolist() == ["p1_m1", "p2_m1", "m2", "m3"]
    mics = pd.DataFrame({"key": keys, "project_id": pids}, index=[10, 11, 12, 13])
    stems = sel.unique_stems(mics)
    assert stems.tolist() == ["p1_m1", "p2_m1", "m2", "m3"] and list(stems.index) == [10, 11, 12, 13]
    assert export_stems([], []).tolist() == []
    with pytest.raises(ValueError, match="keys but"):
        export_stems(["a"], [1, 2])


def test_importer_undoes_the_export_prefix():
    got = importer.match_micrographs(["p3_mic_1.png", "mic_2.mrc", "p4_mic_3.png", "x.mrc"],
                                     {"mic_1", "mic_2", "mic_3"}, project_id=3)
    assert got == {"p3_mic_1.png": "mic_1", "mic_2.mrc": "mic_2"}
    assert importer.match_micrographs(["p3_mic_1.png"], {"mic_1"}) == {}


def test_stem_clash_and_denoise_refuses_it(tmp_path):
    assert first_stem_clash(["a.mrc", "b.png", "a.png"]) == ("a.png", "a.mrc")
    assert first_stem_clash(["a.mrc", "b.png"]) is None
    for name in ("mic.mrc", "mic.png", "other.tif"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(ValueError, match=r"mic\.png and .*mic\.mrc would both be written as "
                                         r"denoised/mic\.\*"):
        denoise.denoise_directory(tmp_path, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()

