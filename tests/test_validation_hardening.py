"""Hostile inputs that reached the kernels, crashed, or changed something before an error: each
case failed on 84d5f83 (a crash, a foreign exception type, a silent wrong result or a write) and
must now raise TypeError/ValueError with nothing changed."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import adamop
from adamop import RowSparseArray, sym
from adamop.dispatch import BackendUnavailableError

torch = pytest.importorskip("torch")


def _arrays(n: int = 6, dtype=np.float32):
    rng = np.random.default_rng(3)
    return [rng.standard_normal(n).astype(dtype) for _ in range(3)] + [np.full(n, 0.01, dtype)]


def _unchanged(before, after) -> None:
    for b, a in zip(before, after):
        assert np.asarray(b).tobytes() == np.asarray(a).tobytes()


@pytest.mark.parametrize("name", ["weight", "grad", "mean", "var"])
def test_numpy_subclasses_are_refused(backend, name):
    """np.matrix keeps every result 2-D and a masked array carries a mask the update would ignore;
    Numba raised its own TypingError for a matrix."""
    arrays = [a.reshape(2, 3) for a in _arrays()]
    i = ("weight", "grad", "mean", "var").index(name)
    for sub in (np.asmatrix, np.ma.masked_array):
        given = list(arrays)
        given[i] = sub(arrays[i].copy())
        before = [np.array(a, copy=True) for a in given]
        with pytest.raises(TypeError, match=rf"{name}: numpy\..*subclass.*numpy.asarray"):
            adamop.adam_update(*given, lr=0.1, out=given[0], backend=backend)
        _unchanged(before, given)


@pytest.mark.parametrize("target", ["mean", "var", "out"])
@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_written_arrays_that_overlap_themselves_are_refused(backend, target, lib):
    """An expand()ed or zero-stride state or out collapsed every row into one, silently."""
    w, g, m, v = _arrays(8)
    base = np.zeros(1, np.float32)
    if lib == "numpy":
        collapsed = np.lib.stride_tricks.as_strided(base, (8,), (0,))
        w, g, m, v = (np.copy(x) for x in (w, g, m, v))
    else:
        collapsed = torch.from_numpy(base).expand(8)
        w, g, m, v = (torch.from_numpy(x.copy()) for x in (w, g, m, v))
    given = dict(weight=w, grad=g, mean=m, var=v, out=None)
    given[target] = collapsed
    before = [np.array(x, copy=True) for x in (w, g, m, v, base)]
    with pytest.raises(ValueError, match=rf"{target} addresses some elements more than once"):
        adamop.adam_update(given["weight"], given["grad"], given["mean"], given["var"],
                           out=given["out"], lr=0.1, backend=backend)
    _unchanged(before, [np.asarray(x) for x in (w, g, m, v, base)])


def test_read_only_mapping_behind_torch_from_numpy_is_refused(tmp_path):
    """A read-only file mapping wrapped by torch.from_numpy (torch only warns) was written: the
    process died. Run in a child, so that a regression cannot take the test session down."""
    code = textwrap.dedent(f"""
        import warnings, numpy as np, torch, adamop
        np.save({str(tmp_path / 'm.npy')!r}, np.zeros(1000, np.float32))
        mapped = np.load({str(tmp_path / 'm.npy')!r}, mmap_mode="r")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mean = torch.from_numpy(np.asarray(mapped))
        w, g, v = torch.ones(1000), torch.ones(1000), torch.zeros(1000)
        for call in (lambda: adamop.adam_update(w, g, mean, v, lr=0.1, out=w),
                     lambda: adamop.adam_update_multi([w], [g], [mean], [v], lr=0.1, out=[w])):
            try:
                call()
            except ValueError as exc:
                assert "read-only memory" in str(exc), exc
            else:
                raise SystemExit("not refused")
        assert float(w.sum()) == 1000.0   # nothing written
        print("refused")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert proc.returncode == 0 and proc.stdout.strip() == "refused", proc.stderr[-2000:]


