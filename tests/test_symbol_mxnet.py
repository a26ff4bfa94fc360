"""Round trips through real MXNet 1.9.1: graphs adamop writes run in MXNet, graphs MXNet writes run
in adamop, and the numbers agree bit for bit. One MXNet subprocess serves every case."""
from __future__ import annotations

import numpy as np
import pytest

from adamop import RowSparseArray, sym
from adamop.bitwise import assert_bitexact
from mxnet_oracle import run_mxnet

DTYPES = (np.float16, np.float32, np.float64)
SHAPES = ((7,), (5, 3, 4), (1,), (257,), (3, 1, 2), (4, 6))
# Every parameter, with values dmlc parses 1 ulp away from a correctly rounded float32, syntax
# only dmlc accepts, clip_gradient=0 (clipping on: g becomes +-0) and lazy_update off.
PARAM_SETS = (
    {"lr": 0.01},
    {"lr": "1.3340153098106382", "wd": 0.01},
    {"lr": 1e-05, "epsilon": "3.1622776601683794e-05", "beta1": ".85"},
    {"lr": 0.0003, "clip_gradient": 0, "beta1": 0.8},
    {"lr": 0.002, "beta2": "0.99990000000000000000001", "rescale_grad": "+0.5", "wd": "1E-3"},
    {"lr": 0.05, "clip_gradient": 2.5, "lazy_update": False, "rescale_grad": 3.3},
    {"lr": 1.3340153098106382, "beta1": 0.85, "beta2": 0.9999, "epsilon": 3.1622776601683794e-05,
     "wd": 0.001, "rescale_grad": 0.5, "clip_gradient": 2.5, "lazy_update": False},
    {"lr": 2.0, "epsilon": 0.1, "clip_gradient": -0.0},
)


def _state(rng, shape, dtype):
    w = rng.standard_normal(shape).astype(dtype)
    g = (rng.standard_normal(shape) * 3).astype(dtype)
    m = (rng.standard_normal(shape) * 0.1).astype(dtype)
    v = rng.random(shape).astype(dtype)
    return w, g, m, v


def _adamop_group(n: int, rng) -> tuple[sym.Symbol, dict, dict]:
    """n parameters of mixed shapes and dtypes, each with its own parameter set."""
    heads, args, aux = [], {}, {}
    for i in range(n):
        shape, dtype = SHAPES[i % len(SHAPES)], DTYPES[i % len(DTYPES)]
        w, g, m, v = _state(rng, shape, dtype)
        extra = {"shape": shape, "dtype": dtype, "lr_mult": 2.0} if i % 5 == 0 else {}
        names = [f"p{i}_{k}" for k in ("weight", "grad", "mean", "var")]
        ins = [sym.var(names[0], **extra)] + [sym.var(x) for x in names[1:]]
        dunder = {"__ctx_group__": "dev1"} if i % 7 == 3 else {}
        heads.append(sym.adam_update(*ins, name=f"p{i}_adam", **PARAM_SETS[i % len(PARAM_SETS)],
                                     **dunder))
        args.update({names[0]: w, names[1]: g})
        aux.update({names[2]: m, names[3]: v})
    return sym.Group(heads), args, aux


def _compose_spec(n_params: int, chain: bool) -> dict:
    """A graph for MXNet to compose; with ``chain`` a second node updates the first's output."""
    spec = {"vars": [], "ops": [], "heads": []}
    for i in range(n_params):
        names = [f"q{i}_{k}" for k in ("weight", "grad", "mean", "var")]
        attr = {"__wd_mult__": "0.5"} if i % 4 == 1 else {}
        spec["vars"] += [{"name": names[0], "attr": attr}] + [{"name": x} for x in names[1:]]
        params = {k: str(v) for k, v in PARAM_SETS[(i + 3) % len(PARAM_SETS)].items()}
        spec["ops"].append({"name": f"q{i}_adam", "inputs": names, "params": params})
        spec["heads"].append(f"q{i}_adam")
    if chain:
        spec["ops"].append({"name": "again", "inputs": ["q0_adam", "q0_grad", "q0_mean",
                                                         "q0_var"], "params": {"lr": "0.5"}})
        spec["heads"] = ["again"] + spec["heads"][1:]
    return spec


