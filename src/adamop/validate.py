"""Validation of one update, every case: kinds, libraries, devices, dtypes, shapes, storage,
aliasing; the result is a :class:`adamop.plan.Update` record (the general path of the planner).

Each check raises a ``TypeError``/``ValueError`` that names the input, what was received, what was
expected and the fix; nothing here writes to an input. The common case of a whole model (dense,
contiguous arrays) is accepted faster by :mod:`adamop.bulk`, which never refuses: whatever it does
not accept comes here.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from . import _arrays
from .ops import OpDef
from .params import OpParams
from .plan import CopyInto, KeepNonzeroRows, StoreRows, Update
from .storage import RowSparseArray

__all__ = ["classify", "validate", "check_disjoint", "footprint"]

_SUPPORTED = "numpy.ndarray, torch.Tensor or adamop.RowSparseArray"
_NUMPY_TYPES = (np.ndarray, np.memmap)


def classify(name: str, x: Any, role: str = "") -> tuple[str, Any]:
    """('default' | 'row_sparse', the array) or TypeError. A torch COO ``grad`` (``role``) becomes
    a RowSparseArray."""
    if isinstance(x, RowSparseArray):
        return "row_sparse", x
    lib = _arrays.library(x)
    if lib == "torch":
        import torch
        if type(x) not in (torch.Tensor, torch.nn.Parameter):
            raise TypeError(f"{name}: tensor subclass {type(x).__qualname__} is not supported "
                            f"(its memory may not be the tensor's own); pass a plain tensor, e.g. "
                            f"{name}.to_local() for a DTensor or torch.Tensor({name})")
        if x.is_neg() or x.is_conj():   # a lazy negation or conjugation: memory holds the other
            bit, fix = ("negative", "resolve_neg") if x.is_neg() else ("conjugate", "resolve_conj")
            raise TypeError(f"{name}: the tensor's {bit} bit is set (a lazy view, e.g. from "
                            f".conj().imag), so its memory does not hold its values; pass "
                            f"{name}.{fix}() (a copy)")
        layout = _arrays.torch_layout(x)
        if layout == "strided":
            return "default", x
        if layout == "sparse_coo" and role == "grad":
            return "row_sparse", RowSparseArray.from_torch(x)
        if layout == "sparse_coo":
            raise TypeError(f"{name}: a torch sparse COO tensor cannot be updated in place; pass "
                            f"a dense tensor or adamop.RowSparseArray.from_torch({name})")
        raise TypeError(f"{name}: torch layout {layout} is not supported (csr storage is out of "
                        f"scope); convert it with .to_dense(), or use a RowSparseArray")
    if lib == "numpy":
        if type(x) not in _NUMPY_TYPES:
            raise TypeError(f"{name}: {type(x).__module__}.{type(x).__qualname__} is a NumPy "
                            f"subclass with its own semantics (np.matrix keeps 2-D, masked arrays "
                            f"a mask) that adam_update would ignore; pass numpy.asarray({name})")
        return "default", x
    if type(x).__module__.startswith("scipy.sparse"):
        raise TypeError(f"{name}: scipy sparse matrices ({type(x).__name__}) are not supported "
                        f"(csr storage is out of scope); pass {name}.toarray() or a RowSparseArray")
    raise TypeError(f"{name}: expected a {_SUPPORTED}, got {_arrays.describe(x)}; convert it with "
                    f"numpy.asarray({name})")


def _lib(st: str, x: Any) -> str:
    return x.library if st == "row_sparse" else _arrays.library(x)


def _buffer(st: str, x: Any) -> Any:
    """The memory the kernel reads or writes for x (a RowSparseArray's own view of its rows)."""
    return x._data if st == "row_sparse" else x


def _device_name(st: str, x: Any) -> str:
    """'cpu', 'cuda:0', 'cuda:1', ...: the device including its index."""
    t = _buffer(st, x)
    return str(t.device) if _arrays.is_torch_tensor(t) else "cpu"


def _dtype(x: Any) -> Any:
    return _arrays.dtype(x._data if isinstance(x, RowSparseArray) else x)


def check_common(op: OpDef, items: list[tuple[str, str, str, Any]]
                 ) -> tuple[str, str, dict[str, np.dtype], tuple]:
    """One library, device and shape for every (name, role, stype, array); each role's dtype one
    the op allows it, equal within the op's dtype groups. Returns (library, device, role ->
    dtype, shape)."""
    name0, _, st0, x0 = items[0]
    lib, dev = _lib(st0, x0), _device_name(st0, x0)
    for name, _, st, x in items[1:]:
        if _lib(st, x) != lib:
            raise TypeError(f"{name} is a {_lib(st, x)} array but {name0} is a {lib} array; "
                            f"pass every array from one library")
        if _device_name(st, x) != dev:   # with the index: cuda:0 != cuda:1
            raise ValueError(f"{name} is on {_device_name(st, x)} but {name0} is on {dev}; move "
                             f"all arrays to one device (adamop never copies between devices)")
    dtypes = {}
    for name, role, st, x in items:
        dt, allowed = _dtype(x), op.allowed_dtypes(role)
        if dt not in allowed and allowed == _arrays.FLOAT_DTYPES:
            raise TypeError(f"{name} has dtype {dt}; {op.name} supports float16, float32 and "
                            f"float64 (MXNet: 'only support floating point types'); convert it "
                            f"with .astype(numpy.float32) or .float()")
        if dt not in allowed:
            names = " or ".join(str(a) for a in allowed)
            raise TypeError(f"{name} has dtype {dt}; {op.name} takes {names} as its {role}; "
                            f"convert it with .astype(numpy.{allowed[0]})")
        dtypes[role] = dt
    for group in op.dtype_groups():
        members = [(name, role) for name, role, _, _ in items if role in group]
        for name, role in members[1:]:
            first, first_role = members[0]
            if dtypes[role] != dtypes[first_role]:
                rule = ("all inputs and out must share one dtype (there is no mixed precision)"
                        if len(group) == len(op.roles) else
                        f"{', '.join(group)} must share one dtype")
                raise TypeError(f"{name} has dtype {dtypes[role]} but {first} has "
                                f"{dtypes[first_role]}; {rule}")
    shape = tuple(x0.shape)
    for name, _, st, x in items[1:]:
        if tuple(x.shape) != shape:
            raise ValueError(f"{name} has shape {tuple(x.shape)} but {name0} has shape {shape}; "
                             f"all inputs and out must have the same shape")
    return lib, dev, dtypes, shape


def _check_written(name: str, x: Any) -> None:
    """An array the kernel writes: writeable, in writeable memory, no element twice."""
    if not _arrays.writeable(x):
        raise ValueError(f"{name} is read-only, but adam_update writes it in place; pass a "
                         f"writeable array (e.g. {name}.copy())")
    view = _arrays.address_view(x)
    # only memory torch did not allocate (from_numpy, from_buffer, DLPack: storage that cannot
    # be resized) can be a read-only mapping; reading the process's maps costs ~1 ms
    if (_arrays.is_torch_tensor(x) and x.device.type == "cpu" and view.size
            and not x.untyped_storage().resizable()
            and bool(_arrays.in_readonly_memory(*_arrays.byte_bounds_span(view)))):
        raise ValueError(f"{name} lies in read-only memory (a read-only NumPy array or file "
                         f"mapping wrapped by torch.from_numpy?), but adam_update writes it in "
                         f"place; pass a writeable tensor (e.g. {name}.clone())")
    if _arrays.overlaps_itself(view.shape, view.strides, view.itemsize):
        raise ValueError(f"{name} addresses some elements more than once (a zero or too small "
                         f"stride, as expand() or broadcast_to() make), so its updates would "
                         f"collapse; adam_update writes it in place: pass {name}.copy() or a "
                         f"contiguous array")


def check_aliasing(op: OpDef, named: list[tuple[str, str, Any]], out: Any, out_name: str,
                   path: str, out_is_weight: bool) -> None:
    """Arrays the kernel reads and writes may alias only as whole identical views, where the op
    allows it (SPEC B §2).

    ``named`` holds (name for messages, role, buffer) of the inputs."""
    views = [(n, role, _arrays.address_view(b)) for n, role, b in named if b is not None]
    for i, (na, ra, a) in enumerate(views):
        for nb, rb, b in views[i + 1:]:
            allowed = (ra, rb) in op.may_alias or (rb, ra) in op.may_alias
            if _arrays.overlap(a, b) and not (allowed and _arrays.same_view(a, b)):
                raise ValueError(f"{na} and {nb} share memory; adam_update reads {na} after "
                                 f"writing {nb} (or the reverse), so they must be separate arrays")
    if out is None:
        return
    o = _arrays.address_view(out)
    for n, role, b in views:
        if not _arrays.overlap(o, b):
            continue
        if path == "lazy" and not out_is_weight:
            raise ValueError(f"{out_name} shares memory with {n}; with a row_sparse grad and "
                             f"lazy_update=True, out must be weight itself or a separate array")
        if not _arrays.same_view(o, b):
            raise ValueError(f"{out_name} partly overlaps {n}; out may be one of the inputs "
                             f"exactly (out=weight is the usual call) or a separate array")
        if (role, "out") not in op.may_alias:
            raise ValueError(f"{out_name} is {n}, which {op.name} does not allow: the kernel "
                             f"writes {role} too; pass a separate out (or out=weight)")


def validate(op: OpDef, task: int, inputs: Sequence[Any], params: OpParams, out: Any = None,
             *, prefix: str = "") -> Update:
    """Validate one update of ``op`` and describe it as an :class:`~adamop.plan.Update`, writing
    nothing. ``inputs`` are the op's inputs in order; ``prefix`` qualifies error messages
    (``"fc1_adam."``, ``"[3] "``)."""
    if len(inputs) != len(op.inputs):
        raise TypeError(f"{op.name} takes {len(op.inputs)} arrays ({', '.join(op.inputs)}), got "
                        f"{len(inputs)}")
    named = [(prefix + role, role, *classify(prefix + role, x, role))
             for role, x in zip(op.inputs, inputs)]
    out_st = None
    items = list(named)
    if out is not None:
        out_st, out = classify(prefix + "out", out, "out")
        items.append((prefix + "out", "out", out_st, out))
    lib, dev, dtypes, shape = check_common(op, items)
    by_role = {role: (st, x) for _, role, st, x in named}
    (w_st, w), (g_st, g) = by_role["weight"], by_role["grad"]
    path, _ = op.storage([st for _, _, st, _ in named], params)

    for name, _, st, x in items:
        if st == "row_sparse" and not x.is_coalesced():
            raise ValueError(f"{name} stores rows {list(x.duplicates)[:10]} more than once; "
                             f"duplicate row indices are ambiguous (in MXNet they race); sum "
                             f"them with {name.split('.')[-1]}.coalesce() first")
    if path != "fallback" and w_st == "row_sparse" and not w.stores_all_rows():
        raise ValueError(f"{prefix}weight is row_sparse with {w.nnz} of {shape[0]} rows stored; "
                         f"the row_sparse update needs a weight that stores every row (build it "
                         f"with RowSparseArray.from_dense(w, all_rows=True))")
    if out is not None and (out_st == "row_sparse") != (w_st == "row_sparse"):
        raise TypeError(f"{prefix}out has storage {out_st} but weight has {w_st}; the new weight "
                        f"is written in the weight's storage type")
    for name, role, st, x in items:
        if role in op.written and (st == "default" or x.stores_all_rows()):
            _check_written(name, _buffer(st, x))

    out_is_weight = out is not None and (out is w or (
        out_st == w_st == "default"
        and _arrays.same_view(_arrays.address_view(out), _arrays.address_view(w))))
    check_aliasing(op, [(name, role, _buffer(st, x)) for name, role, st, x in named],
                   None if out is None else _buffer(out_st, out), prefix + "out", path,
                   out_is_weight)

    before: list = []
    after: list = []

    def dense_buffer(role: str) -> Any:
        """A dense array the kernel can use. A row_sparse state that lacks rows gets a temporary
        that is stored back (every row) afterwards."""
        st, x = by_role[role]
        if st == "default":
            return x
        if x.stores_all_rows():
            return x._data
        dense = x.todense()
        if role in op.written:
            after.append(StoreRows(x, dense))
        return dense

    buffers = {role: dense_buffer(role) for role in op.inputs if role != "grad"}
    w_arr = buffers["weight"]
    if out is None:
        o_arr = _arrays.empty_like(w_arr)
        # The output takes the weight's storage, except on the fallback, whose new array MXNet
        # returns dense.
        result = (RowSparseArray(o_arr, _arrays.arange_like(shape[0], o_arr), shape)
                  if w_st == "row_sparse" and path != "fallback" else o_arr)
    else:
        result = out
        if out_is_weight:
            o_arr = w_arr
        elif out_st == "default" or out.stores_all_rows():
            o_arr = _buffer(out_st, out)
        else:   # a row_sparse out that lacks rows: write a full buffer, then store it in out
            o_arr = _arrays.empty_like(w_arr)
            after.append(StoreRows(out, o_arr))
    if path == "lazy" and o_arr is not w_arr:
        before.append(CopyInto(o_arr, w_arr))    # rows the grad lacks keep the weight
    if path == "fallback":
        for st, x in (*((by_role[r]) for r in op.written if r != "out"), (out_st, out)):
            if st == "row_sparse":
                after.append(KeepNonzeroRows(x))
    rows = path in ("lazy", "std")
    grad = (g._data, g._indices) if rows else (g.todense() if g_st == "row_sparse" else g,)
    arrays = tuple(x for role in op.inputs
                   for x in (grad if role == "grad" else (buffers[role],))) + (o_arr,)
    written = tuple(o_arr if role == "out" else buffers[role] for role in op.written)
    return Update(task=task, path=path, rule=op.paths[path], device=dev,
                  dtype=np.dtype(dtypes[op.compute_role]), arrays=arrays, before=tuple(before),
                  after=tuple(after), result=result, written=written if lib == "torch" else ())


# ---- across the updates of a batch ---------------------------------------------------------------
def footprint(op: OpDef, u: Update) -> tuple[tuple, tuple]:
    """(arrays the kernel reads, arrays it writes), as NumPy arrays over their addresses."""
    roles = list(op.roles)
    if u.rule.rows != "every":   # the grad is two arrays: data and indices
        roles[1:2] = ["grad", "grad"]
    views = [(role in op.written, _arrays.address_view(x)) for role, x in zip(roles, u.arrays)]
    return tuple(v for w, v in views if not w), tuple(v for w, v in views if w)


def check_disjoint(batch: Sequence[tuple[int, tuple, tuple]]) -> None:
    """No update of a batch writes memory that another update of it reads or writes.

    ``batch`` holds each update's (task, arrays read, arrays written), as NumPy arrays over their
    addresses (:func:`adamop._arrays.address_view`). The backends run a batch in parallel, so
    such a pair would race (in MXNet too); the same array passed for two parameters is the usual
    cause. Byte ranges are sorted once; only ranges that meet are compared element-wise.
    """
    arrays = [(t, a, w) for t, reads, writes in batch
              for w, group in ((False, reads), (True, writes)) for a in group if a.size]
    spans = sorted((*_arrays.byte_bounds(a), t, w, i) for i, (t, a, w) in enumerate(arrays))
    for k, (lo, hi, t, w, i) in enumerate(spans):
        for lo2, hi2, t2, w2, j in spans[k + 1:]:
            if lo2 >= hi:
                break
            if t2 != t and (w or w2) and _arrays.overlap(arrays[i][1], arrays[j][1]):
                conflict(min(t, t2), max(t, t2))


def conflict(first: int, second: int) -> None:
    raise ValueError(f"updates [{first}] and [{second}] share memory that one of them writes "
                     f"(the same mean, var or out array passed for two parameters?); every "
                     f"parameter needs its own states and output")
