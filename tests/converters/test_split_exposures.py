"""Splits by exposure identity: one exposure re-processed in several projects never lands on
both sides (issue: train/validation leakage across projects)."""

from __future__ import annotations

import pandas as pd
import pytest

from converters.split import TRAIN, VAL, assign_splits, exposure_groups


def _facility(n_exposures=40, copies=(1, 2, 3)):
    """Micrographs 'project:key'; every exposure appears in 1-3 projects; a few CryoSPARC copies
    carry only the exposure uid (their key differs, e.g. renamed files)."""
    rows = []
    for e in range(n_exposures):
        for p in range(copies[e % len(copies)]):
            key = f"mic_{e:03d}" if not (p == 2 and e % 5 == 0) else f"renamed_{e:03d}"
            rows.append({"mic": f"{p + 1}:{key}", "project_id": p + 1, "key": key,
                         "exposure_uid": f"uid{e}" if p > 0 else None})
    return pd.DataFrame(rows)


def test_groups_join_shared_keys_and_uids_transitively():
    mics = pd.DataFrame({
        "mic": ["1:a", "2:a", "2:b", "3:c", "4:d"],
        "key": ["a", "a", "b", "c", "d"],
        "exposure_uid": [None, "u1", "u1", None, ""],
    })
    g = exposure_groups(mics)
    assert g["1:a"] == g["2:a"] == g["2:b"] == "1:a"  # key joins 1:a-2:a, uid joins 2:a-2:b
    assert g["3:c"] == "3:c" and g["4:d"] == "4:d"  # an empty uid joins nothing


@pytest.mark.parametrize("seed", range(5))
def test_no_exposure_on_both_sides(seed):
    mics = _facility()
    project_of = dict(zip(mics["mic"], mics["project_id"]))
    groups = exposure_groups(mics)
    naive = assign_splits(project_of, "micrograph", 0.25, seed)
    fixed = assign_splits(project_of, "micrograph", 0.25, seed, exposure_of=groups)
    by_group = pd.DataFrame({"g": [groups[m] for m in project_of],
                             "naive": [naive[m] for m in project_of],
                             "fixed": [fixed[m] for m in project_of]})
    assert (by_group.groupby("g")["fixed"].nunique() == 1).all()
    # the plain split leaks (the reason for this rule); with these 40 exposures it always does
    assert (by_group.groupby("g")["naive"].nunique() > 1).any()
    n_val = sum(1 for g, s in by_group.groupby("g")["fixed"].first().items() if s == VAL)
    assert n_val == round(0.25 * by_group["g"].nunique())


def test_without_shared_exposures_the_split_is_unchanged():
    mics = pd.DataFrame({"mic": [f"1:m{i}" for i in range(30)], "key": [f"m{i}" for i in range(30)],
                         "project_id": 1})
    project_of = dict(zip(mics["mic"], mics["project_id"]))
    assert assign_splits(project_of, "micrograph", 0.2, 3,
                         exposure_of=exposure_groups(mics)) == assign_splits(project_of,
                                                                             "micrograph", 0.2, 3)


def test_split_by_project_keeps_projects_sharing_exposures_together():
    mics = pd.DataFrame({
        "mic": ["1:a", "2:a", "3:b", "4:c", "5:d", "5:e"],
        "key": ["a", "a", "b", "c", "d", "e"],
        "project_id": [1, 2, 3, 4, 5, 5],
    })
    project_of = dict(zip(mics["mic"], mics["project_id"]))
    for seed in range(10):
        side = assign_splits(project_of, "project", 0.3, seed, exposure_of=exposure_groups(mics))
        assert side["1:a"] == side["2:a"]  # projects 1 and 2 re-processed the same exposure
        assert side["5:d"] == side["5:e"]
        assert {TRAIN, VAL} == set(side.values())


def test_split_by_project_refuses_when_all_projects_share_data():
    mics = pd.DataFrame({"mic": ["1:a", "2:a"], "key": ["a", "a"], "project_id": [1, 2]})
    project_of = dict(zip(mics["mic"], mics["project_id"]))
    with pytest.raises(ValueError, match="shares exposures"):
        assign_splits(project_of, "project", 0.5, 0, exposure_of=exposure_groups(mics))
