"""Differential test against live MXNet 1.9.1: random ``mx.optimizer.Adam`` training runs.

``tests/optimizer_configs.py`` draws the runs (every scheduler with random parameters and
warmup, the learning-rate override quirk, lr/wd multipliers by index, by name, from a symbol and
from ``param_dict``, ``begin_num_update``, uneven update orders with repeats, sparse grads and
weights, float16 with and without master copies, clipping, per-step ``rescale_grad``; 100-120
steps each). MXNet runs them all in one subprocess, through ``get_updater`` as Gluon does, and
records every weight and state after every step; adamop replays each run and must match at every
step, bit for bit, and end with MXNet's optimizer attributes, scheduler state, warnings and
stored row_sparse rows. ``ADAMOP_OPT_RUNS`` (default 16) and ``ADAMOP_OPT_SEED`` change the
batch. About 10 s, most of it the two MXNet subprocesses.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conftest import dev_runs
from mxnet_oracle import run_mxnet
from optimizer_configs import describe, mxnet_results
from optimizer_runs import replay

pytestmark = pytest.mark.mxnet   # needs the MXNet 1.9.1 side venv (tests/mxnet_oracle.py)

N_RUNS = int(os.environ.get("ADAMOP_OPT_RUNS", "16"))
SEED = int(os.environ.get("ADAMOP_OPT_SEED", "2027"))
HIDDEN = ("sym_info", "lr_scheduler")   # compared apart: by value, and attribute by attribute


@pytest.fixture(scope="module")
def oracle() -> tuple[list[dict], dict, dict]:
    """The runs, their inputs plus MXNet's results, and MXNet's report on each run."""
    return mxnet_results(N_RUNS, SEED)


def _describe(run: dict) -> str:
    return describe(run, SEED)


def _rows(updater, run: dict, weights: list) -> dict:
    """The stored rows of each row_sparse weight and state (what MXNet pickles)."""
    from adamop import RowSparseArray
    out = {}
    for p, weight in zip(run["params"], weights):
        state = updater.states[p["index"]]
        named = {"weight": weight}
        if isinstance(state[1], tuple):
            named["w32"], state = state[0], state[1]
        named["mean"], named["var"] = state
        out[str(p["index"])] = {n: np.asarray(a.indices).tolist() for n, a in named.items()
                                if isinstance(a, RowSparseArray)}
    return out


def _check(run: dict, z: dict, report: dict, convert=None) -> None:
    mx = report[run["name"]]
    assert mx["error"] is None, f"MXNet failed on {_describe(run)}:\n{mx['error']}"
    problems, updater, said, weights = replay(run, z, **({"convert": convert} if convert else {}))
    assert not problems, _describe(run) + "\n" + "\n".join(problems)
    assert said == mx["warnings"], _describe(run)
    state = updater.optimizer.__getstate__()
    assert sorted([*state, "param_dict"]) == mx["keys"]
    assert {k: repr(v) for k, v in state.items() if k not in HIDDEN} == mx["state"], \
        _describe(run)
    sched = state["lr_scheduler"]
    assert (None if sched is None else {k: repr(v) for k, v in sched.__getstate__().items()}
            ) == mx["scheduler"], _describe(run)
    assert json.loads(json.dumps(list(state["sym_info"]))) == mx["sym_info"]
    if convert is None:   # torch RowSparseArray rows compare the same way; once is enough
        assert _rows(updater, run, weights) == mx["rows"], _describe(run)


def test_runs_cover_the_features(oracle):
    runs = oracle[0]
    text = json.dumps(runs)
    for feature in ("FactorScheduler", "MultiFactorScheduler", "PolyScheduler", "CosineScheduler",
                    '"constant"', '"linear"', "begin_num_update", '"multi_precision": true',
                    '"multi_precision": false', '"row_sparse"', '"lazy_update": false',
                    '"clip_gradient": 0.0'):
        assert feature in text, feature
    assert any(r["sym"] for r in runs) and any(r["param_dict"] for r in runs)
    assert any(r["rescale_grad_per_step"] for r in runs)
    assert any(len(s) != len(set(s)) for r in runs for s in r["schedule"])   # repeats in a step
    assert all(len(r["schedule"]) >= 100 for r in runs)


@pytest.mark.parametrize("r", range(N_RUNS), ids=lambda r: f"r{r}")
def test_run_matches_mxnet_every_step(r, oracle):
    runs, z, report = oracle
    _check(runs[r], z, report)


@pytest.mark.parametrize("r", range(0, N_RUNS, 4), ids=lambda r: f"r{r}")
def test_run_matches_mxnet_with_torch_tensors(r, oracle):
    torch = pytest.importorskip("torch")
    runs, z, report = oracle
    _check(runs[r], z, report, convert=torch.from_numpy)


def test_dev_runs_end_with_mxnet_s_pickled_optimizer():
    """After each dev run, adamop's optimizer holds what MXNet pickled at the end of that run
    (``<run>__states``, read by MXNet itself): every attribute, the scheduler's state and the
    indices with states."""
    arrays, runs = dev_runs()
    _, pickled = run_mxnet("optimizer_states.py",
                           {k: v for k, v in arrays.items() if k.endswith("__states")})
    assert sorted(pickled) == sorted(r["name"] for r in runs)
    for run in runs:
        mx = pickled[run["name"]]
        problems, updater, _, _ = replay(run, arrays)
        assert not problems
        state = updater.optimizer.__getstate__()
        assert sorted([*state, "param_dict"]) == mx["keys"]
        assert {k: repr(v) for k, v in state.items() if k not in HIDDEN} == mx["state"], run["name"]
        sched = state["lr_scheduler"]
        assert (None if sched is None else {k: repr(v) for k, v in sched.__getstate__().items()}
                ) == mx["scheduler"], run["name"]
        assert sorted(updater.states) == mx["indices"]
