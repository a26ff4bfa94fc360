"""Building graphs: ``var``, the operators (``adam_update``) and ``Group``, with MXNet's names and
attributes. An operator's builder is made from its definition (:mod:`adamop.ops`)."""
from __future__ import annotations

import inspect
import itertools
from collections import defaultdict
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .. import _arrays
from ..ops import OpDef
from ..ops.adam import ADAM_UPDATE
from .graph import DTYPE_FLAGS, STYPE_IDS, Entry, Node
from .json_io import check_text
from .symbol import Symbol

__all__ = ["var", "adam_update", "Group", "compose", "make_builder"]

_name_counters: dict[str, Iterator[int]] = defaultdict(itertools.count)


def _default_name(hint: str) -> str:
    """MXNet's NameManager: ``adam_update0``, ``adam_update1``, ... per process."""
    return f"{hint}{next(_name_counters[hint])}"


def _attr_dict(attr: Any, what: str) -> dict[str, str]:
    if attr is None:
        return {}
    if not isinstance(attr, dict):
        raise TypeError(f"{what}: attr must be a dict of str -> str, got {type(attr).__name__}")
    return {str(k): str(v) for k, v in attr.items()}


def _is_dunder(key: str) -> bool:
    return len(key) > 4 and key.startswith("__") and key.endswith("__")


def _shape_text(shape: Any, name: str) -> str:
    """``__shape__`` as MXNet writes it (``str(shape)``: ``5``, ``[2, 3]``, ``(2, 3)``), from
    validated non-negative ints (0 is an unknown size, as in MXNet)."""
    hint = "pass a tuple of non-negative integers, e.g. shape=(3, 4)"
    single = _arrays.as_integer(shape)
    try:
        items = [shape] if single is not None else list(shape)
    except TypeError:
        raise TypeError(f"var {name!r}: shape must be an integer or a sequence of integers, got "
                        f"{type(shape).__name__} {shape!r}; {hint}") from None
    dims = [_arrays.as_integer(d) for d in items]
    for d, dim in zip(items, dims):
        if dim is None:
            raise TypeError(f"var {name!r}: shape {shape!r} holds {d!r}, a {type(d).__name__}, "
                            f"not an integer; {hint}")
    if any(d < 0 for d in dims):
        raise ValueError(f"var {name!r}: shape {tuple(dims)} has a negative size; {hint}")
    if single is not None:
        return str(single)
    return str(dims) if isinstance(shape, list) else str(tuple(dims))


