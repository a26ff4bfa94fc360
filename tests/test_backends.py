"""Backend parity: every CPU backend equals the NumPy reference bit for bit.

The reference (:mod:`adamop.reference`) is itself checked against MXNet's golden data; here every
backend (the ``backend`` fixture) runs random and special-value cases through the public API and
must match the reference kernels run on copies. Random data is seeded (``rng`` fixture).
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import adamop
from adamop import reference
from adamop import AdamParams, dispatch
from adamop.storage import RowSparseArray
from adamop.bitwise import assert_bitexact

DTYPES = [np.float16, np.float32, np.float64]
CLIPS = [-1.0, 0.5, 0.0, -0.0]
SHAPES = [(), (0,), (7,), (1025,), (6, 42, 123)]
HYPER = dict(lr=0.01, beta1=0.9, beta2=0.999, epsilon=1e-8, wd=0.01, rescale_grad=0.5)


def _on_torch(backend: str) -> bool:
    """True for a backend that computes on torch tensors (triton, run here in its interpreter):
    it cannot view NumPy arrays with negative strides, and says so before writing anything."""
    return next(s for s in dispatch.registry() if s.name == backend).array_library == "torch"


def _params(clip: float, **over) -> AdamParams:
    return AdamParams.from_kwargs({**HYPER, "clip_gradient": clip, **over})


def _states(rng, shape, dtype, special: bool = False):
    """weight, grad, mean, var; with ``special``, sprinkled with NaN/inf/huge/subnormal/-0.0."""
    w = np.asarray(rng.standard_normal(shape), dtype)   # asarray: shape () gives a 0-d array
    g = np.asarray(rng.standard_normal(shape) * 3, dtype)
    m = np.asarray(rng.standard_normal(shape) * 0.1, dtype)
    v = np.asarray(rng.random(shape) * 0.01, dtype)
    if special and w.size:
        info = np.finfo(dtype)
        values = np.array([np.nan, np.inf, -np.inf, info.max, -info.max, info.smallest_subnormal,
                           -info.smallest_subnormal, info.tiny, -0.0, 0.0], dtype=dtype)
        for a in (w, g, m, v):
            flat = a.reshape(-1)
            pick = rng.random(flat.shape) < 0.3
            flat[pick] = rng.choice(values, int(pick.sum()))
    return w, g, m, v


def _expected_dense(w, g, m, v, params, out_is: str = "weight"):
    """Reference result (new weight, mean, var) for an update with out aliased to ``out_is``."""
    w, g, m, v = (np.array(a, copy=True) for a in (w, g, m, v))
    arrays = {"weight": w, "grad": g, "mean": m, "var": v, "new": np.empty_like(w)}
    out = arrays[out_is]
    reference.adam_dense(w, g, m, v, out, params.scalars(w.dtype), reference.DENSE)
    return out, m, v


def _check(backend, w, g, m, v, params, what, out_is="weight"):
    want = _expected_dense(w, g, m, v, params, out_is)
    arrays = {"weight": w, "grad": g, "mean": m, "var": v}
    out = arrays.get(out_is)
    got = adamop.adam_update(w, g, m, v, out=out, backend=backend, lr=params.given["lr"],
                             **{k: params.given[k] for k in params.given if k != "lr"})
    assert_bitexact(got, want[0], f"{what}: new weight")
    assert_bitexact(m, want[1], f"{what}: mean")
    assert_bitexact(v, want[2], f"{what}: var")


# ---- dense -------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("clip", CLIPS)
@pytest.mark.parametrize("shape", SHAPES)
def test_dense_random(backend, launch_mode, rng, dtype, clip, shape):
    w, g, m, v = _states(rng, shape, dtype)
    _check(backend, w, g, m, v, _params(clip), f"{backend} {np.dtype(dtype)} {shape} clip={clip}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("clip", CLIPS)
def test_dense_special_values(backend, launch_mode, rng, dtype, clip):
    w, g, m, v = _states(rng, (3001,), dtype, special=True)
    _check(backend, w, g, m, v, _params(clip), f"{backend} {np.dtype(dtype)} special clip={clip}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_extreme_hyperparameters(backend, rng, dtype):
    w, g, m, v = _states(rng, (4099,), dtype)
    p = _params(3.0, lr=1e3, beta1=0.0, beta2=1.0, epsilon=0.1, wd=-2.0, rescale_grad=1e4)
    _check(backend, w, g, m, v, p, f"{backend} {np.dtype(dtype)} extreme")


_LAYOUTS = {
    "step2": lambda a: a[::2],
    "reversed": lambda a: a[::-1],
    "transposed": lambda a: a.T,
    "step_2d": lambda a: a[::3, 1::2],
    "mixed": None,   # weight and grad transposed, the states contiguous
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", list(_LAYOUTS))
def test_dense_strided(backend, launch_mode, rng, dtype, layout):
    shape = (2051,) if layout in ("step2", "reversed") else (37, 66)
    base = _states(rng, shape, dtype)
    if layout == "mixed":
        w, g = (np.ascontiguousarray(a.T).T for a in base[:2])
        m, v = base[2], base[3]
    else:
        w, g, m, v = (_LAYOUTS[layout](a) for a in base)
    before = [a.copy() for a in base]
    if layout == "reversed" and _on_torch(backend):
        with pytest.raises(ValueError, match="negative strides"):
            adamop.adam_update(w, g, m, v, lr=0.01, out=w, backend=backend)
        for a, b in zip(base, before):
            assert_bitexact(a, b, "refused: nothing written")
        return
    _check(backend, w, g, m, v, _params(0.5), f"{backend} {layout}")
    if layout in ("step2", "step_2d"):   # elements outside the views are untouched
        mask = np.ones(shape, bool)
        mask[(slice(None, None, 2),) if layout == "step2" else (slice(None, None, 3),
                                                                 slice(1, None, 2))] = False
        for a, b in zip(base, before):
            assert_bitexact(a[mask], b[mask], f"{layout}: outside the view")


@pytest.mark.parametrize("out_is", ["weight", "grad", "mean", "var", "new"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_in_place_contract(backend, rng, dtype, out_is):
    """out may be any input: each element is read before it is written, out written last."""
    w, g, m, v = _states(rng, (5000,), dtype)
    _check(backend, w, g, m, v, _params(0.5), f"{backend} out={out_is}", out_is=out_is)
    if out_is not in ("weight", "new"):
        return
    w, g, m, v = _states(rng, (5000,), dtype)
    g0 = g.copy()
    adamop.adam_update(w, g, m, v, lr=0.01, out=w, backend=backend)
    assert_bitexact(g, g0, "grad is never written")


def test_torch_zero_copy(backend, rng):
    torch = pytest.importorskip("torch")
    for dtype in DTYPES:
        base = _states(rng, (33, 17), dtype)
        want = _expected_dense(*base, _params(0.5))
        t = [torch.from_numpy(a.copy()) for a in base]
        ptrs = [x.data_ptr() for x in t]
        got = adamop.adam_update(*t, lr=0.01, wd=0.01, rescale_grad=0.5, clip_gradient=0.5,
                                 out=t[0], backend=backend)
        assert got is t[0] and [x.data_ptr() for x in t] == ptrs
        assert_bitexact(t[0], want[0], f"torch {dtype} weight")
        assert_bitexact(t[2], want[1], f"torch {dtype} mean")
        assert_bitexact(t[3], want[2], f"torch {dtype} var")
        # a strided torch view (every other column) updates in place too
        big = [torch.from_numpy(a.copy()) for a in _states(rng, (8, 30), dtype)]
        views = [x[:, ::2] for x in big]
        want = _expected_dense(*(x.numpy() for x in views), _params(-1.0))
        adamop.adam_update(*views, lr=0.01, wd=0.01, rescale_grad=0.5, out=views[0],
                           backend=backend)
        assert_bitexact(big[0][:, ::2], want[0], f"torch strided {dtype}")


# ---- many tensors ------------------------------------------------------------------------
def test_multi_2000_small_tensors(backend, launch_mode, rng):
    n = 2000
    dtypes = [DTYPES[i % 3] for i in range(n)]
    shapes = [(int(rng.integers(0, 40)),) if i % 7 else (3, int(rng.integers(1, 9)))
              for i in range(n)]
    states = [_states(rng, s, d, special=(i % 50 == 0)) for i, (s, d) in
              enumerate(zip(shapes, dtypes))]
    lrs = [float(x) for x in rng.uniform(1e-4, 1e-1, n)]
    clips = [(-1.0, 0.5, 0.0)[i % 3] for i in range(n)]
    want = [_expected_dense(*st, _params(c, lr=lr)) for st, c, lr in zip(states, clips, lrs)]
    # a few non-contiguous members must work inside the batch too
    states[5] = tuple(a[::2] if _on_torch(backend) else a[::-1] for a in states[5])
    want[5] = _expected_dense(*states[5], _params(clips[5], lr=lrs[5]))
    ws, gs, ms, vs = (list(x) for x in zip(*states))
    out = adamop.adam_update_multi(ws, gs, ms, vs, lr=lrs, wd=0.01, rescale_grad=0.5,
                                   clip_gradient=clips, out=ws, backend=backend)
    for i in range(n):
        assert out[i] is ws[i]
        assert_bitexact(ws[i], want[i][0], f"tensor {i} weight")
        assert_bitexact(ms[i], want[i][1], f"tensor {i} mean")
        assert_bitexact(vs[i], want[i][2], f"tensor {i} var")


def test_multi_large_tensors_in_chunks(backend, rng):
    """Tensors larger than a work chunk, mixed with small ones, out separate or in place."""
    states = [_states(rng, (n,), np.float32) for n in (100_003, 5, 70_000, 1)]
    want = [_expected_dense(*st, _params(0.5)) for st in states]
    ws, gs, ms, vs = (list(x) for x in zip(*states))
    outs = [ws[0], np.empty_like(ws[1]), np.empty_like(ws[2]), ws[3]]
    adamop.adam_update_multi(ws, gs, ms, vs, lr=0.01, wd=0.01, rescale_grad=0.5,
                             clip_gradient=0.5, out=outs, backend=backend)
    for i in range(4):
        assert_bitexact(outs[i], want[i][0], f"tensor {i} weight")
        assert_bitexact(ms[i], want[i][1], f"tensor {i} mean")


# ---- row_sparse --------------------------------------------------------------------------
@pytest.mark.parametrize("lazy", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("clip", [-1.0, 0.5, 0.0])
@pytest.mark.parametrize("shape,density", [((1000,), 0.1), ((300, 7), 0.3), ((50, 3, 5), 0.0),
                                           ((64, 33), 1.0), ((10, 4), 0.5)])
def test_row_sparse(backend, launch_mode, rng, lazy, dtype, clip, shape, density):
    w, _, m, v = _states(rng, shape, dtype, special=(shape == (10, 4)))
    rows = np.sort(rng.choice(shape[0], int(shape[0] * density), replace=False)).astype(np.int64)
    gdata = (rng.standard_normal((rows.shape[0],) + shape[1:]) * 3).astype(dtype)
    p = _params(clip, lazy_update=lazy)
    ew, em, ev = (a.copy() for a in (w, m, v))
    reference.adam_rows(ew, gdata, rows, em, ev, ew, p.scalars(np.dtype(dtype)),
                        reference.LAZY if lazy else reference.STD)
    grad = RowSparseArray(gdata, rows, shape)
    adamop.adam_update(w, grad, m, v, lr=0.01, wd=0.01, rescale_grad=0.5, clip_gradient=clip,
                       lazy_update=lazy, out=w, backend=backend)
    what = f"{backend} {'lazy' if lazy else 'std'} {np.dtype(dtype)} {shape} clip={clip}"
    assert_bitexact(w, ew, what + " weight")
    assert_bitexact(m, em, what + " mean")
    assert_bitexact(v, ev, what + " var")


@pytest.mark.parametrize("lazy", [True, False])
@pytest.mark.parametrize("layout", ["transposed", "step", "3d_strided", "separate_out"])
def test_row_sparse_strided(backend, rng, lazy, layout):
    base = _states(rng, (40, 6, 3) if layout == "3d_strided" else (40, 6), np.float32)
    if layout == "transposed":
        w, m, v = (np.ascontiguousarray(a.T).T for a in (base[0], base[2], base[3]))
    elif layout == "step":
        w, m, v = (a[:, ::2] for a in (base[0], base[2], base[3]))
    elif layout == "3d_strided":
        w, m, v = (a[:, :, ::2] for a in (base[0], base[2], base[3]))
    else:
        w, m, v = base[0], base[2], base[3]
    rows = np.array([0, 3, 4, 17, 39], np.int64)
    gdata = (rng.standard_normal((5,) + w.shape[1:])).astype(np.float32)
    ew, em, ev = (a.copy() for a in (w, m, v))
    eo = ew.copy()
    reference.adam_rows(ew, gdata, rows, em, ev, eo, _params(0.5).scalars(np.dtype(np.float32)),
                        reference.LAZY if lazy else reference.STD)
    out = np.empty_like(w) if layout == "separate_out" else w
    got = adamop.adam_update(w, RowSparseArray(gdata, rows, w.shape), m, v, lr=0.01, wd=0.01,
                             rescale_grad=0.5, clip_gradient=0.5, lazy_update=lazy, out=out,
                             backend=backend)
    assert_bitexact(got, eo, f"{layout} weight")
    assert_bitexact(m, em, f"{layout} mean")
    assert_bitexact(v, ev, f"{layout} var")


# ---- the Numba backend's own pieces ----------------------------------------------------
@pytest.fixture
def numba_kernels():
    pytest.importorskip("numba", reason="the numba backend needs numba")
    from adamop.backends import numba_kernels
    return numba_kernels


def _converters(numba_kernels, kind):
    """(decode, encode) loops over one float16 implementation: the integer one every CPU runs,
    or the F16C one (used where the CPU has it)."""
    from numba import njit
    if kind == "f16c" and not numba_kernels.HARDWARE_HALF:
        pytest.skip("this CPU has no F16C: the integer conversions are in use")
    to_float = getattr(numba_kernels, f"_half_to_float_{kind}")
    to_half = getattr(numba_kernels, f"_float_to_half_{kind}")

    @njit
    def decode(h, out):
        for i in range(h.shape[0]):
            out[i] = to_float(h[i])

    @njit
    def encode(x, out):
        for i in range(x.shape[0]):
            out[i] = to_half(x[i])
    return decode, encode


def test_the_kernels_use_the_hardware_conversions_where_present(numba_kernels):
    assert (numba_kernels.float_to_half is numba_kernels._float_to_half_f16c) == \
        numba_kernels.HARDWARE_HALF


@pytest.mark.parametrize("kind", ["soft", "f16c"])
def test_half_decode_exhaustive(numba_kernels, kind):
    decode, _ = _converters(numba_kernels, kind)
    bits = np.arange(1 << 16, dtype=np.uint64).astype(np.uint16)
    got = np.empty(bits.shape, np.float32)
    decode(bits, got)
    assert_bitexact(got, bits.view(np.float16).astype(np.float32), "float16 -> float32")


@pytest.mark.parametrize("kind", ["soft", "f16c"])
def test_half_encode_exhaustive(numba_kernels, rng, kind):
    """float32 -> float16 (ties to even) at every float16, every midpoint and its neighbours,
    the overflow and underflow edges, and 4M random bit patterns, against NumPy."""
    halves = np.arange(1 << 16, dtype=np.uint64).astype(np.uint16).view(np.float16)
    finite = np.unique(halves[np.isfinite(halves)].astype(np.float64))
    mids = ((finite[1:] + finite[:-1]) / 2).astype(np.float32)
    edges = np.float32([65504, 65519.996, 65520, 65536, 1e10, 2.0 ** -25, 2.0 ** -26,
                        3 * 2.0 ** -26, 2.0 ** -24, 1e-45, 0.0, -0.0, np.inf, -np.inf])
    randoms = rng.integers(0, 1 << 32, 4_000_000, dtype=np.uint64).astype(np.uint32)
    x = np.concatenate([halves.astype(np.float32), mids, np.nextafter(mids, np.float32(np.inf)),
                        np.nextafter(mids, np.float32(-np.inf)), edges,
                        randoms.view(np.float32)])
    x = np.concatenate([x, -x])
    got = np.empty(x.shape, np.uint16)
    _converters(numba_kernels, kind)[1](x, got)
    with np.errstate(over="ignore"):
        want = x.astype(np.float16)
    assert_bitexact(got.view(np.float16), want, "float32 -> float16")


def test_no_contraction_in_generated_code(numba_kernels):
    """No fused multiply-add may appear (it would round once where MXNet rounds twice), and the
    loop is vectorised. Compiled afresh here: a kernel loaded from the disk cache has no asm."""
    from numba import njit
    fresh = njit(parallel=True)(numba_kernels.dense_inplace.py_func)
    w, g, m, v = (np.ones(64, np.float32) for _ in range(4))
    sc = np.full(7, 0.5, np.float32)
    fresh(w, g, m, v, sc, True, False)
    asm = fresh.inspect_asm(fresh.signatures[0]).lower()
    assert "fmadd" not in asm and "fmsub" not in asm and "fnmadd" not in asm
    assert "vsqrtps" in asm and "vdivps" in asm, "the update loop is not vectorised"


def test_small_work_runs_on_the_calling_thread_and_the_thread_count_is_restored(numba_kernels):
    import numba
    from adamop.backends import numba_backend
    before = numba.get_num_threads()
    if before == 1:
        pytest.skip("Numba runs one thread here (one core or NUMBA_NUM_THREADS=1): no threads "
                    "to leave out")
    seen = []

    def probe(*_):
        seen.append(numba.get_num_threads())

    def fails(*_):
        raise RuntimeError("kernel failed")

    numba_backend.launch(probe, numba_backend.ONE_THREAD_UP_TO)
    numba_backend.launch(probe, numba_backend.ONE_THREAD_UP_TO + 1)
    assert seen == [1, before]
    with pytest.raises(RuntimeError, match="kernel failed"):
        numba_backend.launch(fails, 10)
    assert numba.get_num_threads() == before


def test_info_reports_threads(numba_kernels):
    from adamop.backends import numba_backend
    import numba
    info = numba_backend.info()
    assert info["threads"] == numba.get_num_threads() and "threading_layer" in info


def test_import_compiles_nothing():
    code = ("import sys, adamop; assert 'numba' not in sys.modules, 'numba imported'; "
            "assert 'adamop.backends.numba_backend' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
