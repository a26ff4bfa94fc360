"""``Symbol.bind`` -> :class:`Executor`: an interpreter that runs a graph through update plans.

The executor never does arithmetic itself. It splits the graph's nodes into batches of
independent updates and runs each batch through its own :class:`~adamop.planner.Planner` (the
validation, storage dispatch and backends of the imperative call), so every dense update of a
device goes to the backend's batched kernel in one call, and a repeated ``forward()`` with the
same bound arrays is re-checked in bulk, not validated again. A ``Group`` over a whole model is
one such batch; only a node that reads another node's output, or touches a variable that another
node of the batch mutates, waits for a later batch.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .. import _arrays, validate
from ..planner import Planner
from ..storage import RowSparseArray
from .graph import Entry, Node, topo_order, variables

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

    def __init__(self, symbol: Any, args: Any, aux_states: Any = None, *,
                 backend: str | None = None):
        self._heads, self._output_names = symbol._outputs, symbol.list_outputs()
        self._backend = backend
        arg_names = [n.name for n in variables(self._heads, "args")]
        aux_names = [n.name for n in variables(self._heads, "aux")]
        all_names = arg_names + aux_names
        dup = sorted({n for n in all_names if all_names.count(n) > 1})
        if dup:
            raise ValueError(f"bind: several variables are named {dup}; arrays are bound by "
                             f"name, so give every variable its own name")
        self.arg_dict = _gather("args", args, arg_names, aux_names, "aux_states")
        self.aux_dict = _gather("aux_states", aux_states, aux_names, arg_names, "args")
        nodes = topo_order(self._heads)
        self._variables = [n for n in nodes if n.is_variable]
        self._ops = [n for n in nodes if not n.is_variable]
        self._batches = _batches(self._ops)
        self._planners = [Planner(b[0].op) for b in self._batches]
        # Nodes given the same parameter strings share one parsed set, so a backend sees one set
        # of scalars for a whole model, not one per node.
        shared: dict[tuple, Any] = {}
        self._params = [[shared.setdefault((n.op.name, tuple(sorted(n.params.given.items()))),
                                           n.params) for n in batch] for batch in self._batches]
        self._params = [each[0] if all(p is each[0] for p in each) else each
                        for each in self._params]
        # Validate every node now (nothing is written) and give each its output array.
        self._buffers: dict[tuple[int, int], Any] = {}
        env = self._env(self.arg_dict, self.aux_dict)
        for n in self._ops:
            validate.validate(n.op, 0, [env[_key(e)] for e in n.inputs], n.params,
                              prefix=f"{n.name}.")
            self._buffers[(id(n), 0)] = env[(id(n), 0)] = _zeros_output(env[_key(n.inputs[0])])
        self._columns = self._make_columns(env)
        self._outputs = [env[_key(e)] for e in self._heads]
        self._bound = self._bound_ids()

    def _bound_ids(self) -> tuple:
        """Which arrays are bound (arg_dict and aux_dict may be assigned to between runs)."""
        return (tuple(map(id, self.arg_dict.values())), tuple(map(id, self.aux_dict.values())))

    @property
    def arg_arrays(self) -> list[Any]:
        return list(self.arg_dict.values())

    @property
    def aux_arrays(self) -> list[Any]:
        return list(self.aux_dict.values())

    @property
    def outputs(self) -> list[Any]:
        """The output arrays, in ``list_outputs()`` order (the same arrays after every forward)."""
        return list(self._outputs)

    @property
    def output_dict(self) -> dict[str, Any]:
        return dict(zip(self._output_names, self.outputs))

    def _env(self, args: Mapping[str, Any], aux: Mapping[str, Any]) -> dict:
        bound = {**args, **aux}
        env = {(id(n), 0): bound[n.name] for n in self._variables}
        env.update(self._buffers)
        return env

    def _make_columns(self, env: dict) -> list[list[list[Any]]]:
        """Each batch's (weights, grads, means, vars, outs), from a binding."""
        return [[[env[_key(n.inputs[k])] for n in batch] for k in range(4)]
                + [[self._buffers[(id(n), 0)] for n in batch]] for batch in self._batches]

    def forward(self, is_train: bool = False, **arrays: Any) -> list[Any]:
        """Run the graph once and return :attr:`outputs`.

        Keyword arrays are copied into the bound arrays of those names first (a new grad each
        training step, as MXNet's ``forward(**kwargs)``); an array that cannot be copied into the
        bound one (a row_sparse array, or another kind) replaces it. Every keyword array, and the
        graph with its replacements, is checked before anything is copied or written: a bad one
        leaves the executor and every array as they were. ``is_train`` is accepted for MXNet
        compatibility and ignored.
        """
        copies, args, aux = self._check_feeds(arrays)
        if args is None and self._bound != self._bound_ids():
            # an entry of arg_dict or aux_dict was replaced since the last run: rebind
            args, aux = dict(self.arg_dict), dict(self.aux_dict)
        if args is not None:   # a replacement: the new binding must validate as a whole
            env = self._env(args, aux)
            for n in self._ops:
                validate.validate(n.op, 0, [env[_key(e)] for e in n.inputs], n.params,
                                  self._buffers[(id(n), 0)], prefix=f"{n.name}.")
            columns, outputs = self._make_columns(env), [env[_key(e)] for e in self._heads]
        else:
            columns, outputs = self._columns, self._outputs
        for bound, value in copies:
            if isinstance(bound, np.ndarray):
                np.copyto(bound, value)
            else:
                bound.copy_(value)
        if args is not None:
            self.arg_dict, self.aux_dict = args, aux
            self._columns, self._outputs = columns, outputs
            self._bound = self._bound_ids()
        for planner, cols, params, batch in zip(self._planners, columns, self._params,
                                                self._batches):
            planner.run(cols, params, self._backend, prefix=lambda t, b=batch: f"{b[t].name}.")
        return self.outputs

    def _check_feeds(self, arrays: Mapping[str, Any]) -> tuple[list, dict | None, dict | None]:
        """(copies to make, new arg_dict, new aux_dict): the dicts are None when nothing is
        replaced. Raises before anything is changed."""
        copies: list[tuple[Any, Any]] = []
        args, aux = dict(self.arg_dict), dict(self.aux_dict)
        replaced = False
        for name, value in arrays.items():
            table = args if name in args else aux if name in aux else None
            if table is None:
                raise ValueError(f"forward: {name!r} is not bound; bound names are "
                                 f"{list(self.arg_dict) + list(self.aux_dict)}")
            old = table[name]
            lib = _arrays.library(value)
            if (lib is not None and lib == _arrays.library(old)
                    and not isinstance(old, RowSparseArray)):
                if (tuple(value.shape) != tuple(old.shape) or value.dtype != old.dtype
                        or _arrays.device(value) != _arrays.device(old)):
                    raise ValueError(f"forward: {name} is bound to an array of shape "
                                     f"{tuple(old.shape)} and dtype {old.dtype} on "
                                     f"{_arrays.device(old)}, got shape {tuple(value.shape)} and "
                                     f"dtype {value.dtype} on {_arrays.device(value)}; pass an "
                                     f"array like the bound one")
                copies.append((old, value))
            else:
                table[name], replaced = value, True
        return (copies, args, aux) if replaced else (copies, None, None)

    def __repr__(self) -> str:
        return (f"<Executor of {len(self._ops)} nodes in {len(self._batches)} batch(es): "
                f"{', '.join(self._output_names)}>")
