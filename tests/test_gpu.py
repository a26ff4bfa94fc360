"""The triton backend on a CUDA device: MXNet's golden cases and bit-exact parity with the CPU
reference, no FMA or approximate division in the compiled code, > 2^31 elements, CUDA-graph
capture, the batched launch, sparse gradients from ``nn.Embedding(sparse=True)``, and device errors.

Tests marked ``gpu`` skip (with the reason) where torch sees no CUDA device. The first few tests
need no GPU: they check the dispatch errors for CUDA arrays on any machine.
"""
from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest

import adamop
from adamop import RowSparseArray, dispatch, reference
from bitexact import assert_bitexact, to_numpy

torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch)")

import test_golden  # noqa: E402  (MXNet's golden cases and their comparison rules)

if not torch.cuda.is_available():
    _NO_GPU = "needs a CUDA device: torch.cuda.is_available() is False"
elif importlib.util.find_spec("triton") is None:
    _NO_GPU = "triton is not installed (pip install triton)"
else:
    _NO_GPU = None
gpu = pytest.mark.skipif(_NO_GPU is not None, reason=_NO_GPU or "")
DTYPES = ("float16", "float32", "float64")
PARAMS = {
    "plain": dict(lr=0.01, wd=0.02, rescale_grad=0.5),
    "clip": dict(lr=0.003, beta1=0.8, beta2=0.99, epsilon=1e-4, wd=0.1, clip_gradient=0.3),
}


# ---- dispatch errors: no GPU needed ------------------------------------------------------------
@pytest.mark.parametrize("cpu_backend", ["numpy", "numba"])
def test_explicit_cpu_backend_refuses_cuda(cpu_backend: str) -> None:
    with pytest.raises(dispatch.BackendUnavailableError,
                       match=f"backend '{cpu_backend}' cannot run these arrays: runs on cpu, the "
                             f"arrays are on cuda"):
        dispatch.select("cuda", cpu_backend)


def test_triton_refuses_cpu_arrays() -> None:
    with pytest.raises(dispatch.BackendUnavailableError,
                       match="runs on cuda, the arrays are on cpu"):
        dispatch.select("cpu", "triton")


def test_mixed_devices_refused_before_writing() -> None:
    # 'meta' tensors stand in for a second device on machines without a GPU
    w, m, v = (torch.zeros(3, device="meta") for _ in range(3))
    g = torch.ones(3)
    with pytest.raises(ValueError, match="grad is on cpu but weight is on meta; move all arrays"):
        adamop.adam_update(w, g, m, v, lr=0.1)


def test_no_backend_for_an_unknown_device() -> None:
    w = torch.zeros(3, device="meta")
    with pytest.raises(dispatch.BackendUnavailableError, match="no backend can run arrays on meta"):
        adamop.adam_update(w, w.clone(), w.clone(), w.clone(), lr=0.1)


# ---- helpers -----------------------------------------------------------------------------------
def _cuda(x):
    if isinstance(x, RowSparseArray):
        return RowSparseArray(torch.from_numpy(np.array(x.data)).cuda(),
                              torch.from_numpy(np.array(x.indices)).cuda(), x.shape)
    return torch.from_numpy(np.array(x)).cuda()


def _draw(rng, shape, dtype, kind):
    x = rng.standard_normal(shape)
    x = np.abs(x) * 0.01 if kind == "var" else x * (0.1 if kind == "mean" else 1.0)
    return np.asarray(x, dtype=dtype)


# ---- golden ------------------------------------------------------------------------------------
@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("case", test_golden.CASES, ids=test_golden._case_id)
def test_golden_on_cuda(case: dict) -> None:
    weight, grad, mean, var = (_cuda(x) for x in test_golden._inputs(case))
    out = weight if case["out_is_weight"] else None
    result = adamop.adam_update(weight, grad, mean, var, out=out, backend="triton",
                                **case["kwargs"])
    if out is not None:
        assert result is out
    w_exp, m_exp, v_exp = test_golden._expected(case)
    what = f"{case['id']} ({case['desc']}, {case['stype']}, {case['kwargs']})"
    assert_bitexact(result, w_exp, f"{what} weight_out")
    assert_bitexact(mean, m_exp, f"{what} mean_out")
    assert_bitexact(var, v_exp, f"{what} var_out")


