"""The hostile-facility corpus (tests/harvest/hostile_corpus.py) through ``cryoglean crawl``:
every fault gives exactly its problem rows, the rest is harvested in full, nothing hangs,
crashes or leaves the crawl root. ``CRYOGLEAN_CORPUS_REPORT=PATH`` writes the totals and the
outcome of each fault there (JSON) for benchmarks/results/reliability.md."""

from __future__ import annotations

import os

import pytest
from hostile_corpus import FAULTS, report, run_corpus, write_report

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    work = tmp_path_factory.mktemp("hostile")
    outcomes, totals = run_corpus(FAULTS, work, timeout=300.0)
    text = report(outcomes, totals)
    print("\n" + text)
    path = os.environ.get("CRYOGLEAN_CORPUS_REPORT")
    if path:
        write_report(path, outcomes, totals)
    return {o.fault: o for o in outcomes}, totals, text


def test_corpus_totals(corpus):
    _, totals, text = corpus
    assert totals["inputs"] == len(FAULTS) >= 25
    assert (totals["silent"], totals["crash"], totals["hang"], totals["wrong"]) == (0, 0, 0, 0), text
    assert totals["clean"] == totals["inputs"]


@pytest.mark.parametrize("name", [f.name for f in FAULTS])
def test_fault(corpus, name):
    outcome = corpus[0][name]
    assert outcome.status == "clean", "\n".join(outcome.details)