def test_a_kept_plan_is_not_run_on_a_new_read_only_mapping_at_its_address(tmp_path):
    """A plan is kept by address and layout. When the memory at those addresses becomes a
    read-only mapping and a new tensor wraps it, the next call must read the process's maps again
    and refuse (it used to trust spans found writeable before: the process died). In a child."""
    code = textwrap.dedent("""
        import ctypes, mmap, warnings, numpy as np, torch, adamop
        warnings.simplefilter("ignore")
        n = 1 << 16
        region = mmap.mmap(-1, 4 * n)                  # writeable, page-aligned
        base = np.frombuffer(region, np.float32, n)
        g, m, v = torch.ones(n), torch.zeros(n), torch.zeros(n)
        for call in ("single", "multi"):
            w = torch.from_numpy(base)
            step = (lambda w: adamop.adam_update(w, g, m, v, lr=0.1, out=w)) if call == "single" \
                else (lambda w: adamop.adam_update_multi([w], [g], [m], [v], lr=0.1, out=[w]))
            step(w)                                    # planned and kept, memory writeable
            libc = ctypes.CDLL(None)
            assert libc.mprotect(ctypes.c_void_p(base.ctypes.data), 4 * n, mmap.PROT_READ) == 0
            try:
                step(torch.from_numpy(base))           # a new tensor over read-only memory
            except ValueError as exc:
                assert "read-only memory" in str(exc), exc
            else:
                raise SystemExit("not refused")
            libc.mprotect(ctypes.c_void_p(base.ctypes.data), 4 * n,
                          mmap.PROT_READ | mmap.PROT_WRITE)
        print("refused")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "refused", proc.stderr[-2000:]


def test_a_kept_plan_is_not_run_on_an_inference_tensor_at_its_address():
    """torch refuses to write an inference tensor outside inference mode, and so does adamop. A
    plan kept for ordinary tensors must not run on an inference tensor over the same memory."""
    w_np, g_np, m_np, v_np = _arrays(64)
    w, g, m, v = (torch.from_numpy(a) for a in (w_np, g_np, m_np, v_np))
    for step in (lambda w: adamop.adam_update(w, g, m, v, lr=0.1, out=w),
                 lambda w: adamop.adam_update_multi([w], [g], [m], [v], lr=0.1, out=[w])):
        step(w)   # planned and kept
        with torch.inference_mode():
            w_inference = torch.from_numpy(w_np)
        assert w_inference.is_inference() and w_inference.data_ptr() == w.data_ptr()
        before = [a.copy() for a in (w_np, m_np, v_np)]
        with pytest.raises(ValueError, match="read-only"):
            step(w_inference)
        _unchanged(before, [w_np, m_np, v_np])


@pytest.mark.parametrize("role", ["weight", "grad", "mean"])
def test_lazily_negated_tensors_are_refused(role):
    """``z.conj().imag`` is a float view whose memory holds the negated values (torch's negative
    bit): read raw, the grad's sign was wrong; non-contiguous, the view crashed with a
    RuntimeError."""
    arrays = [torch.from_numpy(a) for a in _arrays(8)]
    i = ("weight", "grad", "mean", "var").index(role)
    z = torch.complex(torch.zeros(8), arrays[i].clone())
    for view in (z.conj().imag, torch.complex(torch.zeros(16), torch.ones(16)).conj().imag[::2]):
        given = list(arrays)
        given[i] = view
        assert view.is_neg()
        before = [a.numpy().copy() for a in arrays]
        for call in (lambda: adamop.adam_update(*given, lr=0.1, out=given[0]),
                     lambda: adamop.adam_update_multi(*[[a] for a in given], lr=0.1,
                                                      out=[given[0]])):
            with pytest.raises(TypeError, match="negative bit is set.*resolve_neg"):
                call()
        _unchanged(before, [a.numpy() for a in arrays])


def _bound():
    w, g, m, v = _arrays()
    node = sym.adam_update(sym.var("w"), sym.var("g"), sym.var("m"), sym.var("v"), lr=0.1)
    return node.bind({"w": w, "g": g}, {"m": m, "v": v})


def test_forward_copies_nothing_before_refusing_a_bad_array():
    """forward(g=new, w=bad) copied g in before refusing w."""
    ex = _bound()
    before = {k: x.copy() for k, x in {**ex.arg_dict, **ex.aux_dict}.items()}
    with pytest.raises(ValueError, match="w is bound to an array of shape"):
        ex.forward(g=np.full(6, 7.0, np.float32), w=np.zeros(5, np.float32))
    for k, x in {**ex.arg_dict, **ex.aux_dict}.items():
        assert x.tobytes() == before[k].tobytes(), k


def test_forward_keeps_its_binding_when_a_replacement_is_refused():
    """forward(w=<torch tensor>) on a NumPy-bound executor swapped it in, raised, and left the
    executor unusable."""
    ex = _bound()
    bound = dict(ex.arg_dict)
    with pytest.raises(TypeError, match="torch array but w.weight is a numpy array|numpy"):
        ex.forward(g=torch.ones(6))
    assert ex.arg_dict == bound
    out = ex.forward()                     # still usable, with its own arrays
    assert isinstance(out[0], np.ndarray) and np.isfinite(out[0]).all()


@pytest.mark.parametrize("value", [["numpy"], ("numba",), 1, b"numpy"])
def test_backend_must_be_a_name(value):
    w, g, m, v = _arrays()
    with pytest.raises(TypeError, match=r"backend must be a backend's name \(a str"):
        adamop.adam_update(w, g, m, v, lr=0.1, backend=value)
    with pytest.raises(TypeError, match=r"backend must be a backend's name"):
        adamop.adam_update_multi([w], [g], [m], [v], lr=0.1, backend=value)


def test_bad_backend_variable_is_named(monkeypatch):
    w, g, m, v = _arrays()
    before = [x.copy() for x in (w, g, m, v)]
    monkeypatch.setenv("ADAMOP_BACKEND", "bogus")
    with pytest.raises(BackendUnavailableError,
                       match=r"'bogus' \(from the environment variable ADAMOP_BACKEND\)"):
        adamop.adam_update(w, g, m, v, lr=0.1, out=w)
    monkeypatch.setenv("ADAMOP_BACKEND", "triton")
    with pytest.raises(BackendUnavailableError, match=r"Unset ADAMOP_BACKEND"):
        adamop.adam_update(w, g, m, v, lr=0.1, out=w)
    _unchanged(before, (w, g, m, v))


@pytest.mark.parametrize("bad", [[0, 9], [-1, 2], [2, 2], [3, 1]])
def test_row_kernels_never_index_out_of_bounds(bad):
    """Indices changed behind a RowSparseArray's back (through its private copy) are refused by
    the Numba kernels' own pre-pass before anything is written, instead of corrupting memory."""
    pytest.importorskip("numba")
    from adamop import AdamParams, reference
    from adamop.backends import numba_backend
    g = RowSparseArray(np.ones((2, 4), np.float32), np.array([0, 1]), (5, 4))
    idx = g._indices
    idx.flags.writeable = True          # only possible on the private array
    idx[:] = bad
    w, m, v = np.ones((5, 4), np.float32), np.zeros((5, 4), np.float32), np.zeros((5, 4),
                                                                                 np.float32)
    s = AdamParams.from_kwargs({"lr": 0.1}).scalars(np.dtype(np.float32))
    for rule in (reference.LAZY, reference.STD):
        with pytest.raises(ValueError, match="no longer ascending, unique and in"):
            numba_backend.adam_rows(w, g._data, idx, m, v, w, s, rule)
    assert (w == 1).all() and (m == 0).all() and (v == 0).all()


def test_assigning_into_arg_dict_rebinds_and_is_checked():
    """An array assigned into arg_dict between runs is used (and validated first)."""
    ex = _bound()
    w, m, v = ex.arg_dict["w"].copy(), ex.aux_dict["m"].copy(), ex.aux_dict["v"].copy()
    new_g = np.full(6, 2.0, np.float32)
    ex.arg_dict["g"] = new_g
    got = ex.forward()[0]
    want = adamop.adam_update(w, new_g, m, v, lr=0.1, backend="numpy")
    assert got.tobytes() == want.tobytes() and ex.aux_dict["m"].tobytes() == m.tobytes()
    ex.arg_dict["g"] = np.zeros(5, np.float32)
    before = [x.copy() for x in (*ex.aux_dict.values(), ex.outputs[0])]
    with pytest.raises(ValueError, match="shape"):
        ex.forward()
    _unchanged(before, [*ex.aux_dict.values(), ex.outputs[0]])
