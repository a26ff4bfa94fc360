"""The graph as data: nodes, entries, topological order, and the ``Symbol`` over them.

A graph is nnvm's: a :class:`Node` is an operator (or a variable, ``op is None``) with a name,
string attributes and input entries ``(node, index, version)``. A :class:`Symbol` is a list of
output entries (a ``Group`` has several). Nodes are shared between symbols, as in MXNet, and a
variable counts how often it has been mutated (the ``version`` written into the JSON).
"""
from __future__ import annotations

from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np

from .ops import OpDef

__all__ = ["Node", "Entry", "Symbol", "topo_order", "DTYPE_FLAGS", "STYPE_IDS"]

# MXNet's type flags (mshadow) and storage ids, as written into __dtype__ / __storage_type__.
DTYPE_FLAGS = {np.dtype(np.float32): 0, np.dtype(np.float64): 1, np.dtype(np.float16): 2,
               np.dtype(np.uint8): 3, np.dtype(np.int32): 4, np.dtype(np.int8): 5,
               np.dtype(np.int64): 6, np.dtype(np.bool_): 7}
STYPE_IDS = {"default": 0, "row_sparse": 1, "csr": 2}
# list_attr() also reports these __key__ attributes without the underscores, as MXNet's C API does.
_HIDDEN_KEYS = ("ctx_group", "lr_mult", "wd_mult", "force_mirroring", "mirror_stage",
                "profiler_scope")


class Node:
    """A graph node: an operator application, or a variable (``op is None``)."""

    __slots__ = ("op", "name", "attrs", "inputs", "params", "version")

    def __init__(self, op: OpDef | None, name: str, attrs: dict[str, str],
                 inputs: Sequence["Entry"] = (), params: Any = None):
        self.op, self.name, self.attrs = op, name, dict(attrs)
        self.inputs, self.params = tuple(inputs), params
        self.version = 0          # variables: how many times an op has mutated it

    @property
    def is_variable(self) -> bool:
        return self.op is None

    def __repr__(self) -> str:
        return f"Node({'null' if self.op is None else self.op.name}, {self.name!r})"


class Entry(NamedTuple):
    """One input or output edge: output ``index`` of ``node``, at variable ``version``."""

    node: Node
    index: int
    version: int


def topo_order(heads: Sequence[Entry]) -> list[Node]:
    """nnvm's DFS post-order from the heads (inputs in order): the JSON node order."""
    order: list[Node] = []
    seen: set[int] = set()
    for head in heads:
        stack = [(head.node, 0)]
        while stack:
            node, i = stack.pop()
            if i == 0 and id(node) in seen:
                continue
            seen.add(id(node))
            if i < len(node.inputs):
                stack.append((node, i + 1))
                child = node.inputs[i].node
                if id(child) not in seen:
                    stack.append((child, 0))
            else:
                order.append(node)
    return order


