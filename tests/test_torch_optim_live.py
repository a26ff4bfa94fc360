"""Differential test against live MXNet 1.9.1: random ``mx.optimizer.Adam`` training runs replayed
through ``adamop.torch.Adam``.

The runs are ``tests/optimizer_configs.py``'s (every scheduler, the learning-rate override quirk,
multipliers by index, by name, from a symbol and from ``param_dict``, ``begin_num_update``,
uneven orders with repeats, sparse gradients, row_sparse weights, float16 with and without
master copies, clipping, per-step ``rescale_grad``), with a seed of their own, so these are runs
the other tests have not seen. MXNet runs them through ``get_updater``; each is replayed through
the torch optimizer built by ``Adam.from_mxnet`` (and every second one by torch's constructor with
a group per parameter), compared at every step, bit for bit, with MXNet's warnings.
``ADAMOP_TORCH_OPT_RUNS`` (default 8) and ``ADAMOP_TORCH_OPT_SEED`` change the batch. About 15 s.
"""
from __future__ import annotations

import os

import pytest

pytest.importorskip("torch")

from optimizer_configs import describe, mxnet_results
from torch_runs import replay

pytestmark = pytest.mark.mxnet   # needs the MXNet 1.9.1 side venv (tests/mxnet_oracle.py)

N_RUNS = int(os.environ.get("ADAMOP_TORCH_OPT_RUNS", "8"))
SEED = int(os.environ.get("ADAMOP_TORCH_OPT_SEED", "4049"))


@pytest.fixture(scope="module")
def oracle() -> tuple[list[dict], dict, dict]:
    """The runs, their inputs plus MXNet's results, and MXNet's report on each run."""
    return mxnet_results(N_RUNS, SEED)


def _describe(run: dict) -> str:
    return describe(run, SEED)


@pytest.mark.parametrize("r", range(N_RUNS), ids=lambda r: f"r{r}")
def test_run_matches_mxnet_every_step(r, oracle):
    runs, z, report = oracle
    run = runs[r]
    assert report[run["name"]]["error"] is None, report[run["name"]]["error"]
    problems, _, _, said = replay(run, z, "from_mxnet")
    assert not problems, _describe(run) + "\n" + "\n".join(problems)
    assert said == report[run["name"]]["warnings"], _describe(run)


@pytest.mark.parametrize("r", range(0, N_RUNS, 2), ids=lambda r: f"r{r}")
def test_run_matches_mxnet_built_with_torch_arguments(r, oracle):
    runs, z, _ = oracle
    problems, *_ = replay(runs[r], z, "direct")
    assert not problems, _describe(runs[r]) + "\n" + "\n".join(problems)
