"""Symbol JSON: MXNet 1.9.1's recorded graphs load, re-emit MXNet's exact text and give MXNet's
recorded numbers; malformed or unsupported graphs are refused with a clear message."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from adamop import sym
from adamop.bitwise import assert_bitexact

JSON_DIR = Path(__file__).resolve().parent / "data" / "json_dev"
FIXTURES = sorted(p.stem for p in JSON_DIR.glob("*.json"))


def _fixture(name: str):
    with np.load(JSON_DIR / f"{name}.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta_json")))
    pick = lambda prefix: {k[len(prefix):]: v.copy() for k, v in arrays.items()  # noqa: E731
                           if k.startswith(prefix)}
    return (JSON_DIR / f"{name}.json").read_text(), meta, arrays, pick("arg__"), pick("aux__")


def _run(s, meta, arrays, args, aux, backend=None):
    args_before = {k: v.copy() for k, v in args.items()}
    ex = s.bind(args, aux, backend=backend)
    for _ in range(meta["forward_calls"]):
        outs = ex.forward()
    assert len(outs) == meta["num_outputs"]
    for i, o in enumerate(outs):
        assert_bitexact(o, arrays[f"out__{i}"], f"{meta['name']} output {i}")
    for k, a in aux.items():
        assert_bitexact(a, arrays[f"aux_out__{k}"], f"{meta['name']} {k} (updated in place)")
    for k, a in args.items():
        assert_bitexact(a, args_before[k], f"{meta['name']} argument {k} must stay unchanged")


def test_every_fixture_is_here():
    assert len(FIXTURES) == 6, FIXTURES


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_matches_mxnet(name, backend):
    text, meta, arrays, args, aux = _fixture(name)
    s = sym.load_json(text)
    assert s.list_arguments() == meta["arguments"]
    assert s.list_auxiliary_states() == meta["aux_states"]
    assert s.list_outputs() == meta["outputs"]
    assert s.tojson() == meta["mxnet_tojson"]
    if meta["json_is_mxnet_tojson"]:
        assert s.tojson() == text
    _run(s, meta, arrays, args, aux, backend)


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_reloaded_from_own_json(name, tmp_path):
    text, meta, arrays, args, aux = _fixture(name)
    path = tmp_path / "graph.json"
    sym.load_json(text).save(str(path))
    reloaded = sym.load(str(path))
    assert reloaded.tojson() == meta["mxnet_tojson"]
    _run(reloaded, meta, arrays, args, aux)


def test_eval_matches_fixture():
    text, meta, arrays, args, aux = _fixture("03_group3")
    outs = sym.load_json(text).eval(**args, **aux)
    for i, o in enumerate(outs):
        assert_bitexact(o, arrays[f"out__{i}"], f"output {i}")
    for k, a in aux.items():
        assert_bitexact(a, arrays[f"aux_out__{k}"], k)


# ---- refusals ----------------------------------------------------------------------------------
_GOOD = (JSON_DIR / "06a_version0_inputs.json").read_text()


def _edit(fn) -> str:
    graph = json.loads(_GOOD)
    fn(graph)
    return json.dumps(graph)


def _set(path, value):
    def apply(graph):
        target = graph
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return apply


REFUSALS = [
    ("malformed", _GOOD[:-5], ValueError, r"malformed JSON at line \d+ column \d+"),
    ("not_object", "[1, 2]", ValueError, r"expected a JSON object"),
    ("no_heads", _edit(lambda g: g.pop("heads")), ValueError, r"'heads' is missing"),
    ("unknown_field", _edit(_set(["extra"], 1)), ValueError, r"unknown field\(s\) \['extra'\]"),
    ("forward_input", _edit(_set(["nodes", 4, "inputs", 1], [4, 0, 0])), ValueError,
     r"node 'upd' \(nodes\[4\]\) input 1 refers to node 4, .*points forward"),
    ("out_of_range_input", _edit(_set(["nodes", 4, "inputs", 0], [99, 0, 0])), ValueError,
     r"refers to node 99, .*out of range"),
    ("bad_output_index", _edit(_set(["nodes", 4, "inputs", 0], [0, 1, 0])), ValueError,
     r"asks for output 1 of node 0 \('weight'\).*out of range"),
    ("bad_entry", _edit(_set(["nodes", 4, "inputs", 0], [0])), ValueError,
     r"expected \[node, index\] or \[node, index, version\]"),
    ("head_out_of_range", _edit(_set(["heads"], [[7, 0, 0]])), ValueError,
     r"heads\[0\] refers to node 7"),
    ("unsupported_op", _edit(_set(["nodes", 4, "op"], "sgd_update")), ValueError,
     r"node 'upd' uses operator 'sgd_update', which adamop does not implement"),
    ("three_inputs", _edit(lambda g: g["nodes"][4]["inputs"].pop()), ValueError,
     r"node 'upd': operator adam_update expects 4 inputs .* but got 3 instead"),
    ("bad_lr", _edit(_set(["nodes", 4, "attrs", "lr"], "abc")), ValueError,
     r"node 'upd'.*lr.*'abc'"),
    ("lr_out_of_range", _edit(_set(["nodes", 4, "attrs", "wd"], "1e-39")), ValueError,
     r"node 'upd'.*Out of range value for wd"),
    ("bad_bool", _edit(_set(["nodes", 4, "attrs", "lazy_update"], "maybe")), ValueError,
     r"node 'upd'.*lazy_update.*'maybe'"),
    ("unknown_param", _edit(_set(["nodes", 4, "attrs", "momentum"], "0.9")), TypeError,
     r"upd.*unknown parameter 'momentum'"),
    ("missing_lr", _edit(lambda g: g["nodes"][4]["attrs"].pop("lr")), ValueError,
     r"upd.*required parameter lr is missing"),
    ("number_attr", _edit(_set(["nodes", 4, "attrs", "lr"], 0.1)), TypeError,
     r"node 'upd': attribute 'lr' is 0.1; MXNet stores attribute values as strings"),
    ("mutated_not_variable", _edit(lambda g: (
        g["nodes"].append({"op": "adam_update", "name": "second", "attrs": {"lr": "1"},
                           "inputs": [[0, 0], [1, 0], [4, 0], [3, 0]]}),
        g.__setitem__("heads", [[5, 0, 0]]))), ValueError,
     r"node 'second': input mean is mutated in place, so it must be a variable"),
    ("variable_with_inputs", _edit(_set(["nodes", 1, "inputs"], [[0, 0, 0]])), ValueError,
     r"variable 'grad' \(nodes\[1\]\) has inputs"),
]


@pytest.mark.parametrize("text, exc, pattern", [r[1:] for r in REFUSALS],
                         ids=[r[0] for r in REFUSALS])
def test_load_refuses(text, exc, pattern):
    with pytest.raises(exc, match=pattern):
        sym.load_json(text)


def test_load_json_wants_text():
    with pytest.raises(TypeError, match=r"use adamop.sym.load\(path\)"):
        sym.load_json(b"{}")


def test_lenient_loading_of_what_mxnet_accepts():
    """v0.8 files: "param"/"attr" instead of "attrs", 2-element entries, no optional fields."""
    text = json.dumps({"heads": [[4, 0]], "arg_nodes": [0, 1, 2, 3], "nodes": [
        {"op": "null", "name": n, "inputs": []} for n in ("w", "g", "m", "v")] + [
        {"op": "adam_update", "name": "a", "param": {"lr": "0.1"}, "attr": {"__x__": "1"},
         "inputs": [[0, 0], [1, 0], [2, 0], [3, 0]], "control_deps": []}]})
    s = sym.load_json(text)
    assert s.list_attr() == {"lr": "0.1", "__x__": "1"}
    assert re.search(r'"inputs": \[\[0, 0, 0\], \[1, 0, 0\], \[2, 0, 0\], \[3, 0, 0\]\]',
                     s.tojson())


def test_unreachable_nodes_are_dropped_like_mxnet():
    graph = json.loads(_GOOD)
    graph["nodes"].insert(0, {"op": "null", "name": "dangling", "inputs": []})
    for node in graph["nodes"][1:]:
        node["inputs"] = [[i + 1, 0, v] for i, _, v in node["inputs"]]
    graph["heads"] = [[5, 0, 0]]
    s = sym.load_json(json.dumps(graph))
    assert "dangling" not in s.list_inputs()
    assert s.tojson() == sym.load_json(_GOOD).tojson()
