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

import json
import os

import pytest

pytest.importorskip("torch")

from mxnet_oracle import run_mxnet
from optimizer_configs import make_runs
from torch_runs import replay

pytestmark = pytest.mark.mxnet   # needs the MXNet 1.9.1 side venv (tests/mxnet_oracle.py)

N_RUNS = int(os.environ.get("ADAMOP_TORCH_OPT_RUNS", "8"))
SEED = int(os.environ.get("ADAMOP_TORCH_OPT_SEED", "4049"))


@pytest.fixture(scope="module")
def oracle() -> tuple[list[dict], dict, dict]:
    runs, arrays = make_runs(N_RUNS, SEED)
    out, report = run_mxnet("optimizer_runs.py", arrays, {"runs": runs})
    return runs, {**arrays, **out}, report


def _describe(run: dict) -> str:
    shown = {k: v for k, v in run.items() if k not in ("schedule", "rescale_grad_per_step")}
    return f"seed {SEED}, run {json.dumps(shown)}"


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
