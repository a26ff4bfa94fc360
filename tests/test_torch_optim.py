"""``adamop.torch.Adam`` as a torch optimizer: MXNet's recorded runs replayed through it, and
torch's conventions (param groups, ``zero_grad``, closures, ``state_dict``, hooks, torch's lr
schedulers, pickling) in the style of PyTorch's own optimizer tests. Errors are in
``test_torch_optim_errors.py``, MXNet checkpoints in ``test_torch_optim_mxnet.py``, the live
MXNet runs in ``test_torch_optim_live.py``. About 6 s.
"""
from __future__ import annotations

import copy
import doctest
import io
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import dev_runs
from torch_runs import replay

import adamop.torch
from adamop.lr_scheduler import FactorScheduler, PolyScheduler
from adamop.torch import Adam

ARRAYS, RUNS = dev_runs()
NAMES = [r["name"] for r in RUNS]


# ---- MXNet's recorded runs -----------------------------------------------------------------
@pytest.mark.parametrize("how", ["from_mxnet", "direct"])
@pytest.mark.parametrize("name", NAMES)
def test_dev_run_bit_identical(name, how, backend, monkeypatch):
    """Every weight, mean, var and master copy after every step is MXNet's."""
    monkeypatch.setenv("ADAMOP_BACKEND", backend)
    problems, _, _, said = replay(RUNS[NAMES.index(name)], ARRAYS, how)
    assert not problems, "\n".join(problems)
    if "no_mp" in name:   # MXNet's warning for float16 without master copies
        assert any("multi_precision=True" in s for s in said)


def test_docstring_example():
    failures, tried = doctest.testmod(adamop.torch.adam, raise_on_error=False)
    assert tried and not failures


# ---- helpers -------------------------------------------------------------------------------
def bits(t: torch.Tensor) -> np.ndarray:
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy()
    return t.numpy().view(f"u{t.element_size()}")


def assert_same(a, b, what=""):
    assert a.dtype == b.dtype and a.shape == b.shape, what
    assert np.array_equal(bits(a), bits(b)), what


def model(seed=0, dtype=torch.float32, sparse=False):
    torch.manual_seed(seed)
    m = torch.nn.ModuleDict({"emb": torch.nn.Embedding(10, 4, sparse=sparse),
                             "fc": torch.nn.Linear(4, 3)}).to(dtype)
    return m


def loss_of(m, step):
    g = torch.Generator().manual_seed(step)
    idx = torch.randint(0, 10, (6,), generator=g)
    y = torch.randn(6, 3, generator=g).to(m["fc"].weight.dtype)
    return ((m["fc"](m["emb"](idx)) - y) ** 2).mean()


def train(m, opt, steps, sched=None):
    for k in steps:
        opt.zero_grad()
        loss_of(m, k).backward()
        opt.step()
        if sched is not None:
            sched.step()


def same_model(a, b):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert_same(p, q, name)


# ---- torch conventions ---------------------------------------------------------------------
KINDS = {  # model dtype, sparse embedding grads, optimizer arguments
    "float32": (torch.float32, False, {}),
    "float64 clip wd": (torch.float64, False, {"clip_gradient": 0.1, "weight_decay": 1e-2}),
    "sparse lazy": (torch.float32, True, {"weight_decay": 1e-2}),
    "sparse standard": (torch.float32, True, {"lazy_update": False}),
    "float16 master": (torch.float16, True, {"multi_precision": True}),
    "bfloat16 master": (torch.bfloat16, False, {"multi_precision": True}),
    "scheduler": (torch.float32, False, {"lr_scheduler": FactorScheduler(step=2, factor=0.7,
                                                                         base_lr=0.01)}),
}


def make(kind, seed=0):
    dtype, sparse, kw = KINDS[kind]
    m = model(seed, dtype, sparse)
    kw = copy.deepcopy(kw)
    return m, Adam(m.parameters(), lr=0.01, **kw)


