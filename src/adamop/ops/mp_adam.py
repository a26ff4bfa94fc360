"""``mp_adam_update``: MXNet's multi-precision Adam step, fused (an adamop operator).

MXNet 1.9.1 has no ``mp_adam_update``: ``mx.optimizer.Adam(multi_precision=True)`` runs three
operations on a float16 weight (SPEC_TRAINING C.1): ``g32 = grad.astype(float32)``,
``adam_update(weight32, g32, mean, var, out=weight32)`` on the float32 master copy, then
``cast(weight32, float16, out=weight)``. This operator gives the same bits in one pass over memory
(read the grad, update the master copy, mean and var, write the float16 weight): MXNet's
multi-precision operators (``mp_sgd_update``) take the same inputs, with ``weight32`` last.

Dense storage only; a row_sparse multi-precision step is the three operations above.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .. import reference
from ..params import OpParams, make_params_class
from . import OpDef
from .adam import PARAMS

__all__ = ["MP_ADAM_UPDATE", "MPAdamParams"]

INPUTS = ("weight", "grad", "mean", "var", "weight32")
_F16, _F32 = np.dtype(np.float16), np.dtype(np.float32)

MPAdamParams = make_params_class("MPAdamParams", "mp_adam_update", PARAMS)


def storage(stypes: Sequence[str | None], params: OpParams | None
            ) -> tuple[str | None, str | None]:
    """Dense inputs run the fused kernel; nothing else is defined."""
    for name, st in zip(INPUTS, stypes):
        if st not in (None, "default"):
            raise TypeError(f"input {name} has storage {st}; mp_adam_update updates dense arrays "
                            f"only (for a row_sparse step, update the float32 master copy with "
                            f"adam_update and cast it back)")
    return ("dense" if None not in stypes else None), "default"


MP_ADAM_UPDATE = OpDef(
    name="mp_adam_update",
    inputs=INPUTS,
    mutate_inputs=(2, 3, 4),
    params=MPAdamParams,
    storage=storage,
    paths={"dense": reference.DENSE},
    dtypes={"weight": (_F16,), "out": (_F16,), "grad": (_F16, _F32), "mean": (_F32,),
            "var": (_F32,), "weight32": (_F32,)},
    same_dtype=(("weight", "out"), ("grad",), ("mean", "var", "weight32")),
    # the float16 weight is only written (the master copy is what is read)
    may_alias=frozenset({("weight", "grad"), ("weight", "out"), ("grad", "out")}),
    kernels=dict(batch="mp_adam_dense_batch", dense="mp_adam_dense"),
    compute_role="weight32",
    doc="MXNet's multi-precision Adam step (``mx.optimizer.Adam(multi_precision=True)`` on a "
        "float16 weight) in one pass: the float32 master copy ``weight32``, ``mean`` and ``var`` "
        "are updated in place with the grad widened to float32, and the new weight is the master "
        "copy rounded to float16 (nearest even), written into ``out``.",
)