def _adamop_compose(spec: dict) -> sym.Symbol:
    """adamop's own composition of a spec, to compare its text with MXNet's."""
    made = {v["name"]: sym.var(v["name"], attr=v.get("attr") or None) for v in spec["vars"]}
    for op in spec["ops"]:
        made[op["name"]] = sym.adam_update(*(made[i] for i in op["inputs"]), name=op["name"],
                                           **op["params"])
    heads = [made[h] for h in spec["heads"]]
    return heads[0] if len(heads) == 1 else sym.Group(heads)


def _rsp_case(rng):
    """Three nodes with row_sparse grads: dense weight lazy, dense weight std, rsp weight."""
    nodes, arrays = [], {}
    for i, (dtype, params, rsp_weight) in enumerate((
            (np.float32, {"lr": 0.01, "wd": 0.01}, False),
            (np.float64, {"lr": "1.3340153098106382", "lazy_update": False, "clip_gradient": 1.0},
             False),
            (np.float16, {"lr": 0.05, "rescale_grad": 0.5}, True))):
        w, _, m, v = _state(rng, (6, 3), dtype)
        idx = np.array([0, 2, 5], dtype=np.int64)
        gdata = rng.standard_normal((3, 3)).astype(dtype)
        names = [f"r{i}_{k}" for k in ("weight", "grad", "mean", "var")]
        nodes.append((names, params, rsp_weight))
        arrays[names[0]], arrays[names[1]] = w, (gdata, idx)
        arrays[names[2]], arrays[names[3]] = m, v
    return nodes, arrays


def _cases():
    rng = np.random.default_rng(7)
    cases, inputs, local = [], {}, {}

    def add(cid, forward_calls, args, aux, **how):
        cases.append({"id": cid, "forward_calls": forward_calls, **how})
        for k, a in args.items():
            inputs[f"{cid}__arg__{k}"] = a
        for k, a in aux.items():
            inputs[f"{cid}__aux__{k}"] = a

    w, g, m, v = _state(rng, (5, 3), np.float32)
    single = sym.adam_update(*(sym.var(n) for n in ("w", "g", "m", "v")), lr=0.01)
    local["single"] = (single, {"w": w, "g": g}, {"m": m, "v": v})
    every = sym.adam_update(*(sym.var(n) for n in ("w", "g", "m", "v")), name="every",
                            **PARAM_SETS[6])
    w2, g2, m2, v2 = _state(rng, (9,), np.float64)
    local["every"] = (every, {"w": w2, "g": g2}, {"m": m2, "v": v2})
    local["group24"] = _adamop_group(24, rng)
    for cid, (s, args, aux) in local.items():
        add(cid, 3, args, aux, json=s.tojson())

    for cid, n, chain in (("mx_group12", 12, False), ("mx_chain", 2, True)):
        spec = _compose_spec(n, chain)
        args, aux = {}, {}
        for i in range(n):
            shape, dtype = SHAPES[(i + 1) % len(SHAPES)], DTYPES[(i + 2) % len(DTYPES)]
            w, g, m, v = _state(rng, shape, dtype)
            args.update({f"q{i}_weight": w, f"q{i}_grad": g})
            aux.update({f"q{i}_mean": m, f"q{i}_var": v})
        add(cid, 2, args, aux, compose=spec)
        local[cid] = (spec, args, aux)

    nodes, arrays = _rsp_case(rng)
    for k, a in arrays.items():
        if isinstance(a, tuple):
            inputs[f"rsp__rsp__{k}__data"], inputs[f"rsp__rsp__{k}__indices"] = a
            inputs[f"rsp__rsp__{k}__shape"] = np.array([6, 3])
    rsp_weights = {names[0] for names, _, rw in nodes if rw}
    for k, a in arrays.items():
        if isinstance(a, tuple):
            continue
        kind = "rsp" if k in rsp_weights else ("arg" if k.endswith("weight") else "aux")
        if kind == "rsp":
            inputs[f"rsp__rsp__{k}__data"], inputs[f"rsp__rsp__{k}__indices"] = a, np.arange(6)
            inputs[f"rsp__rsp__{k}__shape"] = np.array([6, 3])
        else:
            inputs[f"rsp__{kind}__{k}"] = a
    cases.append({"id": "rsp", "forward_calls": 1, "imperative": [
        {"inputs": names, "params": {k: str(v) for k, v in p.items()}} for names, p, _ in nodes]})
    local["rsp"] = (nodes, arrays)
    return cases, inputs, local