@pytest.mark.parametrize("kind", list(KINDS))
def test_state_dict_round_trip_resumes_bit_for_bit(kind, tmp_path):
    """Saved after 3 steps (through torch.save, weights only), loaded into a fresh optimizer on
    a fresh model: 3 more steps give the uninterrupted run's bits, and the loaded state is the
    saved one (float32 master copies and moments of half parameters stay float32)."""
    m1, o1 = make(kind)
    train(m1, o1, range(3))
    path = tmp_path / "opt.pt"
    torch.save(o1.state_dict(), path)
    weights = copy.deepcopy(m1.state_dict())
    train(m1, o1, range(3, 6))

    m2, o2 = make(kind, seed=1)
    m2.load_state_dict(weights)
    o2.load_state_dict(torch.load(path, weights_only=True))
    saved = torch.load(path, weights_only=True)
    for i, p in enumerate(m2.parameters()):
        for key, value in saved["state"][i].items():
            if key == "step":
                assert o2.state[p][key] == value
            else:
                assert_same(o2.state[p][key], value, key)
    assert o2.num_update == 3
    train(m2, o2, range(3, 6))
    same_model(m1, m2)
    assert o2.state_dict()["adamop"] == o1.state_dict()["adamop"]


def test_state_dict_layout():
    m, opt = make("float16 master")
    train(m, opt, range(2))
    sd = opt.state_dict()
    assert sorted(sd) == ["adamop", "param_groups", "state"]
    assert sorted(sd["state"][0]) == ["exp_avg", "exp_avg_sq", "master_weight", "step"]
    assert sd["state"][0]["step"] == 2 and sd["state"][0]["exp_avg"].dtype == torch.float32
    group = sd["param_groups"][0]
    assert {k: group[k] for k in ("lr", "betas", "eps", "weight_decay", "rescale_grad",
                                  "clip_gradient", "lazy_update", "lr_mult", "wd_mult")} == {
        "lr": 0.01, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
        "rescale_grad": 1.0, "clip_gradient": None, "lazy_update": True, "lr_mult": 1.0,
        "wd_mult": 1.0}
    assert sd["adamop"] == {"num_update": 2, "lr_scheduler": None}


def test_no_stale_state_after_load_state_dict():
    """States the loaded dict lacks are made again at the next update (zeros, the weight's
    master copy); the loaded tensors are the ones updated afterwards."""
    m, opt = make("float32")
    sd0 = copy.deepcopy(opt.state_dict())     # before any update: counts 0, zeros
    train(m, opt, range(3))
    sd = copy.deepcopy(opt.state_dict())
    del sd["state"][0]
    opt.load_state_dict(sd)
    emb = m["emb"].weight
    assert emb not in opt.state
    train(m, opt, range(3, 4))
    assert opt.state[emb]["step"] == 1
    loaded = opt.state[m["fc"].weight]["exp_avg"]
    before = loaded.clone()
    train(m, opt, range(4, 5))
    assert opt.state[m["fc"].weight]["exp_avg"] is loaded and not torch.equal(loaded, before)
    opt.load_state_dict(sd0)
    assert all(s["step"] == 0 for s in opt.state.values()) and opt.num_update == 0


def test_torch_optim_adam_state_dict_loads():
    """A torch.optim.Adam state dict (float step tensors, its group keys) loads; the MXNet keys
    keep this optimizer's values."""
    m = model()
    t = torch.optim.Adam(m.parameters(), lr=0.02)
    train(m, t, range(2))
    opt = Adam(m.parameters(), lr=0.01, rescale_grad=0.5)
    opt.load_state_dict(t.state_dict())
    assert [s["step"] for s in opt.state.values()] == [2, 2, 2]
    assert opt.param_groups[0]["lr"] == 0.02 and opt.param_groups[0]["rescale_grad"] == 0.5
    assert opt.num_update == 2


def test_param_groups_and_add_param_group():
    """Each group's hyperparameters are its own; lr_mult multiplies lr exactly as MXNet does
    (lr * mult, then the correction), so a group at lr 0.005 with lr_mult 2 moves as lr 0.01."""
    a, b = model(), model()
    oa = Adam([{"params": a["emb"].parameters(), "lr": 0.005, "lr_mult": 2.0},
               {"params": a["fc"].parameters(), "betas": (0.8, 0.99), "eps": 1e-3}], lr=0.01)
    ob = Adam([{"params": b["emb"].parameters()}], lr=0.01)
    ob.add_param_group({"params": b["fc"].parameters(), "betas": (0.8, 0.99), "eps": 1e-3})
    train(a, oa, range(4))
    train(b, ob, range(4))
    same_model(a, b)
    assert [len(g["params"]) for g in ob.param_groups] == [1, 2]


def test_parameters_without_grad_are_skipped():
    m, opt = make("float32")
    train(m, opt, range(2))
    frozen = m["fc"].bias
    before, count = frozen.detach().clone(), opt.state[frozen]["step"]
    opt.zero_grad()
    loss_of(m, 9).backward()
    frozen.grad = None
    opt.step()
    assert_same(frozen, before)
    assert opt.state[frozen]["step"] == count and opt.state[m["fc"].weight]["step"] == count + 1
    assert opt.num_update == count + 1


