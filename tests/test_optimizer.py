"""The optimizer's contracts beyond the replays: states of each kind, pickled attributes, the
Updater's argument checks, nothing changed by a refused step, states moved to a new library
(MXNet's sync after ``set_states``), torch COO gradients, the single-index API and symbols.
Expected numbers come from the MXNet-recorded dev runs (``data/optimizer_dev.npz``). About 2 s.
"""
from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import adamop
from adamop import RowSparseArray, lr_scheduler, optimizer, sym
from adamop.bitwise import mismatch
from conftest import dev_runs
from optimizer_runs import build

Z, _RUNS = dev_runs()
RUNS = {r["name"]: r for r in _RUNS}
ADAM_KEYS = ["_all_index_update_counts", "_index_update_count", "aggregate_num",
             "allow_np_array", "begin_num_update", "beta1", "beta2", "clip_gradient", "epsilon",
             "idx2name", "lazy_update", "lr", "lr_mult", "lr_scheduler", "multi_precision",
             "num_update", "rescale_grad", "sym_info", "wd", "wd_mult"]   # MXNet 1.9.1's, live
SCHEDULERS = {
    "LRScheduler": lr_scheduler.LRScheduler(base_lr=0.1, warmup_steps=3),
    "FactorScheduler": lr_scheduler.FactorScheduler(step=2, factor=0.5),
    "MultiFactorScheduler": lr_scheduler.MultiFactorScheduler(step=[2, 5], factor=0.5),
    "PolyScheduler": lr_scheduler.PolyScheduler(max_update=9, pwr=3),
    "CosineScheduler": lr_scheduler.CosineScheduler(max_update=9, final_lr=0.001),
}


# ---- states --------------------------------------------------------------------------------------
def test_create_state_kinds():
    opt = optimizer.create("adam")
    w = np.ones((4, 2), np.float32)
    mean, var = opt.create_state(0, w)
    assert type(mean) is np.ndarray and mean.dtype == np.float32 and not mean.any()
    assert mean is not var
    rsp = RowSparseArray.from_dense(w, all_rows=True)
    mean, _ = opt.create_state(1, rsp)     # lazy: row_sparse zeros storing no rows, as MXNet's
    assert isinstance(mean, RowSparseArray) and mean.nnz == 0 and mean.shape == (4, 2)
    mean, _ = optimizer.create("adam", lazy_update=False).create_state(1, rsp)
    assert type(mean) is np.ndarray and mean.shape == (4, 2)
    master, (m32, _) = optimizer.create("adam", multi_precision=True) \
        .create_state_multi_precision(2, w.astype(np.float16))
    assert master.dtype == m32.dtype == np.float32 and np.array_equal(master, w)


def test_create_state_torch():
    torch = pytest.importorskip("torch")
    opt = optimizer.create("adam", multi_precision=True)
    w = torch.ones(3, 2, dtype=torch.float16)
    master, (mean, var) = opt.create_state_multi_precision(0, w)
    assert master.dtype == mean.dtype == torch.float32 and master.data_ptr() != w.data_ptr()
    with pytest.raises(TypeError, match="RowSparseArray.from_torch"):
        opt.create_state(1, w.float().to_sparse())


# ---- pickled attributes (the adamop.states seam) -------------------------------------------------
@pytest.mark.filterwarnings("ignore:learning rate from")   # the run overrides its scheduler's
def test_adam_state_has_mxnet_attributes_and_round_trips():
    opt = build(RUNS["factor_fp32"])
    opt.param_dict = {0: object()}
    state = opt.__getstate__()
    assert sorted(state) == ADAM_KEYS   # param_dict dropped, as MXNet's __getstate__ does
    again = optimizer.Adam.__new__(optimizer.Adam)
    again.__setstate__(state)
    assert again.param_dict == {} and again.__getstate__() == state
    assert again.lr_scheduler is opt.lr_scheduler
    assert again._index_update_count is state["_index_update_count"]
    restored = pickle.loads(pickle.dumps(opt))   # the attributes pickle as plain values
    assert restored.__getstate__()["lr_scheduler"].__getstate__() == \
        opt.lr_scheduler.__getstate__()
    assert optimizer.Adam.mxnet_class == "mxnet.optimizer.optimizer.Adam"


@pytest.mark.parametrize("name", SCHEDULERS)
def test_scheduler_state_round_trips(name):
    sched = copy.deepcopy(SCHEDULERS[name])
    cls = type(sched)
    assert cls.mxnet_class == f"mxnet.lr_scheduler.{name}"
    if name != "LRScheduler":
        [sched(n) for n in range(12)]   # move the state on
    again = cls.__new__(cls)
    again.__setstate__(sched.__getstate__())
    assert again.__getstate__() == sched.__getstate__() == vars(sched)
    if name != "LRScheduler":
        assert [again(n) for n in range(12, 20)] == [sched(n) for n in range(12, 20)]


