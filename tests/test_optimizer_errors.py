"""Every constructor and scheduler error, as data rows: what adamop raises, and what MXNet 1.9.1
does with the same call (checked live). Where MXNet raises, adamop raises an exception of the
same family (an ``AssertionError`` where MXNet asserts, a ``UserWarning`` where it raises one)
whose message contains MXNet's; where MXNet accepts a value only to fail at the first update (or
never), adamop refuses it up front: those rows say so. Under 1 s, plus about 3 s for MXNet.
"""
from __future__ import annotations

import re
from typing import Any, NamedTuple

import numpy as np
import pytest

from adamop import lr_scheduler, optimizer
from adamop.optimizer._checks import AssertionTypeError, AssertionValueError, UserWarningError
from mxnet_oracle import run_mxnet


class Row(NamedTuple):
    id: str
    target: str                   # a scheduler class, "Adam" or "create"
    kwargs: dict
    error: type                   # what adamop raises
    match: str                    # a regex adamop's message must match
    mxnet: tuple | None           # (type name, message) MXNet raises; None: MXNet accepts
    call: tuple | None = None     # (method, args) called on the object built


_FACTOR = {"class": "FactorScheduler", "kwargs": {"step": 2}}
ROWS = [
    # ---- schedulers: MXNet's own checks ------------------------------------------------------
    Row("warmup-steps-float", "LRScheduler", {"warmup_steps": 1.5}, AssertionTypeError,
        "warmup_steps must be an int", ("AssertionError", "")),
    Row("warmup-begin-above-base", "FactorScheduler",
        {"step": 5, "base_lr": 0.01, "warmup_begin_lr": 0.1}, ValueError,
        "warmup_begin_lr=0.1 > base_lr=0.01",
        ("ValueError", "Base lr has to be higher than warmup_begin_lr")),
    Row("warmup-steps-negative", "PolyScheduler", {"max_update": 5, "warmup_steps": -1},
        ValueError, "warmup_steps=-1", ("ValueError", "Warmup steps has to be positive or 0")),
    Row("warmup-mode", "CosineScheduler", {"max_update": 5, "warmup_mode": "cosine"}, ValueError,
        "'cosine'", ("ValueError", "Supports only linear and constant modes of warmup")),
    Row("factor-step-0", "FactorScheduler", {"step": 0}, ValueError, "step=0",
        ("ValueError", "Schedule step must be greater or equal than 1 round")),
    Row("factor-above-1", "FactorScheduler", {"step": 5, "factor": 1.5}, ValueError,
        "factor=1.5", ("ValueError", "Factor must be no more than 1 to make lr reduce")),
    Row("multifactor-not-list", "MultiFactorScheduler", {"step": 5}, AssertionTypeError,
        "must be a list", ("AssertionError", "")),
    Row("multifactor-empty", "MultiFactorScheduler", {"step": []}, AssertionValueError,
        "at least one step", ("AssertionError", "")),
    Row("multifactor-not-increasing", "MultiFactorScheduler", {"step": [3, 3]}, ValueError,
        r"\[3, 3\]", ("ValueError", "Schedule step must be an increasing integer list")),
    Row("multifactor-step-0", "MultiFactorScheduler", {"step": [0, 3]}, ValueError, r"\[0, 3\]",
        ("ValueError", "Schedule step must be greater or equal than 1 round")),
    Row("multifactor-factor", "MultiFactorScheduler", {"step": [2], "factor": 2}, ValueError,
        "factor=2", ("ValueError", "Factor must be no more than 1 to make lr reduce")),
    Row("poly-max-update-0", "PolyScheduler", {"max_update": 0}, ValueError, "max_update=0",
        ("ValueError", "maximum number of updates must be strictly positive")),
    Row("poly-max-update-float", "PolyScheduler", {"max_update": 10.0}, AssertionTypeError,
        "max_update must be an int", ("AssertionError", "")),
    Row("cosine-max-update-negative", "CosineScheduler", {"max_update": -3}, ValueError,
        "max_update=-3", ("ValueError", "maximum number of updates must be strictly positive")),
    Row("cosine-warmup-str", "CosineScheduler", {"max_update": 5, "warmup_steps": "2"},
        AssertionTypeError, "warmup_steps must be an int", ("AssertionError", "")),
    # ---- schedulers: wrong types MXNet trips over in a comparison -----------------------------
    Row("factor-step-str", "FactorScheduler", {"step": "3"}, TypeError, "step must be a real",
        ("TypeError", "'<' not supported between instances of 'str' and 'int'")),
    Row("base-lr-str", "LRScheduler", {"base_lr": "x"}, TypeError, "base_lr must be a real",
        ("TypeError", "'>' not supported between instances of 'int' and 'str'")),
    # ---- optimizer: MXNet's own checks -------------------------------------------------------
    Row("unknown-optimizer", "create", {"name": "sgdx"}, ValueError, "adamop implements 'adam'",
        ("ValueError", "Cannot find optimizer sgdx")),
    Row("idx2name-not-dict", "Adam", {"param_idx2name": [1]}, AssertionTypeError, "Got list",
        ("AssertionError", "param_idx2name should be a dict of param indexes to names.")),
    Row("unknown-kwarg", "Adam", {"foo": 1}, TypeError, "unexpected keyword argument 'foo'",
        ("TypeError", "Optimizer.__init__() got an unexpected keyword argument 'foo'")),
    Row("set-lr-with-scheduler", "Adam", {"lr_scheduler": _FACTOR, "learning_rate": None},
        UserWarningError, "already been defined",
        ("UserWarning", "LRScheduler of the optimizer has already been defined. Note that "
                        "set_learning_rate can mutate the value of the learning rate of the "
                        "optimizer only when the LRScheduler of the optimizer is undefined."),
        ("set_learning_rate", [0.1])),
    Row("lr-mult-not-dict", "Adam", {}, TypeError, "must be a dict",
        ("TypeError", "cannot convert dictionary update sequence element #0 to a sequence"),
        ("set_lr_mult", [[1, 2]])),
    Row("idx2name-value-not-str", "Adam", {"param_idx2name": {"0": 5}}, TypeError,
        r"param_idx2name\['0'\] must be a str",
        ("AttributeError", "'int' object has no attribute 'endswith'")),
    Row("scheduler-not-callable", "Adam", {"lr_scheduler": 5}, TypeError,
        "lr_scheduler must be a scheduler",
        ("AttributeError", "'int' object has no attribute 'base_lr'")),
    # ---- optimizer: accepted by MXNet, refused here before anything runs ------------------------
    Row("other-mxnet-optimizer", "create", {"name": "sgd"}, ValueError,
        "'sgd' is not implemented by adamop", None),
    Row("learning-rate-str", "Adam", {"learning_rate": "0.1"}, TypeError,
        "learning_rate must be a real number or None", None),
    Row("beta1-nan", "Adam", {"beta1": float("nan")}, ValueError, "beta1 must be finite", None),
    Row("wd-inf", "Adam", {"wd": float("inf")}, ValueError, "wd must be finite", None),
    Row("clip-str", "Adam", {"clip_gradient": "1"}, TypeError, "clip_gradient must be", None),
    Row("begin-num-update-negative", "Adam", {"begin_num_update": -1}, ValueError,
        "begin_num_update must be >= 0", None),
    Row("begin-num-update-float", "Adam", {"begin_num_update": 2.0}, TypeError,
        "begin_num_update must be an int", None),
    Row("multi-precision-str", "Adam", {"multi_precision": "yes"}, TypeError,
        "multi_precision must be True or False", None),
    Row("lazy-update-int", "Adam", {"lazy_update": 1}, TypeError,
        "lazy_update must be True or False", None),
    Row("wd-mult-str", "Adam", {}, TypeError, r"args_wd_mult\[0\] must be a real", None,
        ("set_wd_mult", [{0: "x"}])),
    Row("param-dict-no-mults", "Adam", {"param_dict": {0: "w"}}, TypeError,
        "no lr_mult/wd_mult", None),
    Row("create-name-not-str", "create", {"name": 3}, TypeError, "name must be a str",
        ("AttributeError", "'int' object has no attribute 'lower'")),
]
IDS = [r.id for r in ROWS]


