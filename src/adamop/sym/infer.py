"""Shape, dtype and storage-type inference over a graph (MXNet's InferShape/InferType passes).

Each node asks its operator (:class:`adamop.ops.OpDef`): ``infer_shape``/``infer_type`` unify
its input and output slots (elementwise for ``adam_update``: one known slot fixes the rest), and
facts flow through shared variables until nothing changes. Storage types flow forward only,
through the op's storage rule.
"""
from __future__ import annotations

import ast
from typing import Any, Sequence

import numpy as np

from .graph import DTYPE_FLAGS, STYPE_IDS, Entry, Node

__all__ = ["infer"]

_FLAG_DTYPES = {str(flag): dt for dt, flag in DTYPE_FLAGS.items()}
_ID_STYPES = {str(i): st for st, i in STYPE_IDS.items()}
_WHAT = {"shape": "shape", "dtype": "dtype", "stype": "storage type"}


def _normalise(kind: str, value: Any, where: str) -> Any:
    """A user-given (or attribute) value in canonical form: tuple, np.dtype or stype string."""
    if value is None:
        return None
    try:
        if kind == "shape":
            dims = tuple(int(d) for d in value)
            if any(d < 0 for d in dims):
                raise ValueError
            return dims
        if kind == "dtype":
            return np.dtype(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {value!r} is not a valid {_WHAT[kind]}") from None
    if value not in STYPE_IDS:
        raise ValueError(f"{where}: storage type {value!r} is not one of {list(STYPE_IDS)}")
    return value


def _hint(kind: str, node: Node) -> Any:
    """A variable's own attribute (``__shape__``, ``__dtype__``, ``__storage_type__``)."""
    key = {"shape": "__shape__", "dtype": "__dtype__", "stype": "__storage_type__"}[kind]
    text = node.attrs.get(key)
    if text is None:
        return None
    where = f"variable {node.name!r} attribute {key}"
    try:
        if kind == "shape":
            value = ast.literal_eval(text)   # MXNet writes shape=5 as "5": dmlc reads (5,)
            return _normalise(kind, (value,) if isinstance(value, int) else value, where)
        return _FLAG_DTYPES[text] if kind == "dtype" else _ID_STYPES[text]
    except (KeyError, ValueError, SyntaxError):
        raise ValueError(f"{where}: cannot read {text!r}") from None


def _variable_note(entry: Any, slot: str) -> str:
    node = entry.node
    return f", variable {node.name!r}" if node.is_variable and node.name != slot else ""


def _unify(kind: str, node: Node, values: dict, out_key: Any) -> bool:
    """Let the node's operator unify its input and output slots; True if anything new was
    learnt."""
    keys = [(id(e.node), e.index) for e in node.inputs] + [out_key]
    names = [f"input {n} ({i}-th{_variable_note(e, n)})"
             for i, (n, e) in enumerate(zip(node.op.inputs, node.inputs))] + ["output (0-th)"]
    rule = node.op.infer_shape if kind == "shape" else node.op.infer_type
    ref = rule(node.op, node.name, _WHAT[kind], [(n, values.get(k)) for k, n in zip(keys, names)])
    changed = False
    for k in keys:
        if values.get(k) is None and ref is not None:
            values[k], changed = ref, True
    return changed


def infer(symbol: Any, kind: str, args: Sequence[Any], kwargs: dict[str, Any],
          partial: bool) -> tuple[list, list, list]:
    """Run one inference pass; returns (arguments, outputs, auxiliary states) in list order."""
    nodes = symbol._nodes()
    variables = [n for n in nodes if n.is_variable]
    arg_names = symbol.list_arguments()
    if len(args) > len(arg_names):
        raise ValueError(f"infer_{kind}: got {len(args)} positional values but the graph has "
                         f"{len(arg_names)} arguments {arg_names}")
    given = dict(zip(arg_names, args))
    for name, value in kwargs.items():
        if name not in {n.name for n in variables}:
            raise ValueError(f"infer_{kind}: {name!r} is not an input of this graph; inputs "
                             f"are {symbol.list_inputs()}")
        given[name] = value
    values: dict[Any, Any] = {}
    for n in variables:
        v = _normalise(kind, given.get(n.name), f"infer_{kind} for input {n.name!r}")
        values[(id(n), 0)] = v if v is not None else _hint(kind, n)
        if kind == "stype" and values[(id(n), 0)] is None:
            values[(id(n), 0)] = "default"      # what an unannotated variable is bound with
    ops = [n for n in nodes if not n.is_variable]
    if kind == "stype":
        for n in ops:
            stypes = [values.get((id(e.node), e.index)) for e in n.inputs]
            try:
                values[(id(n), 0)] = n.op.storage(stypes, None)[1]
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"Error in operator {n.name}: {exc}") from None
    else:
        # forward and backward facts meet at a fixed point; each pass fixes at least one node
        for _ in range(len(ops) + 1):
            if not any([_unify(kind, n, values, (id(n), 0)) for n in ops]):
                break

    def look(entries: list) -> list:
        out = [values.get((id(e.node), e.index)) for e in entries]
        return [v.type if kind == "dtype" and v is not None else v for v in out]

    by_name = {n.name: n for n in variables}
    arg_v = look([Entry(by_name[a], 0, 0) for a in arg_names])
    aux_v = look([Entry(by_name[a], 0, 0) for a in symbol.list_auxiliary_states()])
    out_v = look(list(symbol._outputs))
    if not partial:
        unknown = [n for n, v in zip(arg_names + symbol.list_auxiliary_states(), arg_v + aux_v)
                   if v is None]
        if unknown:
            raise ValueError(f"infer_{kind}: cannot infer the {_WHAT[kind]} of {unknown}; give "
                             f"the {_WHAT[kind]} of at least one input of each operator node "
                             f"(or use infer_shape_partial)")
    return arg_v, out_v, aux_v

