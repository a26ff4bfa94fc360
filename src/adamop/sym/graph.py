"""The graph as data: nodes, entries and their order (what a ``Symbol`` is made of).

A graph is nnvm's: a :class:`Node` is an operator (or a variable, ``op is None``) with a name,
string attributes and input entries ``(node, index, version)``; a symbol is a list of output
entries, its heads (a ``Group`` has several). Nodes are shared between symbols, as in MXNet, and
a variable counts how often it has been mutated (the ``version`` written into the JSON).
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np

from ..ops import OpDef

__all__ = ["Node", "Entry", "topo_order", "variables", "DTYPE_FLAGS", "STYPE_IDS", "HIDDEN_KEYS"]

# MXNet's type flags (mshadow) and storage ids, as written into __dtype__ / __storage_type__.
DTYPE_FLAGS = {np.dtype(np.float32): 0, np.dtype(np.float64): 1, np.dtype(np.float16): 2,
               np.dtype(np.uint8): 3, np.dtype(np.int32): 4, np.dtype(np.int8): 5,
               np.dtype(np.int64): 6, np.dtype(np.bool_): 7}
STYPE_IDS = {"default": 0, "row_sparse": 1, "csr": 2}
# list_attr() also reports these __key__ attributes without the underscores, as MXNet's C API does.
HIDDEN_KEYS = ("ctx_group", "lr_mult", "wd_mult", "force_mirroring", "mirror_stage",
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


def variables(heads: Sequence[Entry], kind: str) -> list[Node]:
    """The variables of a graph in graph order: ``'args'`` (read), ``'aux'`` (mutated by an op:
    auxiliary states) or ``'all'``."""
    nodes = topo_order(heads)
    aux = {id(n.inputs[i].node) for n in nodes if n.op is not None for i in n.op.mutate_inputs}
    return [n for n in nodes if n.is_variable
            and (kind == "all" or (id(n) in aux) == (kind == "aux"))]