def var(name: str, *, attr: dict | None = None, shape: Sequence[int] | int | None = None,
        dtype: Any = None, stype: str | None = None, lr_mult: float | None = None,
        wd_mult: float | None = None, init: str | None = None, **kwargs: Any) -> Symbol:
    """A variable, with MXNet's attributes: ``shape`` -> ``__shape__`` (an integer is a 1-D
    shape), ``dtype`` -> ``__dtype__`` (MXNet's type flag), ``stype`` -> ``__storage_type__``,
    ``lr_mult``/``wd_mult`` -> ``__lr_mult__``/``__wd_mult__``; extra keywords must look like
    ``__key__``. Text a symbol file cannot hold (a NUL, a lone surrogate) raises ValueError.

    Examples:
        >>> import adamop
        >>> w = adamop.sym.var("w", shape=(3, 4), dtype="float32")
        >>> w.list_attr()
        {'__shape__': '(3, 4)', '__dtype__': '0'}
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"var: name must be a non-empty str, got {name!r}")
    check_text(name, "var: name")
    attrs = _attr_dict(attr, f"var {name!r}")
    if shape is not None:
        attrs["__shape__"] = _shape_text(shape, name)
    if lr_mult is not None:
        attrs["__lr_mult__"] = str(lr_mult)
    if wd_mult is not None:
        attrs["__wd_mult__"] = str(wd_mult)
    if dtype is not None:
        dt = np.dtype(dtype)
        if dt not in DTYPE_FLAGS:
            raise TypeError(f"var {name!r}: dtype {dt} has no MXNet type flag; use float16, "
                            f"float32 or float64")
        attrs["__dtype__"] = str(DTYPE_FLAGS[dt])
    if init is not None:
        attrs["__init__"] = str(init)
    if stype is not None:
        if stype not in STYPE_IDS:
            raise ValueError(f"var {name!r}: stype {stype!r} is not one of {list(STYPE_IDS)}")
        attrs["__storage_type__"] = str(STYPE_IDS[stype])
    for key, value in kwargs.items():
        if not _is_dunder(key):
            raise ValueError(f"var {name!r}: attribute {key!r} is not supported; additional "
                             f"attributes must start and end with double underscores, e.g. "
                             f"__{key}__")
        attrs[key] = str(value)
    for key, value in attrs.items():
        check_text(key, f"var {name!r}: attribute name")
        check_text(value, f"var {name!r}: attribute {key!r}")
    return Symbol([Entry(Node(None, name, attrs), 0, 0)])


def _single_entry(op: OpDef, x: Any, input_name: str, node_name: str) -> Entry:
    if not isinstance(x, Symbol):
        raise TypeError(f"{op.name} {node_name!r}: input {input_name} must be an "
                        f"adamop.sym Symbol (e.g. adamop.sym.var({input_name!r})), got "
                        f"{type(x).__name__}")
    if len(x) != 1:
        raise ValueError(f"{op.name} {node_name!r}: input {input_name} is a group of {len(x)} "
                         f"outputs; pass one of them (group[i])")
    return x._outputs[0]


def compose(op: OpDef, inputs: Sequence[Symbol], attrs: dict[str, str], name: str) -> Symbol:
    """Apply ``op`` to ``inputs`` (nnvm's Compose): parse parameters, bump mutated versions."""
    entries = [_single_entry(op, x, n, name) for x, n in zip(inputs, op.inputs)]
    params = op.parse(attrs, name)          # a bad value fails here, not at run time
    for i in op.mutate_inputs:
        if not entries[i].node.is_variable:
            raise ValueError(f"{op.name} {name!r}: input {op.inputs[i]} is mutated in place, so "
                             f"it must be a variable (adamop.sym.var), not the output of "
                             f"{entries[i].node.name!r}")
    # every variable input carries the variable's current version; a mutation bumps it first
    out = [Entry(e.node, e.index, e.node.version) if e.node.is_variable else e for e in entries]
    for i in op.mutate_inputs:
        node = out[i].node
        node.version += 1
        out[i] = Entry(node, out[i].index, node.version)
    return Symbol([Entry(Node(op, name, attrs, out, params), 0, 0)])


def make_builder(op: OpDef) -> Callable[..., Symbol]:
    """The graph builder of ``op`` (what ``mx.sym.<op>`` is): the inputs as symbols, the
    parameters as keywords; only the parameters given are stored, as ``str(value)``."""

    def build(*inputs: Symbol, name: str | None = None, attr: dict | None = None,
              **kwargs: Any) -> Symbol:
        if len(inputs) != len(op.inputs):
            raise TypeError(f"{op.name} takes the inputs {', '.join(op.inputs)} as positional "
                            f"arguments, got {len(inputs)}")
        node_name = _default_name(op.name) if name is None else name
        if not isinstance(node_name, str) or not node_name:
            raise TypeError(f"{op.name}: name must be a non-empty str, got {name!r}")
        attrs = _attr_dict(attr, f"{op.name} {node_name!r}")
        for key, value in kwargs.items():
            if value is not None:
                attrs[key] = str(value)
        return compose(op, inputs, attrs, node_name)

    P = inspect.Parameter
    build.__signature__ = inspect.Signature(
        [P(n, P.POSITIONAL_OR_KEYWORD) for n in op.inputs]
        + [P(p.name, P.KEYWORD_ONLY, default=None) for p in op.params.spec]
        + [P("name", P.KEYWORD_ONLY, default=None), P("attr", P.KEYWORD_ONLY, default=None),
           P("kwargs", P.VAR_KEYWORD)])
    build.__name__ = op.name
    return build


adam_update = make_builder(ADAM_UPDATE)
adam_update.__module__ = __name__
adam_update.__doc__ = """\
    An ``adam_update`` node (what ``mx.sym.adam_update`` should build: mxnet#5045).

    Only the parameters given are stored, as ``str(value)``; ``__key__`` keywords and ``attr``
    entries are stored on the node and ignored by the op. ``name`` defaults to
    ``adam_update<N>``. Parameters are parsed now, so a bad value fails here.

    Examples:
        >>> import adamop
        >>> w, g, m, v = (adamop.sym.var(n) for n in ("w", "g", "m", "v"))
        >>> s = adamop.sym.adam_update(w, g, m, v, lr=0.01, wd=1e-3, name="adam0")
        >>> s.list_arguments(), s.list_auxiliary_states(), s.list_outputs()
        (['w', 'g'], ['m', 'v'], ['adam0_output'])
        >>> s.list_attr()
        {'lr': '0.01', 'wd': '0.001'}
    """


def Group(symbols: Sequence[Symbol]) -> Symbol:  # noqa: N802 (MXNet's name)
    """One symbol whose outputs are the outputs of ``symbols``, in order."""
    if isinstance(symbols, Symbol) or not isinstance(symbols, (list, tuple)) or not symbols:
        raise TypeError("Group expects a non-empty list of adamop.sym Symbols")
    for i, s in enumerate(symbols):
        if not isinstance(s, Symbol):
            raise TypeError(f"Group: item {i} is a {type(s).__name__}, expected an adamop.sym "
                            f"Symbol")
    return Symbol([e for s in symbols for e in s._outputs])
