"""Resuming MXNet training runs from their checkpoint files, as MXNet itself resumed them.

Each dev run (tests/data/ckpt_dev) is a Gluon or Module training run that MXNet 1.9.1 saved
(``.params`` + ``.states``), then loaded into a fresh trainer/module and continued; the fixture
records every weight of the continuation. Here adamop loads the same two files into its Updater
and continues with the same gradients: every weight of every step must be MXNet's, bit for bit.
About 1 s.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import DATA

from adamop import RowSparseArray, nd, states

optimizer = pytest.importorskip("adamop.optimizer")
if not hasattr(optimizer, "Updater"):          # pragma: no cover  (until the optimizer lands)
    pytest.skip("adamop.optimizer has no Updater yet", allow_module_level=True)

DEV = DATA / "ckpt_dev"
with np.load(DEV / "expected.npz") as _z:
    MANIFEST = json.loads(str(_z["manifest"]))
    ARRAYS = {k: _z[k] for k in _z.files if k != "manifest"}


def same_bits(a, b) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def resume(run: dict):
    """The Updater and weights a resumed trainer (Gluon) or module has, from the two files."""
    params = nd.load(DEV / run["params_file"])
    weights = [params[key].copy() for key in run["param_file_keys"]]
    blob = (DEV / run["states_file"]).read_bytes()
    if run["api"] == "gluon":
        # Trainer.load_states: the optimizer, its counts and its scheduler come from the file
        updater = optimizer.get_updater(optimizer.create("adam"))
        updater.set_states(blob)
    else:
        # Module.init_optimizer, then load_optimizer_states: states only, counts start again
        opt = optimizer.create("adam", **run["optimizer_kwargs"],
                               param_idx2name=dict(enumerate(run["param_names"])))
        updater = optimizer.get_updater(opt)
        updater.set_states(blob)
    return updater, weights


def grads_of(run: dict, step: int) -> list:
    out = []
    for i, stype in enumerate(run["param_stypes"]):
        key = f"{run['name']}__step{step}__"
        if f"{key}gidx{i}" in ARRAYS:          # a row_sparse gradient, as MXNet had it
            dense = ARRAYS[f"{key}grad{i}"]
            out.append(RowSparseArray(ARRAYS[f"{key}gdata{i}"], ARRAYS[f"{key}gidx{i}"],
                                      dense.shape))
        else:
            out.append(ARRAYS[f"{key}grad{i}"])
    return out


@pytest.mark.parametrize("run", MANIFEST["runs"], ids=lambda r: r["name"])
def test_resume_matches_mxnet_every_step(run):
    updater, weights = resume(run)
    for i, w in enumerate(weights):
        assert same_bits(w, ARRAYS[f"{run['name']}__w0_{i}"])     # the saved weights
    if run["dump_optimizer"]:
        counts = updater.optimizer._index_update_count
        assert counts == {int(k): v for k, v in run["saved_counts"].items()}
        assert updater.optimizer.num_update == run["saved_num_update"]
    indices = list(range(len(weights)))
    for step in range(run["continue_steps"]):
        updater.optimizer.rescale_grad = run["rescale_grad"]     # what Trainer.step sets
        updater(indices, grads_of(run, step), weights)
        for i, w in enumerate(weights):
            want = ARRAYS[f"{run['name']}__step{step}__w{i}"]
            assert same_bits(w, want), f"step {step}, parameter {run['param_names'][i]}"


@pytest.mark.parametrize("run", [r for r in MANIFEST["runs"] if r["dump_optimizer"]],
                         ids=lambda r: r["name"])
def test_updater_states_round_trip_as_mxnet_wrote_them(run):
    """get_states(True) of a resumed Updater, before any step, is the file MXNet wrote."""
    updater, _ = resume(run)
    raw = (DEV / run["states_file"]).read_bytes()
    assert updater.get_states(dump_optimizer=True) == raw
    assert states.dumps(states.loads(raw)) == raw
