"""Every refusal of ``adamop.torch.Adam``, as data rows: the exception, a regex its message must
match, and (for a refused step or load) that nothing changed: weights, states, counts,
``num_update`` and the scheduler. About 3 s.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest

torch = pytest.importorskip("torch")

from adamop.lr_scheduler import FactorScheduler
from adamop.torch import Adam


def params(dtype=torch.float32) -> list:
    torch.manual_seed(0)
    return [torch.nn.Parameter(torch.randn(4, 3).to(dtype)),
            torch.nn.Parameter(torch.randn(3).to(dtype))]


class New(NamedTuple):
    id: str
    make: Callable[[], Any]   # builds (and so checks) an optimizer
    error: type
    match: str


NEW = [
    New("lr-negative", lambda: Adam(params(), lr=-1.0), ValueError, "invalid lr -1.0"),
    New("lr-str", lambda: Adam(params(), lr="0.1"), TypeError, "lr must be a real number"),
    New("lr-nan", lambda: Adam(params(), lr=float("nan")), ValueError, "lr must be finite"),
    New("lr-tensor", lambda: Adam(params(), lr=torch.tensor(0.1)), TypeError,
        "a tensor lr is not supported"),
    New("lr-none-without-scheduler", lambda: Adam(params(), lr=None), TypeError,
        "lr=None keeps an lr_scheduler's base_lr"),
    New("beta1-one", lambda: Adam(params(), betas=(1.0, 0.999)), ValueError,
        r"betas\[0\] 1.0; it must be in \[0, 1\)"),
    New("beta2-negative", lambda: Adam(params(), betas=(0.9, -0.1)), ValueError,
        r"betas\[1\] -0.1"),
    New("betas-one-value", lambda: Adam(params(), betas=(0.9,)), TypeError,
        r"betas must be a pair"),
    New("eps-negative", lambda: Adam(params(), eps=-1e-8), ValueError, "invalid eps"),
    New("weight-decay-negative", lambda: Adam(params(), weight_decay=-0.1), ValueError,
        "invalid weight_decay"),
    New("rescale-inf", lambda: Adam(params(), rescale_grad=float("inf")), ValueError,
        "rescale_grad must be finite"),
    New("clip-str", lambda: Adam(params(), clip_gradient="1"), TypeError,
        "clip_gradient must be a real number"),
    New("lazy-int", lambda: Adam(params(), lazy_update=1), TypeError,
        "lazy_update must be True or False"),
    New("multi-precision-str", lambda: Adam(params(), multi_precision="yes"), TypeError,
        "multi_precision must be True or False"),
    New("torch-scheduler", lambda: Adam(params(), lr_scheduler=lambda n: 0.1), TypeError,
        "a torch.optim.lr_scheduler is attached to the optimizer instead"),
    New("begin-negative", lambda: Adam(params(), begin_num_update=-1), ValueError,
        "begin_num_update must be >= 0"),
    New("begin-float", lambda: Adam(params(), begin_num_update=1.5), TypeError,
        "begin_num_update must be an int"),
    New("one-tensor", lambda: Adam(params()[0]), TypeError, "should be an iterable of Tensors"),
    New("no-params", lambda: Adam([]), ValueError, "empty parameter list"),
    New("int-param", lambda: Adam([torch.zeros(3, dtype=torch.int64)]), TypeError,
        "is torch.int64; the update runs on float16, bfloat16"),
    New("complex-param", lambda: Adam([torch.zeros(3, dtype=torch.complex64)]), TypeError,
        "is torch.complex64"),
    New("bfloat16-without-master", lambda: Adam(params(torch.bfloat16)), ValueError,
        r"bfloat16, which needs multi_precision=True: MXNet defines no bfloat16 arithmetic"),
    New("non-leaf", lambda: Adam([params()[0] * 2]), ValueError, "non-leaf Tensor"),
    New("param-twice-in-a-group", lambda: Adam([p := params()[0], p]), ValueError,
        r"param_groups\[0\] lists a parameter twice"),
    New("param-in-two-groups", lambda: Adam([{"params": [p := params()[0]]}, {"params": [p]}]),
        ValueError, "more than one parameter group"),
    New("group-lr-mult-str", lambda: Adam([{"params": params(), "lr_mult": "2"}]), TypeError,
        r"param_groups\[0\] lr_mult must be a real number"),
    New("group-wide-setting", lambda: Adam([{"params": params(), "multi_precision": True}]),
        ValueError, "multi_precision is a setting of the whole optimizer"),
    New("group-not-dict", lambda: Adam(params()).add_param_group(params()), TypeError,
        "a param group must be a dict"),
]


@pytest.mark.parametrize("row", NEW, ids=[r.id for r in NEW])
def test_bad_argument(row):
    with pytest.raises(row.error, match=row.match):
        row.make()


# ---- refused steps and loads leave everything as it was --------------------------------------
def trained() -> tuple[list, Adam]:
    ps = params()
    opt = Adam(ps, lr=0.01, lr_scheduler=FactorScheduler(step=1, factor=0.5, base_lr=0.01))
    for _ in range(2):
        for p in ps:
            p.grad = torch.ones_like(p)
        opt.step()
    return ps, opt


def snapshot(ps: list, opt: Adam) -> Any:
    return (copy.deepcopy([p.detach() for p in ps]), copy.deepcopy(opt.state_dict()),
            copy.deepcopy(vars(opt.lr_scheduler)))


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    ints = {2: torch.int16, 4: torch.int32, 8: torch.int64}
    return (a.dtype == b.dtype and a.shape == b.shape
            and torch.equal(a.view(ints[a.element_size()]), b.view(ints[b.element_size()])))


def assert_unchanged(before: Any, ps: list, opt: Adam) -> None:
    (weights, sd, sched) = before
    for w, p in zip(weights, ps):
        assert same_bits(w, p.detach())
    now = opt.state_dict()
    assert now["adamop"] == sd["adamop"] and vars(opt.lr_scheduler) == sched
    for i, st in sd["state"].items():
        assert now["state"][i]["step"] == st["step"]
        assert same_bits(now["state"][i]["exp_avg"], st["exp_avg"])


def _set_group(key: str, value: Any) -> Callable:
    def change(ps: list, opt: Adam) -> None:
        opt.param_groups[0][key] = value
    return change


def to_bfloat16(p: torch.nn.Parameter) -> None:
    """What ``module.to(torch.bfloat16)`` does to a parameter and its grad."""
    p.data = p.data.to(torch.bfloat16)
    p.grad.data = p.grad.data.to(torch.bfloat16)


class Step(NamedTuple):
    id: str
    change: Callable[[list, Adam], None]   # what makes the next step refused
    error: type
    match: str


STEPS = [
    Step("group-lr-negative", _set_group("lr", -0.5), ValueError,
         r"param_groups\[0\] lr -0.5"),
    Step("group-lr-str", _set_group("lr", "0.1"), TypeError, r"param_groups\[0\] lr must be"),
    Step("group-betas-deleted", lambda ps, o: o.param_groups[0].pop("betas"), ValueError,
         r"lacks betas"),
    Step("group-clip-nan", _set_group("clip_gradient", float("nan")), ValueError,
         "clip_gradient must be finite"),
    Step("state-step-str", lambda ps, o: o.state[ps[0]].update(step="2"), TypeError,
         "a state's step is '2'"),
    Step("state-shape", lambda ps, o: o.state[ps[0]].update(exp_avg=torch.zeros(3)),
         (TypeError, ValueError), r"shape"),
    Step("param-became-bfloat16", lambda ps, o: to_bfloat16(ps[1]), ValueError,
         r"param_groups\[0\]\['params'\]\[1\] is bfloat16"),
]


@pytest.mark.parametrize("row", STEPS, ids=[r.id for r in STEPS])
def test_refused_step_changes_nothing(row):
    ps, opt = trained()
    for p in ps:
        p.grad = torch.ones_like(p)
    row.change(ps, opt)
    before = snapshot(ps, opt)
    with pytest.raises(row.error, match=row.match):
        opt.step()
    assert_unchanged(before, ps, opt)


def _edit(path: tuple, value: Any) -> Callable[[dict], None]:
    def change(sd: dict) -> None:
        target = sd
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


class Load(NamedTuple):
    id: str
    change: Callable[[dict], Any]   # edits a good state dict
    error: type
    match: str
    replace: Any = None             # or what is loaded instead of it


LOADS = [
    Load("not-a-dict", lambda sd: None, TypeError, "expected a dict with 'state'", [1]),
    Load("group-count", lambda sd: sd["param_groups"].append({"params": []}), ValueError,
         "2 parameter groups, the optimizer 1"),
    Load("param-count", lambda sd: sd["param_groups"][0]["params"].pop(), ValueError,
         "has 1 parameters in the state dict, 2 here"),
    Load("unknown-id", lambda sd: sd["state"].update({7: sd["state"][0]}), ValueError,
         "parameter id 7, which none of its param_groups lists"),
    Load("step-negative", _edit(("state", 0, "step"), -1), ValueError, "step is -1"),
    Load("step-fraction", _edit(("state", 0, "step"), torch.tensor(1.5)), ValueError,
         "step is tensor"),
    Load("shape", _edit(("state", 1, "exp_avg"), torch.zeros(4)), ValueError,
         r"exp_avg has shape \(4,\) but the parameter \(3,\)"),
    Load("not-a-tensor", _edit(("state", 1, "exp_avg_sq"), [0.0] * 3), ValueError,
         "exp_avg_sq is list"),
    Load("master-where-none", _edit(("state", 1, "master_weight"), torch.zeros(3)), ValueError,
         "saved with a float32 master copy; build the optimizer with multi_precision=True"),
    Load("amsgrad", lambda sd: sd["state"][0].update(max_exp_avg_sq=torch.zeros(4, 3)),
         ValueError, "without amsgrad"),
    Load("amsgrad-group", _edit(("param_groups", 0, "amsgrad"), True), ValueError,
         "amsgrad=True, which MXNet's Adam does not have"),
    Load("group-eps", _edit(("param_groups", 0, "eps"), -1.0), ValueError, "invalid"),
    Load("num-update", _edit(("adamop", "num_update"), -3), ValueError,
         "num_update must be an int >= 0"),
    Load("scheduler-class", _edit(("adamop", "lr_scheduler", "class"), "PolyScheduler"),
         ValueError, "is a PolyScheduler, this optimizer's a FactorScheduler"),
    Load("scheduler-unknown", _edit(("adamop", "lr_scheduler", "class"), "os.system"),
         TypeError, "not an adamop.lr_scheduler class"),
    Load("scheduler-state", lambda sd: sd["adamop"]["lr_scheduler"]["state"].pop("base_lr"),
         ValueError, "lacks attribute"),
    Load("scheduler-missing", _edit(("adamop", "lr_scheduler"), None), ValueError,
         "saved without an lr_scheduler"),
]


@pytest.mark.parametrize("row", LOADS, ids=[r.id for r in LOADS])
def test_refused_load_changes_nothing(row):
    ps, opt = trained()
    sd = copy.deepcopy(opt.state_dict())
    row.change(sd)
    before = snapshot(ps, opt)
    with pytest.raises(row.error, match=row.match):
        opt.load_state_dict(sd if row.replace is None else row.replace)
    assert_unchanged(before, ps, opt)
