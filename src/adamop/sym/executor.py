"""``Symbol.bind`` -> :class:`Executor`: an interpreter that runs a graph through ``adamop.api``.

The executor never does arithmetic itself. ``forward()`` walks the graph, hands every node to
``adamop.api.update_batch`` (the same validation and storage dispatch as the imperative call,
the engine of ``adam_update_multi``) one batch of nodes at a time, which gives every dense update
of a device to the backend's batched kernel in one call. A ``Group`` over a whole model is one such
batch; only a node that reads another node's output, or touches a variable that another node of
the batch mutates, waits for a later batch.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .. import _arrays
from ..api import prepare, update_batch
from ..storage import RowSparseArray
from .graph import Entry, Node, Symbol

__all__ = ["Executor"]


def _key(e: Entry) -> tuple[int, int]:
    return id(e.node), e.index


def _batches(ops: Sequence[Node]) -> list[list[Node]]:
    """Split op nodes (in graph order) into batches whose members are independent."""
    batches: list[list[Node]] = []
    current: list[Node] = []
    in_batch: set[int] = set()
    used: set[int] = set()
    mutated: set[int] = set()
    for n in ops:
        ids = {id(e.node) for e in n.inputs}
        writes = {id(n.inputs[i].node) for i in n.op.mutate_inputs}
        if current and (ids & in_batch or writes & used or ids & mutated):
            batches.append(current)
            current, in_batch, used, mutated = [], set(), set(), set()
        current.append(n)
        in_batch.add(id(n))
        used |= ids
        mutated |= writes
    if current:
        batches.append(current)
    return batches


def _zeros_output(weight: Any) -> Any:
    """A zero-filled array for a node's new weight: separate from every input, as in MXNet."""
    if isinstance(weight, RowSparseArray):
        full = _fill_zero(_empty(weight.shape, weight.data))
        return RowSparseArray(full, _arrays.arange_like(weight.shape[0], full), weight.shape)
    return _fill_zero(_arrays.empty_like(weight))


def _empty(shape: tuple, like: Any) -> Any:
    if isinstance(like, np.ndarray):
        return np.empty(shape, dtype=like.dtype)
    import torch
    return torch.empty(shape, dtype=like.dtype, device=like.device)


def _fill_zero(x: Any) -> Any:
    x[...] = 0
    return x


def _gather(what: str, given: Any, names: list[str], others: list[str],
            other_what: str) -> dict[str, Any]:
    """Arrays by name from a dict, or from a list in ``names`` order."""
    if given is None:
        given = {}
    if isinstance(given, (list, tuple)):
        if len(given) != len(names):
            raise ValueError(f"bind: {what} has {len(given)} arrays but the graph has "
                             f"{len(names)}: {names}; pass one per name, in this order")
        return dict(zip(names, given))
    if not isinstance(given, Mapping):
        raise TypeError(f"bind: {what} must be a dict (name -> array) or a list, got "
                        f"{type(given).__name__}")
    for key in given:
        if key not in names:
            hint = (f"it is one of {other_what}; pass it there" if key in others
                    else f"expected names: {names}")
            raise ValueError(f"bind: {what} has an array for {key!r}, which is not one of "
                             f"{what}; {hint}")
    missing = [n for n in names if n not in given]
    if missing:
        raise ValueError(f"bind: {what} lacks arrays for {missing}; the graph needs {names}")
    return {n: given[n] for n in names}


