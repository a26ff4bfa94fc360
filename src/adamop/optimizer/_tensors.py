"""The optimizer's array chores: states of a weight's kind, master copies, casts, contexts.

Arrays are NumPy arrays, torch tensors (CPU or CUDA) or ``RowSparseArray`` (over either); torch
is only touched when the caller's arrays are tensors. Storage, dtype and rounding follow MXNet
1.9.1: ``create_state`` zeros, ``astype(float32)`` master copies (row_sparse stays row_sparse),
and the float16 cast back, which rounds to nearest even in NumPy, torch and MXNet alike.
"""
from __future__ import annotations

import sys
from typing import Any

import numpy as np

from ..storage import RowSparseArray

__all__ = ["astype_float32", "cast_into", "check_grad", "check_weight", "describe", "device_id",
           "dtype_name", "for_op", "is_float16", "like", "zeros_state"]


def _is_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _dense(x: Any) -> Any:
    """The array holding x's values and dtype (a RowSparseArray's data)."""
    return x.data if isinstance(x, RowSparseArray) else x


def describe(x: Any) -> str:
    """What x is, for error messages."""
    if isinstance(x, np.ndarray):
        return f"numpy.ndarray {x.dtype} {x.shape}"
    if _is_tensor(x):
        return f"torch.Tensor {dtype_name(x)} {tuple(x.shape)} ({x.layout}) on {x.device}"
    if isinstance(x, RowSparseArray):
        return repr(x)
    return f"{type(x).__module__}.{type(x).__qualname__}"


def check_weight(x: Any) -> None:
    """A TypeError unless x can be a weight (NumPy, dense torch or RowSparseArray)."""
    if isinstance(x, (np.ndarray, RowSparseArray)):
        return
    if _is_tensor(x) and x.layout == sys.modules["torch"].strided:
        return
    raise TypeError(f"a weight must be a numpy.ndarray, a dense torch.Tensor or a RowSparseArray, "
                    f"got {describe(x)}; a sparse COO weight can be wrapped with "
                    f"RowSparseArray.from_torch(weight)")


_FLOAT16 = np.dtype(np.float16)


def is_float16(x: Any) -> bool:
    """Whether x holds float16 values (the weights multi-precision keeps master copies of)."""
    if type(x) is np.ndarray:   # the usual case, without a name lookup
        return x.dtype == _FLOAT16
    return dtype_name(x) == "float16"


def _where(x: Any) -> tuple[str, str]:
    """(library, device) of an array or a RowSparseArray."""
    d = _dense(x)
    if isinstance(d, np.ndarray):
        return "numpy", "cpu"
    return ("torch", str(d.device)) if _is_tensor(d) else (type(d).__name__, "")


def check_grad(index: Any, grad: Any, weight: Any) -> None:
    """A TypeError or ValueError unless ``grad`` is an array of the weight's shape, library and
    device: what the update checks, for a batch that runs after another has written."""
    if not (isinstance(grad, (np.ndarray, RowSparseArray)) or _is_tensor(grad)):
        raise TypeError(f"index {index!r}: the grad must be an array, got {describe(grad)}")
    if tuple(grad.shape) != tuple(weight.shape):
        raise ValueError(f"index {index!r}: the grad has shape {tuple(grad.shape)} but the weight "
                         f"{tuple(weight.shape)}; give a grad of the weight's shape")
    if _where(grad) != _where(weight):
        raise ValueError(f"index {index!r}: the grad is {describe(grad)} but the weight is "
                         f"{describe(weight)}; put both in one library, on one device")


def dtype_name(x: Any) -> str:
    """'float16', 'float32', ... for NumPy arrays, torch tensors and RowSparseArray alike."""
    d = _dense(x).dtype
    return d.name if isinstance(d, np.dtype) else str(d).replace("torch.", "")


def device_id(x: Any) -> int:
    """MXNet's ``context.device_id``: the CUDA device's index, 0 on the CPU (MXNet's cpu(0))."""
    d = _dense(x)
    if _is_tensor(d) and d.device.type != "cpu":
        return d.device.index or 0
    return 0