@pytest.mark.parametrize("cls, state, match", [
    (optimizer.Adam, [], "expected a dict"),
    (optimizer.Adam, {"lr": 0.1}, "lacks attribute"),
    (lr_scheduler.FactorScheduler, {**vars(SCHEDULERS["FactorScheduler"]), "count": "3"},
     "attribute count"),
    (lr_scheduler.PolyScheduler, {"base_lr": 0.1}, "lacks attribute"),
], ids=["adam-not-dict", "adam-missing", "factor-bad-type", "poly-missing"])
def test_setstate_refuses_bad_states(cls, state, match):
    obj = cls.__new__(cls)
    with pytest.raises(ValueError, match=match):
        obj.__setstate__(state)


def test_setstate_leaves_object_on_error():
    opt = optimizer.create("adam", learning_rate=0.5)
    bad = {**opt.__getstate__(), "wd": "x"}
    with pytest.raises(ValueError, match="attribute wd"):
        opt.__setstate__(bad)
    assert opt.lr == 0.5 and opt.wd == 0.0


# ---- the Updater ---------------------------------------------------------------------------------
@pytest.mark.parametrize("call, error, match", [
    (lambda u, w, g: u([0, 1], [g], [w, w]), ValueError, "1 grads for 2 indices"),
    (lambda u, w, g: u([0], g, [w]), TypeError, "grad must be a list or tuple"),
    (lambda u, w, g: u([[0]], [g], [w]), TypeError, "index must be hashable"),
    (lambda u, w, g: u(0, g, w.tolist()), TypeError, "a weight must be"),
], ids=["lengths", "grad-not-list", "unhashable", "weight-not-array"])
def test_updater_argument_errors(call, error, match):
    u = optimizer.get_updater(optimizer.create("adam"))
    w, g = np.ones(3, np.float32), np.ones(3, np.float32)
    with pytest.raises(error, match=match):
        call(u, w, g)
    assert u.states == {} and u.optimizer.num_update == 0


def test_updater_needs_an_adamop_optimizer():
    with pytest.raises(TypeError, match="adamop optimizer"):
        optimizer.get_updater(object())


def test_refused_step_changes_nothing():
    sched = lr_scheduler.FactorScheduler(step=1, factor=0.5, base_lr=0.01)
    u = optimizer.get_updater(optimizer.create("adam", learning_rate=None, lr_scheduler=sched))
    ws = [np.ones(3, np.float32), np.ones(2, np.float32)]
    u([0, 1], [np.ones(3, np.float32), np.ones(2, np.float32)], ws)
    def progress():
        state = copy.deepcopy(u.optimizer.__getstate__())
        return state, state.pop("lr_scheduler").__getstate__()
    before = (progress(), [w.copy() for w in ws], copy.deepcopy(u.states))
    with pytest.raises(ValueError):   # the second grad has the wrong shape
        u([0, 1, 2], [np.ones(3, np.float32), np.ones(5, np.float32), np.ones(1, np.float32)],
          [*ws, np.ones(1, np.float32)])
    assert progress() == before[0]    # counts, num_update, the scheduler's state
    assert all(np.array_equal(a, b) for a, b in zip(ws, before[1]))
    assert sorted(u.states) == [0, 1]                  # no state kept for the refused index 2
    for i in (0, 1):
        assert all(np.array_equal(a, b) for a, b in zip(u.states[i], before[2][i]))


def test_undefined_bias_correction_is_refused():
    u = optimizer.get_updater(optimizer.create("adam", beta1=1.0))
    w = np.ones(2, np.float32)
    with pytest.raises(ValueError, match="bias correction"):
        u(0, np.ones(2, np.float32), w)
    assert u.optimizer.num_update == 0 and np.array_equal(w, np.ones(2, np.float32))


def _replay_steps(run, opt, updater, weights, steps, convert=lambda x: x):
    for k in steps:
        pos = run["schedule"][k]
        grads = [convert(Z[f"{run['name']}__s{k}__g{i}"].copy()) for i in pos]
        updater([run["params"][i]["index"] for i in pos], grads, [weights[i] for i in pos])


def _expect_step(run, k, weights, updater):
    for i, p in enumerate(run["params"]):
        state = updater.states[p["index"]]
        mean, var = state[1] if isinstance(state[1], tuple) else state
        for what, got in (("w", weights[i]), ("m", mean), ("v", var)):
            msg = mismatch(got, Z[f"{run['name']}__s{k}__{what}{i}"])
            assert msg is None, f"step {k} param {i} {what}: {msg}"


def test_states_follow_the_weights_to_torch():
    """After ``set_states`` MXNet moves each state to its weight's context on next use; here a
    run starts on NumPy and continues on torch tensors, and still matches MXNet at the end."""
    torch = pytest.importorskip("torch")
    run = RUNS["poly_fp16_mp"]
    opt = build(run)
    u = optimizer.get_updater(opt)
    weights = [Z[f"{run['name']}__w0_{i}"].copy() for i in range(len(run["params"]))]
    _replay_steps(run, opt, u, weights, range(30))
    weights = [torch.from_numpy(w.copy()) for w in weights]
    u.states_synced = dict.fromkeys(u.states, False)
    _replay_steps(run, opt, u, weights, range(30, 60), torch.from_numpy)
    master, (mean, var) = u.states[run["params"][0]["index"]]
    assert all(isinstance(x, torch.Tensor) for x in (master, mean, var))
    _expect_step(run, 59, weights, u)


