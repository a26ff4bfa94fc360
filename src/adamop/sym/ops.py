"""The operator table of the symbolic API: what MXNet registers for ``adam_update``, as data.

One :class:`OpDef` per operator (MXNet's ``NNVM_REGISTER_OP`` attributes): its input names, which
inputs it mutates (those become auxiliary states), how its parameters are parsed, and its storage
rule. Shape and dtype inference are elementwise (``ElemwiseShape<4, 1>``/``ElemwiseType<4, 1>``)
and live in :mod:`adamop.sym.infer`. The arithmetic itself is not here: the executor runs the
same ``adamop.api.prepare``/``execute`` as the imperative call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

from ..params import AdamParams

__all__ = ["OpDef", "ADAM_UPDATE", "OPS", "lookup"]


def _adam_storage(node_name: str, stypes: list[str | None]) -> str | None:
    """``StdOptStorageType`` (SPEC B §3): the new weight takes the weight's storage type."""
    weight, _, mean, var = stypes
    for name, st in zip(("weight", "grad", "mean", "var"), stypes):
        if st == "csr":
            raise TypeError(f"Error in operator {node_name}: input {name} has storage csr, which "
                            f"adamop does not support; use default or row_sparse storage")
    if mean is not None and var is not None and mean != var:
        raise ValueError(f"Error in operator {node_name}: input mean has storage {mean} but var "
                         f"has {var}; the two states must share a storage type (MXNet: "
                         f"'Inconsistent storage types detected in state')")
    return weight


@dataclass(frozen=True)
class OpDef:
    """One operator: MXNet's attribute table for it."""

    name: str
    inputs: tuple[str, ...]
    mutate_inputs: tuple[int, ...]          # FMutateInputs: these inputs are auxiliary states
    parse_params: Callable[[Mapping[str, str], str], AdamParams]
    infer_storage: Callable[[str, list], str | None]
    num_outputs: int = 1


def _parse_adam(attrs: Mapping[str, str], node_name: str) -> AdamParams:
    """Parse a node's attributes (``__key__`` ones are stored but ignored by the op)."""
    try:
        return AdamParams.from_kwargs(attrs, op_name=node_name, allow_dunder=True)
    except (TypeError, ValueError) as exc:
        text = str(exc)
        if text.startswith(f"{node_name}: "):     # from_kwargs names the node itself
            text = text[len(node_name) + 2:]
        raise type(exc)(f"node {node_name!r} (adam_update): {text}") from None


ADAM_UPDATE = OpDef(name="adam_update", inputs=("weight", "grad", "mean", "var"),
                    mutate_inputs=(2, 3), parse_params=_parse_adam,
                    infer_storage=_adam_storage)

OPS: dict[str, OpDef] = {ADAM_UPDATE.name: ADAM_UPDATE}


def lookup(op: str, node_name: str) -> OpDef:
    """The OpDef of ``op``, or a ValueError that names the operator and the node."""
    try:
        return OPS[op]
    except (KeyError, TypeError):
        raise ValueError(f"node {node_name!r} uses operator {op!r}, which adamop does not "
                         f"implement (adamop implements: {', '.join(OPS)}); remove that node "
                         f"from the graph or run it with MXNet") from None