def _zeros(like: Any, shape: tuple) -> Any:
    if isinstance(like, np.ndarray):
        return np.zeros(shape, dtype=like.dtype)
    import torch
    return torch.zeros(shape, dtype=like.dtype, device=like.device)


def zeros_state(weight: Any, *, row_sparse: bool) -> Any:
    """Zeros of the weight's shape, dtype, library and device: ``mx.nd.zeros(..., stype)``.

    ``row_sparse``: a RowSparseArray weight's state stores no rows, as MXNet's row_sparse zeros
    (the update then stores every row); otherwise the state is dense."""
    check_weight(weight)
    if isinstance(weight, RowSparseArray):
        data = weight.data
        if row_sparse:
            empty_rows = _zeros(data, (0,) + weight.shape[1:])
            indices = (np.zeros(0, np.int64) if isinstance(data, np.ndarray)
                       else _zeros(data, (0,)).long())
            return RowSparseArray(empty_rows, indices, weight.shape)
        return _zeros(data, weight.shape)
    return _zeros(weight, tuple(weight.shape))


def astype_float32(x: Any) -> Any:
    """A float32 copy, in x's library, device and storage (MXNet's ``astype(float32)``)."""
    if isinstance(x, RowSparseArray):
        idx = x.indices.copy() if isinstance(x.indices, np.ndarray) else x.indices.clone()
        return RowSparseArray(astype_float32(x.data), idx, x.shape)
    if isinstance(x, np.ndarray):
        return x.astype(np.float32)
    if _is_tensor(x):
        import torch
        return x.detach().to(torch.float32, copy=True)
    raise TypeError(f"expected an array, got {describe(x)}")


def cast_into(weights: list, masters: list) -> None:
    """``mx.nd.cast(master, dtype=weight.dtype, out=weight)`` for each pair: round to nearest
    even (beyond float16's range: inf, silently, as MXNet).

    A row_sparse weight takes the rows of the result that hold a non-zero, as MXNet's storage
    fallback for ``cast`` writes them (an all-zero row, even of -0.0, is dropped)."""
    with np.errstate(over="ignore"):
        for weight, master in zip(weights, masters):
            if type(weight) is np.ndarray:
                np.copyto(weight, master, casting="unsafe")
            elif isinstance(weight, RowSparseArray):
                dense = master.todense() if isinstance(master, RowSparseArray) else master
                kept = RowSparseArray.from_dense(_cast(dense, weight.data))
                weight._set_rows(kept.data, kept.indices)
            else:
                import torch
                with torch.no_grad():
                    weight.copy_(master)


def for_op(grads: list) -> list:
    """The grads as ``adam_update_multi`` takes them: a torch sparse COO tensor (what
    ``nn.Embedding(sparse=True)`` makes) as the RowSparseArray it stands for."""
    if all(type(g) is np.ndarray for g in grads):   # the usual case, at C speed
        return grads
    return [RowSparseArray.from_torch(g) if _is_tensor(g) and g.layout != sys.modules[
        "torch"].strided else g for g in grads]


def _cast(x: Any, like: Any) -> Any:
    """x in like's dtype, a new array (round to nearest even)."""
    return x.astype(like.dtype) if isinstance(x, np.ndarray) else x.to(like.dtype)


def like(state: Any, weight: Any) -> Any:
    """MXNet's ``sync_state_context``: the state (arrays, nested in tuples or lists) moved to the
    weight's library and device; dtype and storage are kept. Arrays already there are returned
    as they are (no copy)."""
    if isinstance(state, (tuple, list)):
        moved = [like(s, weight) for s in state]
        return tuple(moved) if isinstance(state, tuple) else moved
    if isinstance(state, RowSparseArray):
        data, indices = _move(state.data, _dense(weight)), _move(state.indices, _dense(weight))
        if data is state.data and indices is state.indices:
            return state
        return RowSparseArray(data, indices, state.shape)
    if isinstance(state, np.ndarray) or _is_tensor(state):
        return _move(state, _dense(weight))
    return state


def _move(x: Any, target: Any) -> Any:
    """x in the library and on the device of target."""
    if isinstance(target, np.ndarray):
        return x if isinstance(x, np.ndarray) else x.detach().cpu().numpy()
    import torch
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    return x if x.device == target.device else x.to(target.device)
