"""What kind of array an input is, and a zero-copy NumPy view of CPU arrays.

PyTorch is never imported here: a tensor can only exist if its caller already imported torch.
"""
from __future__ import annotations

import sys
from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def is_torch_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def library(x: Any) -> str | None:
    """'numpy' or 'torch' for a supported dense array, else None."""
    if isinstance(x, np.ndarray):
        return "numpy"
    if is_torch_tensor(x):
        return "torch"
    return None


def torch_layout(x: Any) -> str:
    """'strided', 'sparse_coo', 'sparse_csr', ... for a torch tensor."""
    return str(x.layout).replace("torch.", "")


def device(x: Any) -> str:
    """'cpu' or the torch device type ('cuda', 'mps', ...)."""
    return x.device.type if is_torch_tensor(x) else "cpu"


def dtype(x: Any) -> np.dtype | str:
    """The NumPy dtype of an array; for a torch dtype NumPy lacks (bfloat16), its name."""
    if isinstance(x, np.ndarray):
        return x.dtype
    name = str(x.dtype).replace("torch.", "")
    try:
        return np.dtype(name)
    except TypeError:
        return name


def numpy_view(x: Any) -> np.ndarray:
    """The array itself, or a NumPy view sharing a CPU tensor's memory (no copy)."""
    if isinstance(x, np.ndarray):
        return x
    return x.detach().numpy()


class _Interface:
    """Carries an ``__array_interface__`` for :func:`address_view`."""

    def __init__(self, interface: dict) -> None:
        self.__array_interface__ = interface


def address_view(x: Any) -> np.ndarray:
    """A NumPy array with x's addresses, shape and strides, for overlap and aliasing checks.

    A NumPy array or CPU tensor gives its (zero-copy) NumPy view. A device tensor gives an array
    that only *describes* its addresses: NumPy's overlap tests read addresses, never elements,
    and nothing may read this array (the memory is on the device).
    """
    if isinstance(x, np.ndarray):
        return x
    if x.device.type == "cpu":
        return numpy_view(x)
    return describe_addresses(x)


def describe_addresses(x: Any) -> np.ndarray:
    """The address-only array of :func:`address_view` for any torch tensor (void items)."""
    size = x.element_size()
    if x.numel() == 0 or x.data_ptr() == 0:   # no memory (empty, or a meta tensor): no overlap
        return np.empty(tuple(x.shape) if x.numel() == 0 else 0, dtype=f"V{size}")
    return np.asarray(_Interface({
        "version": 3, "data": (x.data_ptr(), False), "typestr": f"|V{size}",
        "shape": tuple(x.shape), "strides": tuple(st * size for st in x.stride())}))


def writeable(x: Any) -> bool:
    if isinstance(x, np.ndarray):
        return bool(x.flags.writeable)
    return not x.is_inference() if hasattr(x, "is_inference") else True


def describe(x: Any) -> str:
    """A short description for error messages: 'numpy.ndarray float32 (3, 4)'."""
    if isinstance(x, np.ndarray):
        return f"numpy.ndarray {x.dtype} {tuple(x.shape)}"
    if is_torch_tensor(x):
        return f"torch.Tensor {str(x.dtype).replace('torch.', '')} {tuple(x.shape)} on {x.device}"
    from .storage import RowSparseArray
    if isinstance(x, RowSparseArray):
        return repr(x)
    return type(x).__module__ + "." + type(x).__qualname__


def same_view(a: np.ndarray, b: np.ndarray) -> bool:
    """True if a and b address exactly the same elements in the same order."""
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
            and a.shape == b.shape and a.strides == b.strides)


def overlap(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.may_share_memory(a, b)) and bool(np.shares_memory(a, b))


def empty_like(x: Any) -> Any:
    """A new C-contiguous array of x's shape, dtype, library and device."""
    if isinstance(x, np.ndarray):
        return np.empty(x.shape, dtype=x.dtype)
    import torch
    return torch.empty(tuple(x.shape), dtype=x.dtype, device=x.device)


def arange_like(n: int, x: Any) -> Any:
    """int64 row indices 0..n-1 in x's library and device."""
    if isinstance(x, np.ndarray):
        return np.arange(n, dtype=np.int64)
    import torch
    return torch.arange(n, dtype=torch.int64, device=x.device)


def as_library(x: Any, lib: str) -> Any:
    """A view of x in the library a backend computes on (NumPy for CPU, torch for CUDA)."""
    if lib == "numpy":
        return numpy_view(x)
    if isinstance(x, np.ndarray):
        import torch
        return torch.from_numpy(x)
    return x


def byte_bounds(a: np.ndarray) -> tuple[int, int]:
    """[low, high) addresses of the bytes an array can touch (NumPy 1 and 2 alike)."""
    low = high = a.__array_interface__["data"][0]
    for n, stride in zip(a.shape, a.strides):
        reach = (n - 1) * stride
        low, high = (low + reach, high) if reach < 0 else (low, high + reach)
    return low, high + a.itemsize
