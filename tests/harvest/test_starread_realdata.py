"""harvest.starread agrees with starfile.read on every real STAR file in ../shared/realdata."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import REALDATA, realfile

from harvest.starread import read_star, star_version


def _real_star_files() -> list:
    if not REALDATA.is_dir():
        return []
    return sorted(REALDATA.rglob("*.star"))


def _compare_block(name, ref, got):
    if isinstance(ref, dict):
        assert isinstance(got, dict), name
        assert got == ref, name
        return
    assert isinstance(got, pd.DataFrame), name
    assert list(got.columns) == list(ref.columns), name
    assert len(got) == len(ref), name
    for col in ref.columns:
        a, b = ref[col], got[col]
        # numeric columns stay numeric, with the same dtype as starfile's
        assert pd.api.types.is_numeric_dtype(a.dtype) == pd.api.types.is_numeric_dtype(b.dtype), (
            name, col, a.dtype, b.dtype)
        if pd.api.types.is_numeric_dtype(a.dtype):
            assert a.dtype == b.dtype, (name, col)
            np.testing.assert_array_equal(a.to_numpy(), b.to_numpy(), err_msg=f"{name}.{col}")
        else:
            assert a.astype(object).tolist() == b.astype(object).tolist(), (name, col)


@pytest.mark.parametrize(
    "path", _real_star_files(), ids=lambda p: str(p.relative_to(REALDATA)) if REALDATA.is_dir() else ""
)
def test_agrees_with_starfile(realdata, path):
    starfile = pytest.importorskip("starfile")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = starfile.read(path, always_dict=True)
    got = read_star(path)
    assert list(got) == list(ref)
    for name in ref:
        _compare_block(name, ref[name], got[name])


def test_there_are_real_files(realdata):
    assert len(_real_star_files()) >= 20


# known row counts (SOURCES.tsv) of the particle-bearing files
ROWS = [
    ("ml-struct-bio/cryodrgn", "tests/data/relion5.star", "particles", 17),
    ("ml-struct-bio/cryodrgn", "tests/data/relion31.6opticsgroups.star", "particles", 139),
    ("ml-struct-bio/cryodrgn", "tests/data/relion31.6opticsgroups.star", "optics", 6),
    ("ml-struct-bio/cryodrgn", "tests/data/sta_testing.star", "", 219),
    ("ml-struct-bio/cryodrgn", "tests/data/FinalRefinement-OriginalParticles-PfCRT.star",
     "images", 5),
    ("ml-struct-bio/cryodrgn", "tests/data/empiar_10076_7.star", "", 7),
    ("ml-struct-bio/cryodrgn", "tests/data/relion31.star", "particles", 5),
    ("jianlin-cheng/CryoSegNet", "finetune_dataset/sample.star", "", 629),
    ("jianlin-cheng/CryoSegNet", "finetune_dataset/sample2.star", "particles", 2),
    ("teamtomo/starfile", "tests/data/one_loop.star", "", 16),
    ("teamtomo/starfile", "tests/data/default_pipeline.star", "pipeline_processes", 31),
    ("tbepler/topaz", "test/test_data/EMPIAR-10025/rawdata/particles.star", "images", 1500),
    ("ComputationalCryoEM/ASPIRE-Python", "tests/saved_test_data/sample_particles_relion31.star",
     "particles", 17),
    ("bpowell122/tomodrgn", "testing/data/warptools_test_4-tomos_10-ptcls_box-32_angpix-12.star",
     "particles", 40),
]


@pytest.mark.parametrize("repo,path,block,rows", ROWS, ids=[r[1] for r in ROWS])
def test_known_row_counts(realdata, repo, path, block, rows):
    data = read_star(realfile(realdata, repo, path))
    assert len(data[block]) == rows


def test_special_real_cases(realdata):
    # column label followed by a comment, mixed tab/space separators (ASPIRE)
    p = realfile(realdata, "ComputationalCryoEM/ASPIRE-Python",
                 "tests/saved_test_data/sample_particles_relion31.star")
    optics = read_star(p)["optics"]
    assert list(optics["rlnMtfFileName"]) == ["mtf_k2_200kV.star"] * 2
    assert optics["rlnVoltage"].tolist() == [300.0, 200.0]
    # list values stay text; no '#N' indices (Python-written file)
    p = realfile(realdata, "ml-struct-bio/cryodrgn", "tests/data/relion31.6opticsgroups.star")
    optics = read_star(p)["optics"]
    assert optics["rlnOddZernike"].iloc[0].startswith("[")
    # integer micrograph names stay text when asked (parse_as_string)
    p = realfile(realdata, "ml-struct-bio/cryodrgn", "tests/data/empiar_10076_7.star")
    assert pd.api.types.is_integer_dtype(read_star(p)[""]["rlnMicrographName"].dtype)
    as_text = read_star(p, parse_as_string=["rlnMicrographName"])[""]["rlnMicrographName"]
    assert all(isinstance(v, str) for v in as_text)
    # '# version' lines
    pipe = realfile(realdata, "teamtomo/starfile", "tests/data/default_pipeline.star")
    assert star_version(pipe) == 30001
    assert star_version(realfile(realdata, "ml-struct-bio/cryodrgn", "tests/data/relion5.star")) \
        == 50001
    # the pipeline's column indices start at #0: labels are still taken by name
    procs = read_star(pipe)["pipeline_processes"]
    assert list(procs.columns) == ["rlnPipeLineProcessName", "rlnPipeLineProcessAlias",
                                   "rlnPipeLineProcessType", "rlnPipeLineProcessStatus"]
    # quoted empty values (RELION job.star writes "")
    job = realfile(realdata, "3dem/relion", "scripts/Schemes/proc/autopick/job.star")
    values = read_star(job)["joboptions_values"]
    assert "" in set(values["rlnJobOptionValue"])


def test_columns_subset_matches_full_read(realdata):
    p = realfile(realdata, "tbepler/topaz", "test/test_data/EMPIAR-10025/rawdata/particles.star")
    full = read_star(p)["images"]
    part = read_star(p, columns={"images": ["rlnCoordinateY", "rlnCoordinateX", "nope"]})["images"]
    assert list(part.columns) == ["rlnCoordinateX", "rlnCoordinateY"]  # file order
    pd.testing.assert_frame_equal(part, full[["rlnCoordinateX", "rlnCoordinateY"]])