# ---- parity with the CPU reference, large enough to expose a contracted multiply-add ----------
LAYOUTS = {
    "contiguous": ((1000, 1000), lambda a: a),
    "step": ((1000, 2000), lambda a: a[:, ::2]),
    "slice": ((1000, 1100), lambda a: a[:, :1000]),
    "transposed": ((1000, 1000), lambda a: a.T),
}


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("p", sorted(PARAMS))
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("path", ["dense", "lazy", "std"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_parity_with_reference(dtype: str, path: str, layout: str, p: str) -> None:
    rng = np.random.default_rng(7)
    shape, view = LAYOUTS[layout]
    names = ("weight", "grad", "mean", "var")
    bases = {k: _draw(rng, shape, dtype, k) for k in names}
    ref = {k: b.copy() for k, b in bases.items()}
    dev = {k: torch.from_numpy(b.copy()).cuda() for k, b in bases.items()}
    rows = np.sort(rng.choice(shape[0], size=shape[0] // 3, replace=False)).astype(np.int64)
    gdata = _draw(rng, (rows.size, view(bases["weight"]).shape[1]), dtype, "grad")
    s = adamop.AdamParams.from_kwargs(dict(PARAMS[p], lazy_update=path == "lazy")) \
        .scalars(np.dtype(dtype))
    w, g, m, v = (view(ref[k]) for k in names)
    wt, gt, mt, vt = (view(dev[k]) for k in names)
    with np.errstate(all="ignore"):
        if path == "dense":
            reference.adam_dense(w, g, m, v, w, s, reference.DENSE)
            adamop.adam_update(wt, gt, mt, vt, out=wt, backend="triton", **PARAMS[p])
        else:
            getattr(reference, f"adam_{path}")(w, gdata, rows, m, v, w, s)
            grad = RowSparseArray(torch.from_numpy(gdata).cuda(), torch.from_numpy(rows).cuda(),
                                  tuple(wt.shape))
            adamop.adam_update(wt, grad, mt, vt, out=wt, backend="triton",
                               lazy_update=path == "lazy", **PARAMS[p])
    for k in names:
        assert_bitexact(dev[k], ref[k], f"{dtype} {path} {layout} {p}: {k}")


def _launch_dense(dtype):
    """Compile the dense kernel as the backend launches it and return the compiled kernel."""
    from adamop.backends import triton_backend as tb
    x = torch.ones(4096, dtype=dtype, device="cuda")
    s = adamop.AdamParams.from_kwargs(dict(lr=0.1)).scalars(np.dtype(str(dtype)[6:]))
    return tb.adam_dense_kernel[(1,)](x, x.clone(), x.clone(), x.clone(), x, 4096, 1, 1, 1, 1, 1,
                                      *tb._scalar_args(s), CLIP=False, V_SQUARE_FIRST=False,
                                      BLOCK=tb.BLOCK, **tb._flags(x.dtype), **tb._OPTIONS)


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_compiled_code_has_no_fma_or_approximate_math(dtype: str) -> None:
    ptx = _launch_dense(getattr(torch, dtype)).asm["ptx"]
    # float multiply-adds and approximate division/sqrt; integer address arithmetic
    # (mad.lo.s64, mad.wide.u32) is exact and allowed
    banned = re.findall(r"\b(?:fma|mad)\.(?:[a-z]+\.)*f(?:16|32|64)\b"
                        r"|\b(?:div|sqrt|rcp|rsqrt)\.(?:approx|full)[\w.]*", ptx)
    assert not banned, f"{dtype}: the PTX contains {sorted(set(banned))}"
    assert "div.rn" in ptx and "sqrt.rn" in ptx


# ---- 64-bit indexing -----------------------------------------------------------------------------
def _free_gib() -> float:
    return torch.cuda.mem_get_info()[0] / 2 ** 30


@gpu
@pytest.mark.gpu
@pytest.mark.slow
def test_more_than_2_31_elements() -> None:
    """float16, 2^31 + 2^22 elements (out=weight: 4 arrays, 17 GB): the input is one period of
    4096 values repeated, so the whole result is checked against the reference of one period."""
    n, period = 2 ** 31 + 2 ** 22, 4096
    if _free_gib() < 4 * n * 2 / 2 ** 30 + 3:
        pytest.skip(f"needs ~20 GiB of free GPU memory, {_free_gib():.1f} GiB free")
    rng = np.random.default_rng(31)
    one = {k: _draw(rng, (period,), "float16", k) for k in ("weight", "grad", "mean", "var")}
    s = adamop.AdamParams.from_kwargs(PARAMS["plain"]).scalars(np.dtype("float16"))
    exp = {k: a.copy() for k, a in one.items()}
    with np.errstate(all="ignore"):
        reference.adam_dense(exp["weight"], exp["grad"], exp["mean"], exp["var"], exp["weight"], s,
                             reference.DENSE)
    big = {k: torch.from_numpy(a).cuda().repeat(n // period) for k, a in one.items()}
    adamop.adam_update(big["weight"], big["grad"], big["mean"], big["var"], out=big["weight"],
                       backend="triton", **PARAMS["plain"])
    for k in ("weight", "mean", "var"):
        want = torch.from_numpy(exp[k]).cuda().view(torch.int16)
        rows_ok = (big[k].view(torch.int16).view(-1, period) == want).all(dim=1)
        bad = (~rows_ok).nonzero()
        assert bad.numel() == 0, f"{k}: periods {bad[:5].flatten().tolist()} differ"
        del rows_ok


@gpu
@pytest.mark.gpu
@pytest.mark.slow
def test_lazy_rows_beyond_2_31_elements() -> None:
    rows, cols = 2 ** 21 + 8, 1024                        # 2^31 + 8192 elements
    if _free_gib() < 3 * rows * cols * 2 / 2 ** 30 + 2:
        pytest.skip(f"needs ~15 GiB of free GPU memory, {_free_gib():.1f} GiB free")
    rng = np.random.default_rng(32)
    w, m, v = (torch.zeros(rows, cols, dtype=torch.float16, device="cuda") for _ in range(3))
    idx = np.array([0, 2 ** 21 - 1, 2 ** 21, rows - 1], dtype=np.int64)   # last ones past 2^31
    gdata = _draw(rng, (idx.size, cols), "float16", "grad")
    sub = {k: np.zeros((idx.size, cols), np.float16) for k in ("w", "m", "v")}
    s = adamop.AdamParams.from_kwargs(dict(lr=0.01, epsilon=1e-3)).scalars(np.dtype("float16"))
    reference.adam_rows(sub["w"], gdata, np.arange(idx.size), sub["m"], sub["v"], sub["w"], s,
                        reference.LAZY)
    grad = RowSparseArray(torch.from_numpy(gdata).cuda(), torch.from_numpy(idx).cuda(),
                          (rows, cols))
    adamop.adam_update(w, grad, m, v, out=w, backend="triton", lr=0.01, epsilon=1e-3)
    t_idx = torch.from_numpy(idx).cuda()
    for name, t in (("w", w), ("m", m), ("v", v)):
        assert_bitexact(t[t_idx], sub[name], f"{name} updated rows")
        assert int(t.count_nonzero()) == int(np.count_nonzero(sub[name])), f"{name}: other rows"


# ---- no host synchronisation: CUDA graphs ------------------------------------------------------
def _capture_and_compare(call, state, reference_steps) -> None:
    """Warm up ``call`` on a side stream, capture it, replay twice from the initial state and
    compare with the reference applied twice."""
    initial = {k: t.clone() for k, t in state.items()}
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        call()                                        # compiles, builds cached tables
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        call()
    for k, t in state.items():
        t.copy_(initial[k])
    graph.replay()
    graph.replay()
    torch.cuda.synchronize()
    expected = {k: t.cpu().numpy() for k, t in initial.items()}
    with np.errstate(all="ignore"):
        reference_steps(expected)
        reference_steps(expected)
    for k, t in state.items():
        assert_bitexact(t, expected[k], f"after two replays: {k}")


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("path", ["dense", "lazy", "std", "multi"])
def test_update_is_captured_in_a_cuda_graph(path: str) -> None:
    rng = np.random.default_rng(5)
    sizes = [3000, 70000, 1] if path == "multi" else [50_000]
    state = {f"{k}{i}": torch.from_numpy(_draw(rng, (n // 50 or 1, 50) if path in ("lazy", "std")
                                                else (n,), "float32", k)).cuda()
             for i, n in enumerate(sizes) for k in ("weight", "grad", "mean", "var")}
    kw = dict(lr=0.01, wd=0.01)
    s = adamop.AdamParams.from_kwargs(kw).scalars(np.dtype("float32"))
    if path in ("lazy", "std"):
        rows = np.array([1, 5, 6, 900], np.int64)
        gdata = _draw(rng, (rows.size, 50), "float32", "grad")
        grad = RowSparseArray(torch.from_numpy(gdata).cuda(), torch.from_numpy(rows).cuda(),
                              tuple(state["weight0"].shape))     # built (and checked) outside

        def call():
            adamop.adam_update(state["weight0"], grad, state["mean0"], state["var0"],
                               out=state["weight0"], lazy_update=path == "lazy", **kw)

        def steps(e):
            getattr(reference, f"adam_{path}")(e["weight0"], gdata, rows, e["mean0"], e["var0"],
                                               e["weight0"], s)
    else:
        n = len(sizes)
        lists = [[state[f"{k}{i}"] for i in range(n)] for k in ("weight", "grad", "mean", "var")]

        def call():
            adamop.adam_update_multi(*lists, out=lists[0], **kw)

        def steps(e):
            for i in range(n):
                reference.adam_dense(e[f"weight{i}"], e[f"grad{i}"], e[f"mean{i}"], e[f"var{i}"],
                                     e[f"weight{i}"], s, reference.DENSE)
    _capture_and_compare(call, state, steps)


@gpu
@pytest.mark.gpu
def test_capture_without_warm_up_says_so() -> None:
    ws, gs, ms, vs = ([torch.rand(1000, device="cuda") for _ in range(3)] for _ in range(4))
    graph = torch.cuda.CUDAGraph()
    with pytest.raises(RuntimeError, match="call it once with the same arguments before"):
        with torch.cuda.graph(graph):
            adamop.adam_update_multi(ws, gs, ms, vs, lr=0.01, out=ws)


@gpu
@pytest.mark.gpu
def test_no_synchronising_call_after_warm_up() -> None:
    w, g, m, v = ([torch.rand(10_000, device="cuda") for _ in range(3)] for _ in range(4))
    rows = RowSparseArray(torch.rand(2, 10, device="cuda"), torch.tensor([1, 7], device="cuda"),
                          (1000, 10))
    wr, mr, vr = (torch.rand(1000, 10, device="cuda") for _ in range(3))
    coo = rows.to_torch()                         # a coalesced torch COO grad, taken as it is

    def updates():
        adamop.adam_update(w[0], g[0], m[0], v[0], lr=0.01, out=w[0])
        adamop.adam_update_multi(w, g, m, v, lr=0.01, out=w)
        adamop.adam_update_multi(w, g, m, v, lr=[0.01, 0.02, 0.03], out=w)
        for lazy in (True, False):
            adamop.adam_update(wr, rows, mr, vr, lr=0.01, out=wr, lazy_update=lazy)
            adamop.adam_update(wr, coo, mr, vr, lr=0.01, out=wr, lazy_update=lazy)
    updates()                                     # compiles, builds the cached tables
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")       # any synchronising torch call now raises
    try:
        updates()
    finally:
        torch.cuda.set_sync_debug_mode("default")


# ---- batched launch ------------------------------------------------------------------------------
@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_two_thousand_tensors_in_one_call(dtype: str) -> None:
    rng = np.random.default_rng(2000)
    sizes = rng.integers(1, 5000, size=2000)
    host = [{k: _draw(rng, (int(n),), dtype, k) for k in ("w", "g", "m", "v")} for n in sizes]
    dev = [{k: torch.from_numpy(a.copy()).cuda() for k, a in h.items()} for h in host]
    lrs = [float(x) for x in rng.uniform(1e-4, 1e-2, size=len(sizes))]
    adamop.adam_update_multi([d["w"] for d in dev], [d["g"] for d in dev], [d["m"] for d in dev],
                             [d["v"] for d in dev], lr=lrs, wd=0.01, out=[d["w"] for d in dev])
    with np.errstate(all="ignore"):
        for h, lr in zip(host, lrs):
            s = adamop.AdamParams.from_kwargs(dict(lr=lr, wd=0.01)).scalars(np.dtype(dtype))
            reference.adam_dense(h["w"], h["g"], h["m"], h["v"], h["w"], s, reference.DENSE)
    for i, (h, d) in enumerate(zip(host, dev)):
        for k in ("w", "m", "v"):
            assert_bitexact(d[k], h[k], f"tensor {i} {k}")


# ---- automatic choice, sparse gradients, device errors ---------------------------------------
@gpu
@pytest.mark.gpu
def test_cuda_tensors_choose_triton() -> None:
    spec, _ = dispatch.select("cuda")
    assert spec.name == "triton"


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("lazy", [True, False])
def test_embedding_sparse_grad(lazy: bool) -> None:
    torch.manual_seed(0)
    emb = torch.nn.Embedding(1000, 16, sparse=True).cuda()
    tokens = torch.randint(0, 1000, (64, 20), device="cuda")      # repeats: an uncoalesced grad
    emb(tokens).sum().backward()      # grad rows count their tokens: exact in any sum order
    grad = emb.weight.grad
    assert grad.layout == torch.sparse_coo
    w = emb.weight.detach()
    m, v = torch.zeros_like(w), torch.full_like(w, 1e-3)
    host = {k: t.cpu().numpy().copy() for k, t in (("w", w), ("m", m), ("v", v))}
    coalesced = grad.detach().coalesce().cpu()
    gdata, rows = coalesced.values().numpy(), coalesced.indices()[0].numpy()
    s = adamop.AdamParams.from_kwargs(dict(lr=0.01)).scalars(np.dtype("float32"))
    reference.adam_rows(host["w"], gdata, rows, host["m"], host["v"], host["w"], s,
                        reference.LAZY if lazy else reference.STD)
    result = adamop.adam_update(w, grad, m, v, lr=0.01, lazy_update=lazy, out=w)
    assert result is w
    for k, t in (("w", w), ("m", m), ("v", v)):
        assert_bitexact(t, host[k], k)


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("cpu_backend", ["numpy", "numba"])
def test_cpu_backend_with_cuda_tensors_raises(cpu_backend: str) -> None:
    w, g, m, v = (torch.rand(8, device="cuda") for _ in range(4))
    before = [to_numpy(t) for t in (w, m, v)]
    with pytest.raises(dispatch.BackendUnavailableError,
                       match="runs on cpu, the arrays are on cuda"):
        adamop.adam_update(w, g, m, v, lr=0.1, out=w, backend=cpu_backend)
    for t, b in zip((w, m, v), before):
        assert_bitexact(t, b, "unchanged after the error")


@gpu
@pytest.mark.gpu
def test_cuda_and_cpu_inputs_raise() -> None:
    w, m, v = (torch.rand(8, device="cuda") for _ in range(3))
    before = [to_numpy(t) for t in (w, m, v)]
    with pytest.raises(ValueError, match=r"grad is on cpu but weight is on cuda:\d"):
        adamop.adam_update(w, torch.rand(8), m, v, lr=0.1, out=w)
    for t, b in zip((w, m, v), before):
        assert_bitexact(t, b, "unchanged after the error")


@gpu
@pytest.mark.gpu
def test_two_gpus_raise() -> None:
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA devices")
    w, g, m = (torch.rand(8, device="cuda:0") for _ in range(3))
    with pytest.raises(ValueError, match="var is on cuda:1 but weight is on cuda:0"):
        adamop.adam_update(w, g, m, torch.rand(8, device="cuda:1"), lr=0.1)


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("case", ["mean=var", "out overlaps grad", "shared mean in a batch"])
def test_cuda_aliasing_refused_before_writing(case: str) -> None:
    """The same aliasing rules as on the CPU, from the tensors' addresses (nothing is read)."""
    base = torch.zeros(20, device="cuda")
    w, g = torch.rand(16, device="cuda"), torch.rand(16, device="cuda")
    m, v = torch.zeros(16, device="cuda"), torch.zeros(16, device="cuda")
    before = [to_numpy(t) for t in (w, g, m, v, base)]
    with pytest.raises(ValueError, match="share memory|overlaps"):
        if case == "mean=var":
            adamop.adam_update(w, g, m, m, lr=0.1, out=w)
        elif case == "out overlaps grad":
            g2 = base[:16]
            adamop.adam_update(w, g2, m, v, lr=0.1, out=base[4:])
        else:
            adamop.adam_update_multi([w, torch.rand(16, device="cuda")], [g, g], [m, m],
                                     [v, torch.zeros(16, device="cuda")], lr=0.1)
    for t, b in zip((w, g, m, v, base), before):
        assert_bitexact(t, b, "unchanged after the error")
