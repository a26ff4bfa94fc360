"""Operator definitions: what MXNet registers for an operator (``NNVM_REGISTER_OP``), as data.

One :class:`OpDef` per operator, in a module of its own (:mod:`adamop.ops.adam`): its inputs and
the ones it mutates, its parameters (names, types, defaults: the only place they are listed),
shape/type/storage inference, the storage rule that picks a kernel path, and the rules of those
kernels. Both front ends are made from it: the imperative functions of :mod:`adamop.api` and the
graph builders of :mod:`adamop.sym`. A new operator is one new module that registers its OpDef.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .._arrays import FLOAT_DTYPES
from ..params import OpParams
from ..reference import PathRule

__all__ = ["OpDef", "register", "lookup", "OPS", "elementwise"]


def elementwise(op: "OpDef", node_name: str, what: str,
                slots: Sequence[tuple[str, Any]]) -> Any:
    """``ElemwiseShape``/``ElemwiseType``: every (label, value) slot holds one value.

    Returns the first known value (in input order, then the output), which the others are held
    to as in MXNet's ``ElemwiseAttr``; None if none is known. A disagreement raises a ValueError
    naming the node and the slot.
    """
    known = [(value, label) for label, value in slots if value is not None]
    if not known:
        return None
    ref, ref_label = known[0]
    for value, label in known[1:]:
        if value != ref:
            show = (lambda v: str(tuple(v))) if what == "shape" else str
            raise ValueError(f"Error in operator {node_name}: {label} has {what} {show(value)}, "
                             f"expected {show(ref)} (from {ref_label}); all inputs of {op.name} "
                             f"must share one {what}")
    return ref


@dataclass(frozen=True)
class OpDef:
    """One operator: MXNet's attribute table for it, plus the kernels' rules.

    Attributes:
        name: the operator's MXNet name (the ``op`` of its JSON nodes).
        inputs: input names, in order (``ListInputNames``).
        mutate_inputs: inputs written in place (``FMutateInputs``); graphs make them auxiliary
            states.
        params: the parsed-parameter class, made from the :class:`~adamop.params.Param`
            declarations (``AdamParam``).
        storage: the storage rule, ``(input storages, params or None) -> (kernel path, output
            storage)``; an unknown (None) storage or params leave the path None.
        paths: the rule of each kernel path (:class:`~adamop.reference.PathRule`).
        infer_shape, infer_type: ``(op, node name, what, [(label, value)]) -> value``.
        doc: one paragraph for the generated functions' docstrings.
        dtypes: the dtypes a role (an input, or ``"out"``) may have; a role not named may have
            any of float16/32/64.
        same_dtype: groups of roles that must share one dtype (default: every role).
        may_alias: pairs of roles that may be one and the same view (the kernels read each
            element of every input before they write it).
        kernels: the backend functions of the op's kernels: ``batch`` (contiguous dense updates
            by address), ``dense`` (one dense update of any layout), ``rows`` (row_sparse).
        compute_role: the role whose dtype the arithmetic is done in (the scalars' dtype).
    """

    name: str
    inputs: tuple[str, ...]
    mutate_inputs: tuple[int, ...]
    params: type[OpParams]
    storage: Callable[[Sequence[str | None], OpParams | None], tuple[str | None, str | None]]
    paths: Mapping[str, PathRule]
    doc: str = ""
    infer_shape: Callable[..., Any] = elementwise
    infer_type: Callable[..., Any] = elementwise
    num_outputs: int = 1
    dtypes: Mapping[str, tuple[np.dtype, ...]] = field(default_factory=dict)
    same_dtype: tuple[tuple[str, ...], ...] = ()
    may_alias: frozenset[tuple[str, str]] = frozenset()
    kernels: Mapping[str, str] = field(default_factory=lambda: dict(
        batch="adam_dense_batch", dense="adam_dense", rows="adam_rows"))
    compute_role: str = "weight"

    @property
    def roles(self) -> tuple[str, ...]:
        """The arrays of one update: the inputs, then ``out`` (the new weight)."""
        return self.inputs + ("out",)

    @property
    def written(self) -> tuple[str, ...]:
        """The roles the kernels write: the mutated inputs and ``out``."""
        return tuple(self.inputs[i] for i in self.mutate_inputs) + ("out",)

    def dtype_groups(self) -> tuple[tuple[str, ...], ...]:
        return self.same_dtype or (self.roles,)

    def allowed_dtypes(self, role: str) -> tuple[np.dtype, ...]:
        return self.dtypes.get(role, FLOAT_DTYPES)

    def parse(self, attrs: Mapping[str, Any], node_name: str) -> OpParams:
        """Parse a graph node's attributes (``__key__`` ones are stored but ignored)."""
        try:
            return self.params.from_kwargs(attrs, op_name=node_name, allow_dunder=True)
        except (TypeError, ValueError) as exc:
            text = str(exc)
            if text.startswith(f"{node_name}: "):     # from_kwargs names the node itself
                text = text[len(node_name) + 2:]
            raise type(exc)(f"node {node_name!r} ({self.name}): {text}") from None

    @property
    def param_names(self) -> tuple[str, ...]:
        return self.params.names


OPS: dict[str, OpDef] = {}


def register(op: OpDef) -> OpDef:
    if op.name in OPS:
        raise ValueError(f"an operator named {op.name!r} is already registered")
    OPS[op.name] = op
    return op


def lookup(op: Any, node_name: str) -> OpDef:
    """The OpDef of ``op``, or a ValueError that names the operator and the node."""
    try:
        return OPS[op]
    except (KeyError, TypeError):
        raise ValueError(f"node {node_name!r} uses operator {op!r}, which adamop does not "
                         f"implement (adamop implements: {', '.join(OPS)}); remove that node "
                         f"from the graph or run it with MXNet") from None


from . import adam as _adam  # noqa: E402,F401  (registers adam_update)