class Symbol:
    """A graph with one output (a variable or an ``adam_update`` node) or several (``Group``)."""

    def __init__(self, outputs: Sequence[Entry]):
        self._outputs = tuple(outputs)

    # ---- structure ---------------------------------------------------------------------------
    @property
    def name(self) -> str | None:
        """The node's name; ``None`` for a group of several outputs."""
        return self._outputs[0].node.name if len(self._outputs) == 1 else None

    def _nodes(self) -> list[Node]:
        return topo_order(self._outputs)

    def _aux_nodes(self) -> set[int]:
        return {id(n.inputs[i].node) for n in self._nodes() if n.op is not None
                for i in n.op.mutate_inputs}

    def _variables(self, kind: str) -> list[Node]:
        aux = self._aux_nodes()
        return [n for n in self._nodes() if n.is_variable
                and (kind == "all" or (id(n) in aux) == (kind == "aux"))]

    def list_arguments(self) -> list[str]:
        """Variables the graph reads (weights and grads), in graph order."""
        return [n.name for n in self._variables("args")]

    def list_auxiliary_states(self) -> list[str]:
        """Variables an op mutates in place (mean and var), in graph order."""
        return [n.name for n in self._variables("aux")]

    def list_inputs(self) -> list[str]:
        """Every variable, in graph order."""
        return [n.name for n in self._variables("all")]

    def list_outputs(self) -> list[str]:
        """``<name>_output`` for an op, the variable's name for a variable."""
        return [e.node.name if e.node.is_variable else f"{e.node.name}_output"
                for e in self._outputs]

    def attr(self, key: str) -> str | None:
        """The attribute ``key`` of this (single-output) symbol's node, or None."""
        if len(self._outputs) != 1:
            return None
        return self._outputs[0].node.attrs.get(key)

    def list_attr(self) -> dict[str, str]:
        """The node's attributes (``{}`` for a group); some hidden ``__k__`` keys also as ``k``."""
        if len(self._outputs) != 1:
            return {}
        attrs = dict(self._outputs[0].node.attrs)
        for key in _HIDDEN_KEYS:
            if f"__{key}__" in attrs:
                attrs[key] = attrs[f"__{key}__"]
        return attrs

    def get_internals(self) -> "Symbol":
        """A group of every node's output, in graph order."""
        return Symbol([Entry(n, 0, 0) for n in self._nodes()])

    def get_children(self) -> "Symbol | None":
        """The inputs of this symbol's node(s) as a group; None for a variable."""
        inputs = [e for out in self._outputs for e in out.node.inputs]
        return Symbol(inputs) if inputs else None

    def __len__(self) -> int:
        return len(self._outputs)

    def __iter__(self) -> Iterator["Symbol"]:
        return (Symbol([e]) for e in self._outputs)

    def __getitem__(self, index: int | str) -> "Symbol":
        if isinstance(index, str):
            names = self.list_outputs()
            if index not in names:
                raise ValueError(f"no output named {index!r}; outputs are {names}")
            index = names.index(index)
        return Symbol([self._outputs[index]])

    def __repr__(self) -> str:
        if len(self._outputs) == 1:
            return f"<Symbol {self.name}>"
        return f"<Symbol group [{', '.join(self.list_outputs())}]>"

    # ---- inference, JSON, execution (implemented in their own modules) -----------------------
    def infer_shape(self, *args: Any, **kwargs: Any) -> tuple[list, list, list]:
        """``(arg_shapes, out_shapes, aux_shapes)`` from the shapes given (by name or in
        ``list_arguments()`` order). One input of a node is enough; a conflict raises a
        ValueError naming the node and the input; a shape that stays unknown raises too."""
        from .infer import infer
        return infer(self, "shape", args, kwargs, partial=False)

    def infer_shape_partial(self, *args: Any, **kwargs: Any) -> tuple[list, list, list]:
        """Like :meth:`infer_shape`, with ``None`` for the shapes that cannot be inferred."""
        from .infer import infer
        return infer(self, "shape", args, kwargs, partial=True)

    def infer_type(self, *args: Any, **kwargs: Any) -> tuple[list, list, list]:
        """``(arg_types, out_types, aux_types)`` as numpy scalar types, like :meth:`infer_shape`."""
        from .infer import infer
        return infer(self, "dtype", args, kwargs, partial=False)

    def infer_storage_type(self, *args: Any, **kwargs: Any) -> tuple[list, list, list]:
        """``(arg_stypes, out_stypes, aux_stypes)``; inputs not given are ``'default'``. The new
        weight takes the weight's storage type (SPEC B §3)."""
        from .infer import infer
        return infer(self, "stype", args, kwargs, partial=False)

    def tojson(self) -> str:
        """The graph as MXNet 1.9.1's ``Symbol.tojson()`` writes it, character for character."""
        from .json_io import to_json
        return to_json(self)

    def save(self, path: str) -> None:
        """Write :meth:`tojson` to ``path`` (``adamop.sym.load`` and ``mx.sym.load`` read it).

        The text is made and checked first, and the file is replaced atomically: a graph that
        cannot be written (a name holding a NUL or a lone surrogate) raises ValueError and leaves
        an existing file as it was.
        """
        from .._files import write_atomically
        write_atomically(path, self.tojson().encode("utf-8"))

    def bind(self, args: Any, aux_states: Any = None, *, backend: str | None = None):
        """An :class:`~adamop.sym.executor.Executor` over the given arrays (see there)."""
        from .executor import Executor
        return Executor(self, args, aux_states, backend=backend)

    def eval(self, *, backend: str | None = None, **arrays: Any) -> list:
        """Bind every input by name, run once and return the outputs (mean/var change in place)."""
        args = {k: arrays.pop(k) for k in self.list_arguments() if k in arrays}
        aux = {k: arrays.pop(k) for k in self.list_auxiliary_states() if k in arrays}
        if arrays:
            raise ValueError(f"eval got arrays for {sorted(arrays)}, which are not inputs of "
                             f"this graph; its inputs are {self.list_inputs()}")
        return self.bind(args, aux, backend=backend).forward()
