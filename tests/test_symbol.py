"""adamop.sym: graph building, introspection, inference and execution.

Texts and lists marked "MXNet" were printed by MXNet 1.9.1 for the same graph (positional
composition); numbers are compared with the imperative ``adamop.adam_update``, which the golden
tests check against MXNet."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import adamop
from adamop import RowSparseArray, sym
from adamop.sym import executor as executor_mod
from adamop.bitwise import assert_bitexact

SPEC_JSON = """{
  "nodes": [
    {
      "op": "null", 
      "name": "weight", 
      "inputs": []
    }, 
    {
      "op": "null", 
      "name": "grad", 
      "inputs": []
    }, 
    {
      "op": "null", 
      "name": "mean", 
      "inputs": []
    }, 
    {
      "op": "null", 
      "name": "var", 
      "inputs": []
    }, 
    {
      "op": "adam_update", 
      "name": "adam0", 
      "attrs": {
        "clip_gradient": "5", 
        "lr": "0.01", 
        "wd": "0.001"
      }, 
      "inputs": [[0, 0, 0], [1, 0, 0], [2, 0, 1], [3, 0, 1]]
    }
  ], 
  "arg_nodes": [0, 1, 2, 3], 
  "node_row_ptr": [0, 1, 2, 3, 4, 5], 
  "heads": [[4, 0, 0]], 
  "attrs": {"mxnet_version": ["int", 10901]}
}"""

VAR_JSON = """{
  "nodes": [
    {
      "op": "null", 
      "name": "w", 
      "attrs": {
        "__dtype__": "2", 
        "__init__": "[\\"zero\\", {}]", 
        "__lr_mult__": "2", 
        "__shape__": "(3, 4)", 
        "__storage_type__": "1"
      }, 
      "inputs": []
    }
  ], 
  "arg_nodes": [0], 
  "node_row_ptr": [0, 1], 
  "heads": [[0, 0, 0]], 
  "attrs": {"mxnet_version": ["int", 10901]}
}"""


def _vars(*names):
    return [sym.var(n) for n in names]


def _adam0(**extra):
    return sym.adam_update(*_vars("weight", "grad", "mean", "var"), lr=0.01, wd=0.001,
                           clip_gradient=5, name="adam0", **extra)


def _arrays(rng, shape=(3, 4), dtype=np.float32):
    return [rng.standard_normal(shape).astype(dtype) for _ in range(3)] + [
        rng.random(shape).astype(dtype)]


# ---- building and introspection -------------------------------------------------------------
def test_spec_example_json_and_lists():
    s = _adam0()
    assert s.tojson() == SPEC_JSON                                   # MXNet
    assert s.list_arguments() == ["weight", "grad"]
    assert s.list_auxiliary_states() == ["mean", "var"]
    assert s.list_inputs() == ["weight", "grad", "mean", "var"]
    assert s.list_outputs() == ["adam0_output"]
    assert s.list_attr() == {"lr": "0.01", "wd": "0.001", "clip_gradient": "5"}
    assert s.attr("wd") == "0.001" and s.attr("beta1") is None and s.name == "adam0"


def test_variable_attributes_as_mxnet_writes_them():
    w = sym.var("w", shape=(3, 4), dtype="float16", stype="row_sparse", lr_mult=2,
                init='["zero", {}]')
    assert w.tojson() == VAR_JSON                                    # MXNet
    assert w.list_attr() == {"__storage_type__": "1", "__init__": '["zero", {}]',
                             "__dtype__": "2", "__lr_mult__": "2", "lr_mult": "2",
                             "__shape__": "(3, 4)"}                    # MXNet


def test_default_names_count_up_and_dunder_attrs_are_kept():
    a = sym.adam_update(*_vars("w", "g", "m", "v"), lr=0.1, __ctx_group__="d")
    b = sym.adam_update(*_vars("w", "g", "m", "v"), lr=0.1, attr={"__mirror_stage__": "1"})
    n = int(a.name[len("adam_update"):])
    assert a.name == f"adam_update{n}" and b.name == f"adam_update{n + 1}"
    assert a.list_attr() == {"__ctx_group__": "d", "ctx_group": "d", "lr": "0.1"}   # MXNet
    assert b.attr("__mirror_stage__") == "1"


def test_internals_children_and_groups():
    w, g, m, v = _vars("w", "g", "m", "v")
    a = sym.adam_update(w, g, m, v, lr=0.1, name="a0")
    assert a.get_internals().list_outputs() == ["w", "g", "m", "v", "a0_output"]   # MXNet
    assert a.get_children().list_outputs() == ["w", "g", "m", "v"]                # MXNet
    assert w.get_children() is None
    b = sym.adam_update(a, g, m, v, lr=0.2, name="b0")
    assert b.list_arguments() == ["w", "g"] and b.list_auxiliary_states() == ["m", "v"]
    group = sym.Group([a, b])
    assert group.name is None and group.attr("lr") is None and len(group) == 2
    assert group.list_outputs() == ["a0_output", "b0_output"]
    assert group[1].name == "b0" and group["a0_output"].name == "a0"
    assert '"inputs": [[4, 0, 0], [1, 0, 0], [2, 0, 2], [3, 0, 2]]' in b.tojson()   # MXNet


@pytest.mark.parametrize("call, exc, pattern", [
    (lambda: sym.adam_update(*_vars("w", "g", "m", "v"), lr=0.1, momentum=0.9, name="n1"),
     TypeError, r"node 'n1'.*unknown parameter 'momentum'"),
    (lambda: sym.adam_update(*_vars("w", "g", "m", "v"), lr="abc", name="n2"),
     ValueError, r"node 'n2'.*lr.*'abc'"),
    (lambda: sym.adam_update(*_vars("w", "g", "m", "v"), name="n3"),
     ValueError, r"n3.*required parameter lr is missing"),
    (lambda: sym.adam_update(*_vars("w", "g", "m", "v"), lr=float("nan"), name="n4"),
     ValueError, r"n4.*not finite"),
    (lambda: sym.adam_update(*_vars("w", "g"), sym.adam_update(*_vars("a", "b", "c", "d"),
                                                               lr=1), sym.var("v"), lr=1,
                             name="n5"),
     ValueError, r"n5.*input mean is mutated in place, so it must be a variable"),
    (lambda: sym.adam_update(sym.Group(_vars("a", "b")), *_vars("g", "m", "v"), lr=1,
                             name="n6"),
     ValueError, r"'n6': input weight is a group of 2 outputs"),
    (lambda: sym.adam_update(np.zeros(3), *_vars("g", "m", "v"), lr=1, name="n7"),
     TypeError, r"'n7': input weight must be an adamop.sym Symbol"),
    (lambda: sym.var("w", lr=0.1), ValueError, r"attribute 'lr' is not supported"),
    (lambda: sym.var("w", stype="coo"), ValueError, r"stype 'coo'"),
    (lambda: sym.Group([]), TypeError, r"non-empty list"),
    (lambda: sym.Group([sym.var("a"), 3]), TypeError, r"item 1 is a int"),
])
def test_building_refusals(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


# ---- inference ---------------------------------------------------------------------------------
def test_infer_shape_from_one_input_and_from_attributes():
    s = _adam0()
    shapes = ([(3, 4), (3, 4)], [(3, 4)], [(3, 4), (3, 4)])          # MXNet
    assert s.infer_shape(weight=(3, 4)) == shapes
    assert s.infer_shape(var=(3, 4)) == shapes
    assert s.infer_shape(None, (3, 4)) == shapes
    hinted = sym.adam_update(sym.var("w", shape=(3, 4)), *_vars("g", "m", "v"), lr=1)
    assert hinted.infer_shape() == shapes
    w, g = _vars("w", "g")
    chain = sym.adam_update(sym.adam_update(w, g, *_vars("m1", "v1"), lr=1), g,
                            *_vars("m2", "v2"), lr=1)
    assert chain.infer_shape(v2=(5,))[0] == [(5,), (5,)]           # flows back through a node


def test_infer_shape_conflict_names_node_and_input():
    with pytest.raises(ValueError, match=r"Error in operator adam0: input grad \(1-th\) has "
                                         r"shape \(4, 3\), expected \(3, 4\)"):
        _adam0().infer_shape(weight=(3, 4), grad=(4, 3))


def test_infer_shape_unknown_raises_and_partial_returns_none():
    group = sym.Group([_adam0(), sym.adam_update(*_vars("a", "b", "c", "d"), lr=1)])
    with pytest.raises(ValueError, match=r"cannot infer the shape of \['a', 'b', 'c', 'd'\]"):
        group.infer_shape(weight=(2,))
    args, outs, aux = group.infer_shape_partial(weight=(2,))
    assert args == [(2,), (2,), None, None] and outs == [(2,), None]
    with pytest.raises(ValueError, match=r"'nope' is not an input"):
        group.infer_shape(nope=(2,))


def test_infer_type():
    s = _adam0()
    args, outs, aux = s.infer_type(mean="float64")                    # MXNet: all float64
    assert args == [np.float64, np.float64] and outs == [np.float64] and aux == [np.float64] * 2
    hinted = sym.adam_update(sym.var("w", dtype="float16"), *_vars("g", "m", "v"), lr=1,
                             name="a0")
    with pytest.raises(ValueError, match=r"Error in operator a0: input mean \(2-th, variable "
                                         r"'m'\) has dtype float64, expected float16"):
        hinted.infer_type(m="float64")


def test_infer_storage_type():
    s = _adam0()
    assert s.infer_storage_type(grad="row_sparse") == (
        ["default", "row_sparse"], ["default"], ["default", "default"])
    assert s.infer_storage_type(weight="row_sparse", grad="row_sparse")[1] == ["row_sparse"]
    with pytest.raises(ValueError, match=r"adam0: input mean has storage row_sparse but var"):
        s.infer_storage_type(mean="row_sparse")
    with pytest.raises(TypeError, match=r"adam0: input grad has storage csr"):
        s.infer_storage_type(grad="csr")


# ---- execution ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_forward_equals_imperative_over_steps(dtype, rng, backend):
    s = _adam0(beta1=0.85)
    w, g, m, v = _arrays(rng, (5, 3), dtype)
    ref_m, ref_v, ref_w = m.copy(), v.copy(), w.copy()
    ex = s.bind({"weight": w, "grad": g}, [m, v], backend=backend)
    for step in range(3):
        new_g = (rng.standard_normal((5, 3)) * 4).astype(dtype)
        outs = ex.forward(grad=new_g)
        expected = adamop.adam_update(ref_w, new_g, ref_m, ref_v, lr=0.01, wd=0.001,
                                      clip_gradient=5, beta1=0.85)
        assert_bitexact(outs[0], expected, f"step {step}")
        assert_bitexact(m, ref_m, "mean in place")
        assert_bitexact(v, ref_v, "var in place")
        assert outs[0] is ex.outputs[0] and ex.arg_dict["grad"] is g
        assert_bitexact(g, new_g, "grad fed into the bound array")
    assert_bitexact(w, ref_w, "weight argument unchanged")


def test_group_runs_as_one_batch_and_chain_as_two(rng, monkeypatch):
    calls = []
    real = executor_mod.Planner.run
    monkeypatch.setattr(executor_mod.Planner, "run", lambda self, columns, *rest, **kw:
                        calls.append(len(columns[0])) or real(self, columns, *rest, **kw))
    heads, args, aux = [], {}, {}
    for i in range(25):
        names = [f"p{i}_{k}" for k in ("w", "g", "m", "v")]
        heads.append(sym.adam_update(*_vars(*names), lr=0.01))
        w, g, m, v = _arrays(rng, (i + 1,), (np.float16, np.float32, np.float64)[i % 3])
        args.update({names[0]: w, names[1]: g})
        aux.update({names[2]: m, names[3]: v})
    sym.Group(heads).bind(args, aux).forward()
    assert calls == [25]
    calls.clear()
    w, g = _vars("w", "g")
    chain = sym.adam_update(sym.adam_update(w, g, *_vars("m1", "v1"), lr=1), g,
                            *_vars("m2", "v2"), lr=1)
    a = _arrays(rng)
    m2, v2 = a[2].copy(), a[3].copy()
    ref = [x.copy() for x in a] + [m2.copy(), v2.copy()]
    out = chain.eval(w=a[0], g=a[1], m1=a[2], v1=a[3], m2=m2, v2=v2)
    assert calls == [1, 1]
    first = adamop.adam_update(ref[0], ref[1], ref[2], ref[3], lr=1)
    assert_bitexact(out[0], adamop.adam_update(first, ref[1], ref[4], ref[5], lr=1), "chain")


def test_row_sparse_grads_through_graph_equal_imperative(rng):
    heads, args, aux, ref = [], {}, {}, []
    for i, lazy in enumerate((True, False)):
        names = [f"e{i}_{k}" for k in ("w", "g", "m", "v")]
        heads.append(sym.adam_update(*_vars(*names), lr=0.1, wd=0.01, lazy_update=lazy))
        w, _, m, v = _arrays(rng, (6, 2))
        args[names[0]] = w
        aux.update({names[2]: m, names[3]: v})
        ref.append((w.copy(), m.copy(), v.copy(), lazy))
    grads = [RowSparseArray(rng.standard_normal((2, 2)).astype(np.float32),
                            np.array([4, 1]), (6, 2)) for _ in range(2)]
    args.update({"e0_g": grads[0], "e1_g": grads[0]})
    ex = sym.Group(heads).bind(args, aux)
    for step, grad in enumerate(grads):
        outs = ex.forward(e0_g=grad, e1_g=grad)
        for i, (w, m, v, lazy) in enumerate(ref):
            expected = adamop.adam_update(w, grad, m, v, lr=0.1, wd=0.01, lazy_update=lazy)
            assert_bitexact(outs[i], expected, f"node {i} step {step}")
            assert_bitexact(aux[f"e{i}_m"], m, f"mean {i}")


def test_torch_tensors_through_graph(rng):
    torch = pytest.importorskip("torch", reason="torch not installed")
    w, g, m, v = (torch.from_numpy(a) for a in _arrays(rng))
    ref = [x.clone() for x in (w, g, m, v)]
    out = _adam0().eval(weight=w, grad=g, mean=m, var=v)[0]
    expected = adamop.adam_update(*ref, lr=0.01, wd=0.001, clip_gradient=5)
    assert isinstance(out, torch.Tensor)
    assert_bitexact(out, expected, "torch output")
    assert_bitexact(m, ref[2], "torch mean in place")


@pytest.mark.parametrize("args, aux, exc, pattern", [
    ({"weight": 0}, None, ValueError, r"args lacks arrays for \['grad'\]"),
    ({"weight": 0, "grad": 0, "mean": 0}, None, ValueError,
     r"'mean', which is not one of args; it is one of aux_states"),
    ([0], None, ValueError, r"args has 1 arrays but the graph has 2"),
    ("x", None, TypeError, r"args must be a dict"),
])
def test_bind_refusals(args, aux, exc, pattern):
    with pytest.raises(exc, match=pattern):
        _adam0().bind(args, aux)


def test_bind_checks_arrays_before_anything_runs(rng):
    w, g, m, v = _arrays(rng)
    before = [x.copy() for x in (w, g, m, v)]
    with pytest.raises(ValueError, match=r"adam0.grad has shape \(4, 3\)"):
        _adam0().bind([w, g.reshape(4, 3)], [m, v])
    with pytest.raises(TypeError, match=r"adam0.mean has dtype float64"):
        _adam0().bind([w, g], [m.astype(np.float64), v])
    for x, b in zip((w, g, m, v), before):
        assert_bitexact(x, b, "nothing written")
    ex = _adam0().bind([w, g], [m, v])
    with pytest.raises(ValueError, match=r"forward: grad is bound to an array of shape"):
        ex.forward(grad=np.zeros(5, np.float32))
    with pytest.raises(ValueError, match=r"eval got arrays for \['extra'\]"):
        _adam0().eval(weight=w, grad=g, mean=m, var=v, extra=w)


def test_example_trains():
    """examples/symbolic_training.py (the README's example) runs and its loss falls."""
    example = Path(__file__).resolve().parent.parent / "examples" / "symbolic_training.py"
    proc = subprocess.run([sys.executable, str(example)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    losses = [float(line.split()[-1]) for line in proc.stdout.splitlines()
              if line.startswith("step")]
    assert len(losses) == 5 and losses[-1] < losses[0] / 10, proc.stdout
