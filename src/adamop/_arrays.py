"""What kind of array an input is, and a zero-copy NumPy view of CPU arrays.

PyTorch is never imported here: a tensor can only exist if its caller already imported torch.
"""
from __future__ import annotations

import operator
import re
import sys
from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def as_integer(x: Any) -> int | None:
    """x as an int if it is an integer (Python, NumPy, or anything with ``__index__``; not a
    bool), else None."""
    if isinstance(x, (bool, np.bool_)):
        return None
    try:
        return operator.index(x)
    except TypeError:
        return None


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
    """Carries an ``__array_interface__`` for :func:`address_view` and :func:`host_array`."""

    def __init__(self, interface: dict) -> None:
        self.__array_interface__ = interface


def host_array(address: int, dtype: np.dtype, shape: tuple) -> np.ndarray:
    """A C-contiguous NumPy array over host memory at ``address`` that its caller keeps alive."""
    return np.asarray(_Interface({"version": 3, "data": (int(address), False),
                                  "typestr": np.dtype(dtype).str,
                                  "shape": tuple(int(d) for d in shape), "strides": None}))


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
    if getattr(x, "stype", None) == "row_sparse":   # a RowSparseArray describes itself
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
        if any(st < 0 for st in x.strides):
            raise ValueError(f"a backend that computes on torch tensors cannot view a NumPy array "
                             f"with negative strides {x.strides} (torch has none); pass "
                             f"numpy.ascontiguousarray(x), or use a NumPy backend")
        return torch.from_numpy(x)
    return x


def overlaps_itself(shape: tuple, strides: tuple, itemsize: int) -> bool:
    """True if an array may address one element from two indices (a zero stride from
    ``expand``/``broadcast_to``, or strides too small for the dimensions they step over).

    Sorted by stride, every stride must step over all the elements of the smaller ones; a layout
    that fails this is refused even if it happens to interleave without overlap (no real
    parameter or state is laid out so).
    """
    reach = itemsize
    for n, stride in sorted(((n, abs(st)) for n, st in zip(shape, strides) if n > 1),
                            key=lambda d: d[1]):
        if stride < reach:
            return True
        reach = stride * (n - 1) + reach
    return False


_MAPS = re.compile(rb"^([0-9a-f]+)-([0-9a-f]+) .([w-])", re.M)


def in_readonly_memory(address: np.ndarray, nbytes: np.ndarray) -> np.ndarray:
    """True where ``[address, address + nbytes)`` of host memory touches a mapping the process
    may not write: a read-only file mapped by NumPy and wrapped by ``torch.from_numpy``, which
    torch does not refuse, and a write to which would kill the process. Read from
    ``/proc/self/maps``; where the OS has no such file nothing can be told (all False).
    """
    address = np.asarray(address, np.int64)
    try:
        with open("/proc/self/maps", "rb") as f:
            text = f.read()
    except OSError:
        return np.zeros(address.shape, bool)
    spans = np.array([(int(a, 16), int(b, 16)) for a, b, w in _MAPS.findall(text) if w == b"-"],
                     np.uint64).reshape(-1, 2)
    spans = spans[np.argsort(spans[:, 0])]
    lo = address.astype(np.uint64)
    hi = lo + np.asarray(nbytes, np.int64).astype(np.uint64)
    k = np.searchsorted(spans[:, 0], lo, side="right") - 1
    inside = (k >= 0) & (lo < spans[np.maximum(k, 0), 1]) if len(spans) else np.zeros(lo.shape,
                                                                                        bool)
    crosses = np.searchsorted(spans[:, 0], hi, side="left") > k + 1   # a read-only span starts
    return (inside | crosses) & (hi > lo)                              # inside the range


def byte_bounds(a: np.ndarray) -> tuple[int, int]:
    """[low, high) addresses of the bytes an array can touch (NumPy 1 and 2 alike)."""
    low = high = a.__array_interface__["data"][0]
    for n, stride in zip(a.shape, a.strides):
        reach = (n - 1) * stride
        low, high = (low + reach, high) if reach < 0 else (low, high + reach)
    return low, high + a.itemsize


def byte_bounds_span(a: np.ndarray) -> tuple[int, int]:
    """(first address, bytes) of the memory an array can touch."""
    low, high = byte_bounds(a)
    return low, high - low


def span_view(address: int, nbytes: int) -> np.ndarray:
    """An address-only array over ``nbytes`` bytes at ``address`` (host or device), for overlap
    checks: nothing may read it."""
    if nbytes == 0:
        return np.empty(0, dtype="V1")
    return np.asarray(_Interface({"version": 3, "data": (int(address), False), "typestr": "|V1",
                                  "shape": (int(nbytes),), "strides": None}))