@pytest.mark.parametrize("name", ["sparse_multifactor", "sparse_std"])
def test_torch_coo_grads(name):
    """A torch sparse COO gradient (``nn.Embedding(sparse=True)``) is a row_sparse grad."""
    torch = pytest.importorskip("torch")
    run = RUNS[name]
    opt = build(run)
    u = optimizer.get_updater(opt)
    weights = []
    for i, p in enumerate(run["params"]):
        w0 = torch.from_numpy(Z[f"{name}__w0_{i}"].copy())
        weights.append(RowSparseArray.from_dense(w0, all_rows=True)
                       if p["weight_stype"] == "row_sparse" else w0)
    for k, pos in enumerate(run["schedule"]):
        grads = []
        for i in pos:
            p, pre = run["params"][i], f"{name}__s{k}__"
            if p["grad_stype"] == "row_sparse":
                idx = torch.from_numpy(Z[f"{pre}gidx{i}"])[None, :]
                grads.append(torch.sparse_coo_tensor(idx, torch.from_numpy(Z[f"{pre}gdata{i}"]),
                                                     tuple(p["shape"]), check_invariants=True
                                                     ).coalesce())
            else:
                grads.append(torch.from_numpy(Z[f"{pre}g{i}"].copy()))
        u([run["params"][i]["index"] for i in pos], grads, [weights[i] for i in pos])
    _expect_step(run, len(run["schedule"]) - 1, weights, u)


def test_single_index_api():
    """``create_state_multi_precision`` + ``update_multi_precision``, as a Module would call
    them without an Updater."""
    run = RUNS["poly_fp16_mp"]
    opt = build(run)
    weights = [Z[f"poly_fp16_mp__w0_{i}"].copy() for i in range(2)]
    states = [opt.create_state_multi_precision(i, w) for i, w in enumerate(weights)]
    for k, pos in enumerate(run["schedule"]):
        for i in pos:
            opt.update_multi_precision(i, weights[i], Z[f"poly_fp16_mp__s{k}__g{i}"], states[i])
    u = optimizer.get_updater(opt)
    u.states = dict(enumerate(states))
    _expect_step(run, len(run["schedule"]) - 1, weights, u)


# ---- symbols, multipliers, learning rate ---------------------------------------------------------
def test_symbol_multipliers():
    w = sym.var("fc_weight", lr_mult=2.0, wd_mult=0.5)
    b = sym.var("fc_bias", attr={"__wd_mult__": "3"})
    graph = sym.Group([sym.adam_update(v, sym.var(n + "_grad"), sym.var(n + "_mean"),
                                       sym.var(n + "_var"), lr=0.1, name=n + "_adam")
                       for v, n in ((w, "fc_weight"), (b, "fc_bias"))])
    opt = optimizer.create("adam", sym=graph, param_idx2name={0: "fc_weight", 1: "fc_bias",
                                                              2: "fc_beta"})
    assert opt.lr_mult == {"fc_weight": 2.0}
    assert opt.wd_mult == {"fc_bias": 3.0, "fc_beta": 0.0, "fc_weight": 0.5}
    opt.set_wd_mult({1: 0.25})
    assert opt.wd_mult[1] == 0.25 and opt.wd_mult["fc_beta"] == 0.0
    attrs, args = opt.sym_info
    assert attrs["fc_weight"]["__lr_mult__"] == "2.0" and attrs["fc_weight_adam"] == {"lr": "0.1"}
    assert args == graph.list_arguments()


def test_learning_rate_property_and_setter():
    opt = optimizer.create("adam", learning_rate=0.02)
    assert opt.learning_rate == 0.02
    opt.set_learning_rate(0.5)
    assert opt.learning_rate == 0.5
    sched = lr_scheduler.FactorScheduler(step=1, factor=0.5, base_lr=1.0)
    opt = optimizer.create("adam", learning_rate=None, lr_scheduler=sched, begin_num_update=3)
    assert opt.learning_rate == 0.25   # the scheduler at num_update = 3


def test_lr_scheduler_is_reachable_from_the_package():
    assert adamop.lr_scheduler is lr_scheduler and adamop.optimizer.create is optimizer.create


def test_refused_grad_in_a_mixed_step_changes_nothing():
    """float16 weights with master copies and float32 weights in one call run as two batches;
    a bad grad for the second is refused before the first writes."""
    u = optimizer.get_updater(optimizer.create("adam", multi_precision=True))
    w32, w16 = np.ones(3, np.float32), np.ones(2, np.float16)
    with pytest.raises(ValueError, match="index 1: the grad has shape"):
        u([0, 1], [np.ones(3, np.float32), np.ones(4, np.float16)], [w32, w16])
    assert np.array_equal(w32, np.ones(3, np.float32)) and u.optimizer.num_update == 0
    assert u.states == {}
    u([0, 1, 0], [np.ones(3, np.float32), np.ones(2, np.float16), np.ones(3, np.float32)],
      [w32, w16, w32])   # three batches: 0 and 1, then 0 again
    assert u.optimizer._index_update_count == {0: 2, 1: 1}