CASES, INPUTS, LOCAL = _cases()


@pytest.fixture(scope="module")
def mxnet_results():
    arrays, meta = run_mxnet("sym_roundtrip.py", INPUTS, CASES)
    return arrays, meta


def _copies(d: dict) -> dict:
    return {k: v.copy() for k, v in d.items()}


def _check_run(s: sym.Symbol, cid: str, args: dict, aux: dict, calls: int, mx_arrays: dict):
    args, aux = _copies(args), _copies(aux)
    ex = s.bind(args, aux)
    for _ in range(calls):
        outs = ex.forward()
    for i, o in enumerate(outs):
        assert_bitexact(o, mx_arrays[f"{cid}__out__{i}"], f"{cid} output {i}")
    for k, a in aux.items():
        assert_bitexact(a, mx_arrays[f"{cid}__aux_out__{k}"], f"{cid} aux {k}")


@pytest.mark.parametrize("cid", ["single", "every", "group24"])
def test_adamop_graph_runs_in_mxnet(cid, mxnet_results):
    mx_arrays, meta = mxnet_results
    s, args, aux = LOCAL[cid]
    assert meta[cid]["tojson"] == s.tojson(), "MXNet re-emits adamop's JSON differently"
    assert meta[cid]["arguments"] == s.list_arguments()
    assert meta[cid]["aux_states"] == s.list_auxiliary_states()
    assert meta[cid]["outputs"] == s.list_outputs()
    _check_run(s, cid, args, aux, 3, mx_arrays)
    _check_run(sym.load_json(s.tojson()), cid, args, aux, 3, mx_arrays)


@pytest.mark.parametrize("cid", ["mx_group12", "mx_chain"])
def test_mxnet_graph_runs_in_adamop(cid, mxnet_results):
    mx_arrays, meta = mxnet_results
    spec, args, aux = LOCAL[cid]
    text = meta[cid]["tojson"]
    loaded = sym.load_json(text)
    assert loaded.tojson() == text
    assert _adamop_compose(spec).tojson() == text, "adamop composes a different graph"
    assert loaded.list_arguments() == meta[cid]["arguments"]
    assert loaded.list_auxiliary_states() == meta[cid]["aux_states"]
    _check_run(loaded, cid, args, aux, 2, mx_arrays)


def test_row_sparse_grads_through_graph_match_mxnet(mxnet_results):
    """MXNet's executor refuses row_sparse grads (kWriteInplace), so its imperative op with
    ``out=weight`` is the oracle for the same updates run as one adamop graph."""
    mx_arrays, _ = mxnet_results
    nodes, arrays = LOCAL["rsp"]
    heads, args, aux = [], {}, {}
    for names, params, rsp_weight in nodes:
        heads.append(sym.adam_update(*(sym.var(n) for n in names), **params))
        w = arrays[names[0]].copy()
        args[names[0]] = RowSparseArray.from_dense(w, all_rows=True) if rsp_weight else w
        gdata, idx = arrays[names[1]]
        args[names[1]] = RowSparseArray(gdata.copy(), idx.copy(), (6, 3))
        aux[names[2]], aux[names[3]] = arrays[names[2]].copy(), arrays[names[3]].copy()
    group = sym.Group(heads)
    assert group.infer_storage_type(**{k: "row_sparse" for k in args if k.endswith("grad")}
                                    )[1] == ["default", "default", "default"]
    outs = group.bind(args, aux).forward()
    for (names, _, _), out in zip(nodes, outs):
        assert_bitexact(out, mx_arrays[f"rsp__w__{names[0]}"], f"{names[0]} new weight")
        for k in names[2:]:
            assert_bitexact(aux[k], mx_arrays[f"rsp__aux_out__{k}"], k)
    assert isinstance(outs[2], RowSparseArray), "an rsp weight's new weight stays row_sparse"