def _build(row: Row) -> Any:
    kwargs = dict(row.kwargs)
    if isinstance(kwargs.get("lr_scheduler"), dict):
        spec = kwargs["lr_scheduler"]
        kwargs["lr_scheduler"] = getattr(lr_scheduler, spec["class"])(**spec["kwargs"])
    if "param_idx2name" in kwargs and isinstance(kwargs["param_idx2name"], dict):
        kwargs["param_idx2name"] = dict(kwargs["param_idx2name"])
    if row.target == "create":
        obj = optimizer.create(kwargs.pop("name"), **kwargs)
    elif row.target == "Adam":
        obj = optimizer.Adam(**kwargs)
    else:
        obj = getattr(lr_scheduler, row.target)(**kwargs)
    if row.call:
        method, args = row.call
        getattr(obj, method)(*args)
    return obj


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_error(row: Row) -> None:
    with pytest.raises(row.error, match=row.match) as info:
        _build(row)
    assert isinstance(info.value, (TypeError, ValueError))   # what a Python library raises
    if row.mxnet is None:
        return
    kind, message = row.mxnet
    family = {"AssertionError": AssertionError, "UserWarning": UserWarning,
              "ValueError": ValueError, "TypeError": TypeError, "AttributeError": TypeError}
    assert isinstance(info.value, family[kind])   # code catching MXNet's exception still works
    if kind in ("AssertionError", "UserWarning", "ValueError"):
        assert message in str(info.value)          # MXNet's words, then what was received


@pytest.mark.mxnet
def test_mxnet_behaves_as_the_rows_say() -> None:
    jsonable = [{"id": r.id, "target": r.target,
                 "kwargs": {k: v for k, v in r.kwargs.items()},
                 "call": [r.call[0], [_json_arg(a) for a in r.call[1]]] if r.call else None}
                for r in ROWS]
    _, said = run_mxnet("optimizer_errors.py", {}, {"rows": jsonable})
    wrong = {r.id: said[r.id] for r in ROWS
             if (said[r.id] if r.mxnet is None else said[r.id] != list(r.mxnet))}
    assert not wrong, wrong


def _json_arg(a: Any) -> Any:
    # JSON keys are strings; MXNet's set_wd_mult row only needs a dict with a bad value
    return {str(k): v for k, v in a.items()} if isinstance(a, dict) else a


def test_warnings_are_mxnet_s() -> None:
    sched = lr_scheduler.FactorScheduler(step=3, base_lr=0.5)
    with pytest.warns(UserWarning, match="^learning rate from ``lr_scheduler`` has been "
                                         "overwritten by ``learning_rate`` in optimizer.$"):
        opt = optimizer.create("adam", learning_rate=0.01, lr_scheduler=sched)
    assert sched.base_lr == opt.lr == 0.01 and sched.warmup_final_lr == 0.5   # the quirk
    with pytest.warns(UserWarning, match=re.escape(
            "Accumulating with float16 in optimizer can lead to poor accuracy or slow "
            "convergence. Consider using multi_precision=True option of the optimizer")):
        optimizer.create("adam").create_state_multi_precision(0, np.zeros(3, np.float16))
