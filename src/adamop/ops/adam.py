"""``adam_update``: MXNet 1.9.1's fused Adam step (``optimizer_op.cc``), as one operator definition.

The parameter declarations below are the only place the hyperparameters are listed: the
imperative and symbolic functions, their signatures, the parsing, the kernels' scalar packing
and the error messages all read them from here.
"""
from __future__ import annotations

from typing import Sequence

from .. import reference
from ..params import OpParams, Param, make_params_class
from . import OpDef, register

__all__ = ["ADAM_UPDATE", "AdamParams", "INPUTS"]

INPUTS = ("weight", "grad", "mean", "var")

# ``AdamParam`` in optimizer_op-inl.h, in its declaration order (which is also the order of the
# kernels' scalar vector, see Scalars).
PARAMS = (
    Param("lr", float, None, "learning rate (required)"),
    Param("beta1", float, "0.9", "decay rate of the first moment"),
    Param("beta2", float, "0.999", "decay rate of the second moment"),
    Param("epsilon", float, "1e-8", "added to sqrt(var) in the denominator"),
    Param("wd", float, "0", "weight decay, added to the gradient as wd * weight"),
    Param("rescale_grad", float, "1", "the gradient is multiplied by this first"),
    Param("clip_gradient", float, "-1",
          "clip the gradient to [-clip_gradient, clip_gradient] when >= 0 (0 clips to zero)"),
    Param("lazy_update", bool, "true",
          "with a row_sparse grad, update only the grad's rows (else every row decays)"),
)

AdamParams = make_params_class("AdamParams", "adam_update", PARAMS)


def storage(stypes: Sequence[str | None], params: OpParams | None
            ) -> tuple[str | None, str | None]:
    """``StdOptStorageType`` and the ``FComputeEx`` dispatch (SPEC B §3).

    Returns (kernel path, storage of the new weight): the path is ``'dense'``, ``'lazy'``,
    ``'std'`` or ``'fallback'`` (MXNet densifies the inputs, runs the dense kernel and stores the
    results back in each array's storage); the new weight takes the weight's storage.
    """
    weight, grad, mean, var = stypes
    for name, st in zip(INPUTS, stypes):
        if st == "csr":
            raise TypeError(f"input {name} has storage csr, which adamop does not support; use "
                            f"default or row_sparse storage")
    if mean is not None and var is not None and mean != var:
        raise ValueError(f"input mean has storage {mean} but var has {var}; the two states must "
                         f"share a storage type (MXNet: 'Inconsistent storage types detected in "
                         f"state')")
    if None in stypes or params is None:
        return None, weight
    row_kernel = "lazy" if params.lazy_update else "std"
    if weight == grad == mean == "default":
        return "dense", weight
    if grad == "row_sparse" and mean == weight:
        return row_kernel, weight          # dense weight/states, or all row_sparse
    if weight == grad == "row_sparse" and mean == "default":
        return "std", weight
    return "fallback", weight


ADAM_UPDATE = register(OpDef(
    name="adam_update",
    inputs=INPUTS,
    mutate_inputs=(2, 3),
    params=AdamParams,
    storage=storage,
    paths={"dense": reference.DENSE, "lazy": reference.LAZY, "std": reference.STD,
           "fallback": reference.DENSE},
    # out may be exactly any input (written last); weight and grad may be one array (both read)
    may_alias=frozenset({("weight", "grad"), ("weight", "out"), ("grad", "out"), ("mean", "out"),
                         ("var", "out")}),
    doc="MXNet 1.9.1's ``adam_update``: one fused Adam step, with MXNet's exact rounding. "
        "``mean`` and ``var`` are updated in place; the new weight is returned (written into "
        "``out`` when given). No bias correction (fold it into ``lr``: "
        ":func:`adamop.optimizer.bias_corrected_lr`).",
))
