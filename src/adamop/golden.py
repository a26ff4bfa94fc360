"""Golden cases recorded from MXNet 1.9.1: loading them, and turning a case into the inputs MXNet
was given and the outputs it produced (``adamop check``, the tests and the GPU checks all use
this one reading of the golden layout, documented at the top of ``mxnet_golden.py``).

Two files hold cases: the development set (``tests/data/golden_dev.npz``: one array per name) and
the compact set shipped in the package (``adamop/data/check_cases.npz``: the same names, pooled
into one array per dtype and cut apart by ``meta_json["index"]``).
"""
from __future__ import annotations

import json
from contextlib import nullcontext
from importlib import resources
from typing import Any, Iterator

import numpy as np

from .storage import RowSparseArray

__all__ = ["load", "Case"]

_R = "row_sparse"


def load(path: Any = None) -> tuple[dict, dict[str, np.ndarray]]:
    """(the metadata: ``cases``, ``errors``, ...; ``<id>__<name>`` -> array) of a golden file;
    the shipped compact set without ``path``."""
    source = path if path is not None else resources.files("adamop") / "data" / "check_cases.npz"
    with resources.as_file(source) if path is None else nullcontext(path) as p:
        with np.load(p, allow_pickle=False) as z:
            meta = json.loads(str(z["meta_json"]))
            stored = {k: z[k] for k in z.files if k != "meta_json"}
    if "index" not in meta:
        return meta, stored
    arrays = {}
    for name, (dtype, offset, shape) in meta["index"].items():
        size = int(np.prod(shape, dtype=np.int64))
        arrays[name] = stored[dtype][offset:offset + size].reshape(shape)
    return meta, arrays


class Case:
    """One recorded case, its arrays built on ``device`` (NumPy for 'cpu', torch tensors
    elsewhere; ``torch=True`` gives torch tensors on the CPU too)."""

    def __init__(self, case: dict, arrays: dict[str, np.ndarray], device: str = "cpu",
                 *, torch: bool = False):
        self.case, self.id, self.arrays = case, case["id"], arrays
        self.device, self.torch = device, torch or device != "cpu"
        self.shape = tuple(case["shape"])

    @property
    def path(self) -> str:
        """The table column of a case: its kernel path, or 'optimizer' for a replayed run."""
        return "optimizer" if self.case["group"] == "optimizer" else self.case["path"]

    def has(self, name: str) -> bool:
        return f"{self.id}__{name}" in self.arrays

    def array(self, name: str) -> np.ndarray:
        """A fresh host copy of a recorded array."""
        return np.array(self.arrays[f"{self.id}__{name}"], copy=True)

    def wrap(self, x: np.ndarray) -> Any:
        if not self.torch:
            return x
        import torch
        return torch.from_numpy(x).to(self.device)

    def get(self, name: str, dtype: Any = None) -> Any:
        x = self.array(name)
        return self.wrap(x if dtype is None else x.astype(dtype))

    def storage(self, x: Any, stype: str, *, empty: bool = False) -> Any:
        """x as the generator handed it to MXNet: dense, row_sparse with every row, or (for
        ``state_empty_rsp``) row_sparse with no stored rows."""
        if stype != _R:
            return x
        if empty:
            dtype = x.dtype if isinstance(x, np.ndarray) else np.dtype(str(x.dtype)[6:])
            data = self.wrap(np.zeros((0,) + tuple(x.shape[1:]), dtype))
            return RowSparseArray(data, self.wrap(np.zeros(0, np.int64)), tuple(x.shape))
        return RowSparseArray.from_dense(x, all_rows=True)

    def grad(self, suffix: str, stype: str, dense: Any, dtype: Any = None) -> Any:
        if self.has(f"grad_indices{suffix}"):
            return RowSparseArray(self.get(f"grad_data{suffix}", dtype),
                                  self.get(f"grad_indices{suffix}"), self.shape)
        return self.storage(dense, stype)

    # ---- one update ----------------------------------------------------------------------
    def inputs(self) -> tuple[Any, Any, Any, Any]:
        """weight, grad, mean, var exactly as the generator handed them to MXNet."""
        st, empty = self.case["stype"], bool(self.case["extra"].get("state_empty_rsp"))
        weight = self.storage(self.get("weight"), st["weight"])
        grad = self.grad("", st["grad"], self.get("grad") if self.has("grad") else None)
        mean = self.storage(self.get("mean"), st["mean"], empty=empty)
        var = self.storage(self.get("var"), st["var"], empty=empty)
        return weight, grad, mean, var

    def expected(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """MXNet's new weight, mean and var; for unsorted grad indices, its outputs on the
        sorted input (adamop sorts them: SPEC A.5)."""
        suffix = "_out_sorted" if self.case["extra"].get("sorted_result_differs") else "_out"
        return tuple(self.array(k + suffix) for k in ("weight", "mean", "var"))

    # ---- an mx.optimizer.Adam run ---------------------------------------------------------
    @property
    def multi_precision(self) -> bool:
        return bool(self.case["extra"].get("multi_precision"))

    def optimizer_start(self) -> tuple[Any, Any, Any]:
        """(weight, mean, var) at the start of the run; with multi_precision the weight is the
        float32 master copy."""
        ex = self.case["extra"]
        master = self.get("weight", np.float32 if self.multi_precision else None)
        state_dtype = np.float32 if self.multi_precision else self.array("weight").dtype
        weight = self.storage(master, ex["weight_stype"])
        mean, var = (self.storage(self.wrap(np.zeros(self.shape, state_dtype)),
                                  ex["state_stype"], empty=bool(ex["state_empty_rsp"]))
                     for _ in range(2))
        return weight, mean, var

    def optimizer_steps(self) -> Iterator[tuple[Any, dict]]:
        """(grad, adam_update keywords) of each step, the grad as the op was handed it (float32
        for a multi_precision run)."""
        ex, grads = self.case["extra"], self.array("grads")
        dtype = np.float32 if self.multi_precision else None
        for t, kwargs in enumerate(ex["steps"]):
            dense = self.wrap(np.array(grads[t], dtype=dtype or grads.dtype))
            yield self.grad(f"_{t}", ex["grad_stype"], dense, dtype), kwargs

    def optimizer_expected(self) -> list[tuple[str, np.ndarray]]:
        """(name, MXNet's array) at the end of the run: weight (float16 if multi_precision),
        mean, var, and the master copy."""
        names = ["weight_out", "mean_out", "var_out"]
        if self.multi_precision:
            names.append("weight32_out")
        return [(n, self.array(n)) for n in names]