class Executor:
    """A graph bound to arrays. ``forward()`` updates the bound mean/var in place, writes each
    node's new weight into its own output array, and leaves the weight arguments unchanged.

    Attributes:
        arg_dict: name -> bound argument array (weights and grads).
        aux_dict: name -> bound auxiliary state (mean and var), updated by every ``forward()``.
    """

    def __init__(self, symbol: Symbol, args: Any, aux_states: Any = None, *,
                 backend: str | None = None):
        self._symbol, self._backend = symbol, backend
        arg_names, aux_names = symbol.list_arguments(), symbol.list_auxiliary_states()
        all_names = arg_names + aux_names
        dup = sorted({n for n in all_names if all_names.count(n) > 1})
        if dup:
            raise ValueError(f"bind: several variables are named {dup}; arrays are bound by "
                             f"name, so give every variable its own name")
        self.arg_dict = _gather("args", args, arg_names, aux_names, "aux_states")
        self.aux_dict = _gather("aux_states", aux_states, aux_names, arg_names, "args")
        nodes = symbol._nodes()
        self._variables = [n for n in nodes if n.is_variable]
        self._ops = [n for n in nodes if not n.is_variable]
        self._batches = _batches(self._ops)
        self._bound_ids: tuple | None = None
        self._cached: tuple[list[tuple], list[Any]] = ([], [])
        # Validate every node now (prepare writes nothing) and give each its output array.
        self._buffers: dict[tuple[int, int], Any] = {}
        env = self._env()
        for n in self._ops:
            prepare(*(env[_key(e)] for e in n.inputs), n.params, prefix=f"{n.name}.")
            self._buffers[(id(n), 0)] = env[(id(n), 0)] = _zeros_output(env[_key(n.inputs[0])])

    @property
    def arg_arrays(self) -> list[Any]:
        return list(self.arg_dict.values())

    @property
    def aux_arrays(self) -> list[Any]:
        return list(self.aux_dict.values())

    @property
    def outputs(self) -> list[Any]:
        """The output arrays, in ``list_outputs()`` order (the same arrays after every forward)."""
        return list(self._plan()[1])

    @property
    def output_dict(self) -> dict[str, Any]:
        return dict(zip(self._symbol.list_outputs(), self.outputs))

    def _env(self) -> dict[tuple[int, int], Any]:
        bound = {**self.arg_dict, **self.aux_dict}
        env = {(id(n), 0): bound[n.name] for n in self._variables}
        env.update(self._buffers)
        return env

    def forward(self, is_train: bool = False, **arrays: Any) -> list[Any]:
        """Run the graph once and return :attr:`outputs`.

        Keyword arrays are copied into the bound arrays of those names first (a new grad each
        training step, as MXNet's ``forward(**kwargs)``); a row_sparse array replaces the bound
        one. ``is_train`` is accepted for MXNet compatibility and ignored.
        """
        for name, value in arrays.items():
            self._feed(name, value)
        for batch in self._plan()[0]:
            update_batch(*batch, self._backend)
        return self.outputs

    def _plan(self) -> tuple[list[tuple], list[Any]]:
        """(``update_batch``'s arguments for each batch, the output arrays), rebuilt only when a
        bound array has been replaced: a whole model's graph has thousands of nodes (every array
        is still validated on every forward). Nodes given the same parameter strings share one
        parsed ``AdamParams``, so the backend sees one set of scalars, not one per node."""
        bound = (tuple(map(id, self.arg_dict.values())), tuple(map(id, self.aux_dict.values())))
        if bound != self._bound_ids:
            env = self._env()
            shared: dict[tuple, Any] = {}
            params = {id(n): shared.setdefault(tuple(sorted(n.params.given.items())), n.params)
                      for n in self._ops}
            self._cached = ([([tuple(env[_key(e)] for e in n.inputs) for n in batch],
                              [params[id(n)] for n in batch],
                              [self._buffers[(id(n), 0)] for n in batch],
                              [f"{n.name}." for n in batch]) for batch in self._batches],
                            [env[_key(e)] for e in self._symbol._outputs])
            self._bound_ids = bound
        return self._cached

    def _feed(self, name: str, value: Any) -> None:
        table = self.arg_dict if name in self.arg_dict else self.aux_dict
        if name not in table:
            raise ValueError(f"forward: {name!r} is not bound; bound names are "
                             f"{list(self.arg_dict) + list(self.aux_dict)}")
        old = table[name]
        dense = not isinstance(value, RowSparseArray) and not isinstance(old, RowSparseArray)
        if dense and _arrays.library(old) == _arrays.library(value) is not None:
            if tuple(value.shape) != tuple(old.shape) or value.dtype != old.dtype:
                raise ValueError(f"forward: {name} is bound to an array of shape "
                                 f"{tuple(old.shape)} and dtype {old.dtype}, got shape "
                                 f"{tuple(value.shape)} and dtype {value.dtype}; pass an array "
                                 f"like the bound one")
            if isinstance(old, np.ndarray):
                np.copyto(old, value)
            else:
                old.copy_(value)
        else:
            table[name] = value

    def __repr__(self) -> str:
        return (f"<Executor of {self._symbol!r}: {len(self._ops)} nodes in "
                f"{len(self._batches)} batch(es)>")
