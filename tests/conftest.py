"""Shared fixtures.

``realdata``: the folder of real files written by other tools (``../shared/realdata`` beside the
checkout, or ``$CRYOGLEAN_REALDATA``); tests that need it skip when it is absent.
``facility``: one small generated facility per test session (read-only for tests: copy it to
``tmp_path`` before changing anything).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REALDATA = Path(os.environ.get("CRYOGLEAN_REALDATA", REPO.parent / "shared" / "realdata"))


@pytest.fixture(scope="session")
def realdata() -> Path:
    if not REALDATA.is_dir():
        pytest.skip(f"real files from other tools not found at {REALDATA} (../shared/realdata)")
    return REALDATA


def realfile(realdata: Path, repo: str, path: str) -> Path:
    """Path of one real file (``repo`` as in SOURCES.tsv, e.g. 'teamtomo/starfile')."""
    p = realdata / repo.replace("/", "__") / path
    if not p.exists():
        pytest.skip(f"real file {repo}:{path} not in {realdata}")
    return p


@pytest.fixture(scope="session")
def facility(tmp_path_factory):
    """A small generated facility (CryoSPARC + RELION 3.0/3.1/4/5) shared by the session."""
    from harvest.synth import make_facility

    root = tmp_path_factory.mktemp("facility")
    return make_facility(root / "facility", force=True)