def test_zero_grad_and_closure():
    a, b = model(), model()
    oa, ob = Adam(a.parameters(), lr=0.01), Adam(b.parameters(), lr=0.01)
    calls = []

    def closure():
        calls.append(1)
        ob.zero_grad()
        loss = loss_of(b, 0)
        loss.backward()
        return loss

    oa.zero_grad()
    loss_of(a, 0).backward()
    oa.step()
    loss = ob.step(closure)
    assert calls == [1] and isinstance(loss, torch.Tensor)
    same_model(a, b)
    ob.zero_grad()
    assert all(p.grad is None for p in b.parameters())
    ob.zero_grad(set_to_none=False)


def test_hooks():
    m, opt = make("float32")
    seen = []
    opt.register_step_pre_hook(lambda o, args, kwargs: seen.append("pre"))
    opt.register_step_post_hook(lambda o, args, kwargs: seen.append("post"))
    opt.register_state_dict_pre_hook(lambda o: seen.append("sd"))
    opt.register_load_state_dict_post_hook(lambda o: seen.append("load"))
    train(m, opt, range(1))
    opt.load_state_dict(opt.state_dict())
    assert seen == ["pre", "post", "sd", "load"]


def test_torch_lr_scheduler_edits_group_lr():
    """torch's StepLR on this optimizer takes the same lr sequence as MXNet's FactorScheduler
    (both multiply the rate in place, in double): the runs are bit-identical."""
    a, b = model(), model()
    oa = Adam(a.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.StepLR(oa, step_size=2, gamma=0.7)
    ob = Adam(b.parameters(), lr=0.01,
              lr_scheduler=FactorScheduler(step=2, factor=0.7, base_lr=0.01, stop_factor_lr=0))
    train(a, oa, range(7), sched)
    train(b, ob, range(7))
    same_model(a, b)
    assert oa.param_groups[0]["lr"] == ob.lr_scheduler.base_lr


def test_mxnet_scheduler_overrides_base_lr_as_mxnet():
    with pytest.warns(UserWarning, match="overwritten by ``learning_rate``"):
        opt = Adam(model().parameters(), lr=0.02,
                   lr_scheduler=PolyScheduler(max_update=10, base_lr=0.01))
    assert opt.lr_scheduler.base_lr == 0.02 and opt.lr_scheduler.base_lr_orig == 0.01
    kept = Adam(model().parameters(), lr=None,
                lr_scheduler=PolyScheduler(max_update=10, base_lr=0.01))
    assert kept.lr_scheduler.base_lr == 0.01 and kept.learning_rate == 0.01


def test_mixed_kinds_in_one_group():
    """float32, float64, float16 with master copies and a sparse grad in one group: each
    parameter moves as it does alone."""
    torch.manual_seed(0)
    shapes_dtypes = [((5, 3), torch.float32), ((4,), torch.float64), ((3, 2), torch.float16),
                     ((6, 2), torch.float32)]
    ps = [torch.nn.Parameter(torch.randn(s).to(d)) for s, d in shapes_dtypes]
    alone = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    opt = Adam(ps, lr=0.01, weight_decay=1e-3, multi_precision=True)
    opts = [Adam([p], lr=0.01, weight_decay=1e-3, multi_precision=True) for p in alone]
    for k in range(3):
        g = torch.Generator().manual_seed(k)
        grads = [torch.randn(p.shape, generator=g).to(p.dtype) for p in ps]
        grads[3] = torch.sparse_coo_tensor(torch.tensor([[1, 4, 1]]), torch.randn(3, 2,
                                                                                   generator=g),
                                           (6, 2), check_invariants=True)
        for p, q, gr in zip(ps, alone, grads):
            p.grad, q.grad = gr.clone(), gr.clone()
        opt.step()
        for o in opts:
            o.step()
    for p, q in zip(ps, alone):
        assert_same(p, q)


def test_sparse_grads_coalesced_or_not_and_empty():
    """An uncoalesced COO gradient (repeated rows, as nn.Embedding(sparse=True) makes them) is
    its coalesced sum; an empty one counts the update and changes nothing (lazy)."""
    torch.manual_seed(0)
    w0 = torch.randn(8, 3)
    idx = torch.tensor([[2, 5, 2]])
    vals = torch.randn(3, 3)
    loose = torch.sparse_coo_tensor(idx, vals, (8, 3), check_invariants=True)
    results = []
    for grad in (loose, loose.coalesce()):
        p = torch.nn.Parameter(w0.clone())
        opt = Adam([p], lr=0.1, weight_decay=0.1)
        p.grad = grad
        opt.step()
        results.append(p.detach().clone())
        assert_same(p[[0, 1, 3, 4, 6, 7]], w0[[0, 1, 3, 4, 6, 7]])   # lazy: other rows stay
    assert_same(results[0], results[1])
    p = torch.nn.Parameter(w0.clone())
    opt = Adam([p], lr=0.1, weight_decay=0.1)
    p.grad = torch.sparse_coo_tensor(torch.zeros((1, 0), dtype=torch.long), torch.zeros(0, 3),
                                     (8, 3), check_invariants=True)
    opt.step()
    assert_same(p, w0)
    assert opt.state[p]["step"] == 1


def test_bfloat16_master_copy_is_the_float32_run_rounded_to_nearest_even():
    torch.manual_seed(0)
    w32 = torch.randn(64) * 3
    p16 = torch.nn.Parameter(w32.to(torch.bfloat16))
    p32 = torch.nn.Parameter(p16.detach().float())
    o16 = Adam([p16], lr=0.05, multi_precision=True)
    o32 = Adam([p32], lr=0.05)
    for k in range(5):
        g = torch.randn(64, generator=torch.Generator().manual_seed(k)).to(torch.bfloat16)
        p16.grad, p32.grad = g, g.float()
        o16.step()
        o32.step()
        assert_same(o16.state[p16]["master_weight"], p32)
        assert_same(p16, rne_bfloat16(p32.detach()))


def rne_bfloat16(x: torch.Tensor) -> torch.Tensor:
    """float32 -> bfloat16 rounded to nearest even, on the bits (NaN stays NaN)."""
    u = x.numpy().view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    rounded = np.where(np.isnan(x.numpy()), np.uint16(0x7FC0), rounded)
    return torch.from_numpy(rounded.view(np.int16)).view(torch.bfloat16)


def test_torch_casts_float32_to_bfloat16_to_nearest_even():
    """What the master copy's cast relies on, over ties, subnormals, overflow and NaN."""
    rng = np.random.default_rng(0)
    u = np.concatenate([rng.integers(0, 2**32, 200_000, dtype=np.uint64),
                        (rng.integers(0, 2**16, 5000, dtype=np.uint64) << 16) | 0x8000,  # ties
                        np.array([0x7F7FFFFF, 0xFF7FFFFF, 0x7F7F8000, 0x00000001, 0x80008000,
                                  0x7FC00001, 0xFF800000], np.uint64)]).astype(np.uint32)
    x = torch.from_numpy(u.view(np.float32))
    got, want = bits(x.to(torch.bfloat16)), bits(rne_bfloat16(x))
    nan = np.isnan(x.numpy())
    assert np.array_equal(got[~nan], want[~nan])
    assert np.isnan(x.to(torch.bfloat16)[torch.from_numpy(nan)].float().numpy()).all()


def test_state_made_at_construction_follows_the_weights():
    """States exist from construction (so checkpoint loaders find them), but a master copy is
    the weight at the first update, as MXNet makes it: loading weights after building the
    optimizer is fine."""
    m, opt = make("float16 master")
    assert len(opt.state) == 3 and all(s["step"] == 0 for s in opt.state.values())
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(0.5)
    train(m, opt, range(1))
    m2 = model(0, torch.float16, True)
    with torch.no_grad():
        for p in m2.parameters():
            p.mul_(0.5)
    opt2 = Adam(m2.parameters(), lr=0.01, multi_precision=True)
    train(m2, opt2, range(1))
    same_model(m, m2)


def test_pickle_and_deepcopy():
    m, opt = make("scheduler")
    train(m, opt, range(2))
    for clone in (copy.deepcopy((m, opt)), pickle.loads(pickle.dumps((m, opt)))):
        m2, o2 = clone
        assert o2.num_update == 2 and type(o2.lr_scheduler) is FactorScheduler
        train(m2, o2, range(2, 4))
    train(m, opt, range(2, 4))
    same_model(m, m2)


def test_state_dict_is_torch_save_loadable_weights_only():
    m, opt = make("scheduler")
    train(m, opt, range(3))
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    sd = torch.load(buf, weights_only=True)
    assert sd["adamop"]["lr_scheduler"]["class"] == "FactorScheduler"
    assert sd["adamop"]["lr_scheduler"]["state"]["base_lr"] == opt.lr_scheduler.base_lr
