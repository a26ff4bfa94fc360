"""Every run of ``data/optimizer_dev.npz`` (recorded from MXNet 1.9.1's ``mx.optimizer.Adam``
through ``get_updater``) replayed through adamop, compared bit for bit after every step: weights,
means, variances and float32 master copies. Each run is replayed as Gluon calls the updater (one
list per step) and one index at a time, on every CPU backend, and once with torch tensors.
About 3 s.
"""
from __future__ import annotations

import pytest

from conftest import dev_runs
from optimizer_runs import replay

ARRAYS, RUNS = dev_runs()
NAMES = [r["name"] for r in RUNS]


def test_fixture_covers_the_issue():
    assert len(RUNS) == 8
    kinds = " ".join(NAMES)
    for word in ("factor", "poly", "cosine", "multifactor", "sparse_std", "uneven", "clip0",
                 "no_mp"):
        assert word in kinds


@pytest.mark.parametrize("per_index", [False, True], ids=["list-per-step", "per-index"])
@pytest.mark.parametrize("name", NAMES)
def test_dev_run_bit_identical(name, per_index, backend, monkeypatch):
    monkeypatch.setenv("ADAMOP_BACKEND", backend)
    run = RUNS[NAMES.index(name)]
    problems, *_ = replay(run, ARRAYS, per_index=per_index)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", NAMES)
def test_dev_run_bit_identical_torch(name):
    torch = pytest.importorskip("torch")
    run = RUNS[NAMES.index(name)]
    problems, *_ = replay(run, ARRAYS, convert=torch.from_numpy)
    assert not problems, "\n".join(problems)
