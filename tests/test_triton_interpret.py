"""The Triton kernels run in Triton's CPU interpreter, bit for bit against the NumPy reference and
MXNet's golden outputs, so their logic is checked on machines without a GPU.

Triton reads ``TRITON_INTERPRET`` when a kernel is *defined* (``@triton.jit``), so the kernels run
in a child process started with ``TRITON_INTERPRET=1`` (this file, run as a script): it runs every
case and writes ``{case id: None or the mismatch}``; each test here reads its own entry.

What the interpreter cannot check: FMA contraction, the IEEE-ness of GPU division and square root,
how a negation is lowered (NumPy computes every operation exactly rounded), and > 2^31-element
offsets (the memory is not there). ``tests/test_triton_ptx.py`` checks the compiled code for
sm_90 without a GPU; ``tests/test_gpu.py`` checks everything on a CUDA device.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_golden  # noqa: E402  (MXNet's golden cases and their comparison rules)

HAVE_TRITON = importlib.util.find_spec("triton") is not None
DTYPES = ("float16", "float32", "float64")
PARAMS = {
    "plain": dict(lr=0.01, wd=0.02, rescale_grad=0.5),
    "clip": dict(lr=0.003, beta1=0.8, beta2=0.99, epsilon=1e-4, wd=0.1, clip_gradient=0.3),
    "nowd": dict(lr=0.01),
}

# Dense layouts: (base shape, view applied to every array). "step" is addressed in place with a
# flat stride; "slice", "transposed" and "swapped" are staged through contiguous copies.
LAYOUTS: dict[str, tuple[tuple, Callable[[Any], Any]]] = {
    "contiguous": ((6, 40), lambda a: a),
    "long": ((2 * 2048 + 3,), lambda a: a),            # several programs and a ragged tail
    "step": ((6, 80), lambda a: a[:, ::2]),
    "slice": ((6, 50), lambda a: a[:, :40]),
    "transposed": ((40, 6), lambda a: a.T),
    "swapped": ((6, 5, 8), lambda a: a.swapaxes(1, 2)),
    "scalar": ((), lambda a: a),
}
ALIASES = ("out=weight", "out_separate", "out=mean", "grad=weight")
# Row-sparse: (weight base shape, view, grad rows); grad data is laid out like the weight's rows.
ROWS: dict[str, tuple[tuple, Callable[[Any], Any], list]] = {
    "1d_some": ((12,), lambda a: a, [0, 3, 4, 11]),
    "2d_some": ((12, 40), lambda a: a, [0, 3, 4, 11]),
    "2d_all": ((12, 40), lambda a: a, list(range(12))),
    "2d_none": ((12, 40), lambda a: a, []),
    "3d_some": ((12, 5, 8), lambda a: a, [1, 2, 7]),
    "many_rows": ((100, 40), lambda a: a, list(range(0, 100, 3)) + [99]),
    "wide_rows": ((5, 1500), lambda a: a, [1, 4]),      # two column blocks
    "colslice": ((12, 48), lambda a: a[:, :40], [2, 5, 6]),
    "transposed": ((40, 12), lambda a: a.T, [2, 5, 6]),
    "swapped": ((12, 8, 5), lambda a: a.swapaxes(1, 2), [0, 11]),
    "signed_zero": ((12, 40), lambda a: a, [3]),   # mean -0.0, weight < 0: the sign of g shows
}
# Batched calls and the launches they must make: (dtypes, clip modes) -> (multi, dense) launches.
LAUNCHES = {
    "uniform": (("float32",) * 8, ("plain",) * 8, (1, 0)),
    "two-dtypes": (("float32", "float16") * 4, ("plain",) * 8, (2, 0)),
    "two-clip-modes": (("float64",) * 8, ("plain", "clip") * 4, (2, 0)),
    "single": (("float32",), ("plain",), (1, 0)),   # a batch of one: the same batched launch
}
MULTI = ("uniform", "per-tensor", "mixed-clip", "noncontiguous", "same-weight-twice",
         "reads-another-write", "strided-view-of-another", "planned-run-twice", "signed-zero-wd")
# a batch in which one update writes what another reads or writes is refused, nothing written
REFUSED = ("same-weight-twice", "reads-another-write", "strided-view-of-another")


def _dense_ids() -> list[str]:
    return [f"dense-{d}-{lay}-{p}-{al}" for d in DTYPES for lay in LAYOUTS for p in PARAMS
            for al in ALIASES]


def _rows_ids() -> list[str]:
    return [f"{path}-{d}-{r}-{p}" for path in ("lazy", "std") for d in DTYPES for r in ROWS
            for p in PARAMS]


def _multi_ids() -> list[str]:
    return [f"multi-{d}-{m}" for d in DTYPES for m in MULTI]


GOLDEN_IDS = [test_golden._case_id(c) for c in test_golden.CASES]


# ---- the parent: pytest ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, Any]:
    if not HAVE_TRITON:
        pytest.skip("triton is not installed (pip install triton): the interpreter tests need it")
    out = tmp_path_factory.mktemp("interp") / "results.json"
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, __file__, str(out)], env=env, capture_output=True,
                          text=True, timeout=1800)
    if proc.returncode != 0:
        pytest.fail(f"interpreter child failed (rc {proc.returncode}):\n{proc.stdout[-4000:]}\n"
                    f"{proc.stderr[-4000:]}")
    return json.loads(out.read_text())


def _check(results: dict, key: str) -> None:
    assert key in results, f"the interpreter child did not run {key}"
    assert results[key] is None, results[key]


@pytest.mark.parametrize("key", _dense_ids())
def test_dense_matches_reference(results: dict, key: str) -> None:
    _check(results, key)


@pytest.mark.parametrize("key", _rows_ids())
def test_row_sparse_matches_reference(results: dict, key: str) -> None:
    _check(results, key)


@pytest.mark.parametrize("key", _multi_ids())
def test_batched_matches_reference(results: dict, key: str) -> None:
    _check(results, key)


@pytest.mark.parametrize("key", [f"launches-{k}" for k in LAUNCHES])
def test_batched_launch_count(results: dict, key: str) -> None:
    _check(results, key)


@pytest.mark.parametrize("key", GOLDEN_IDS)
def test_golden_through_api(results: dict, key: str) -> None:
    _check(results, "golden-" + key)


def test_child_ran_in_the_interpreter(results: dict) -> None:
    assert results["interpreted"] is None


# ---- the registry's parity tests, with triton among the backends --------------------------------
def test_backend_parity_suite_runs_on_triton_in_the_interpreter() -> None:
    """tests/test_backends.py is parametrised over the registry's backends that run CPU arrays in
    the process; under TRITON_INTERPRET=1 that includes triton (named explicitly: the
    interpreter is never chosen automatically), so the same parity tests run its kernels here."""
    if not HAVE_TRITON:
        pytest.skip("triton is not installed (pip install triton): the interpreter tests need it")
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(Path(__file__).with_name("test_backends.py")), "-k", "triton"],
                          env=env, capture_output=True, text=True, timeout=1800)
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-2000:]
    assert proc.returncode == 0, f"{tail}\n{proc.stdout[-4000:]}"
    passed = int(tail.split(" passed")[0].split()[-1])
    assert passed >= 200 and "skipped" not in tail and "failed" not in tail, tail


# ---- host-side helpers of the backend (no kernel runs) ----------------------------------------
@pytest.fixture(scope="module")
def tb():
    if not HAVE_TRITON:
        pytest.skip("triton is not installed (pip install triton)")
    from adamop.backends import triton_backend
    return triton_backend


@pytest.mark.parametrize("view, stride", [
    (lambda a: a, 1), (lambda a: a[:, ::2], 2), (lambda a: a[2:3, ::3], 3),
    (lambda a: a[:, :5], None), (lambda a: a.T, None), (lambda a: a[:, 1:2], 8),
    (lambda a: a.reshape(-1)[5], 1)])
def test_flat_stride(tb, view, stride) -> None:
    import torch
    assert tb._flat_stride(view(torch.zeros(4, 8))) == stride


@pytest.mark.parametrize("view, strides", [
    (lambda a: a, (40, 1)), (lambda a: a[:, :, ::2], (40, 2)), (lambda a: a[:, 1], (40, 1)),
    (lambda a: a.swapaxes(1, 2), None), (lambda a: a.reshape(4, 40).T, (1, 40)),
    (lambda a: a.reshape(-1), (1, 1))])
def test_row_strides(tb, view, strides) -> None:
    import torch
    assert tb._row_strides(view(torch.zeros(4, 5, 8))) == strides


# ---- the child: TRITON_INTERPRET=1 -------------------------------------------------------------
def _run_all() -> dict[str, Any]:
    import torch

    import adamop
    from adamop import RowSparseArray, reference
    from adamop.backends import TRITON
    from adamop.backends import triton_backend as tb
    from adamop.backends.triton_kernels import adam_dense_kernel
    from adamop.bitwise import mismatch

    rng = np.random.default_rng(20250101)
    results: dict[str, Any] = {}
    interpreted = type(adam_dense_kernel).__name__ == "InterpretedFunction"
    results["interpreted"] = None if interpreted else type(adam_dense_kernel).__name__

    def scalars(dtype: str, p: str):
        return adamop.AdamParams.from_kwargs(PARAMS[p]).scalars(np.dtype(dtype))

    def draw(shape: tuple, dtype: str, kind: str) -> np.ndarray:
        x = rng.standard_normal(shape)
        x = np.abs(x) * 0.01 if kind == "var" else x * (0.1 if kind == "mean" else 1.0)
        return np.asarray(x, dtype=dtype)

    def record(key: str, body: Callable[[], str | None]) -> None:
        try:
            with np.errstate(all="ignore"):
                results[key] = body()
        except Exception:
            results[key] = traceback.format_exc()

    def compare(pairs) -> str | None:
        msgs = [f"{name}: {m}" for name, got, exp in pairs if (m := mismatch(got, exp))]
        return "\n".join(msgs) or None

    # dense: same base buffers, same views, numpy reference vs the kernel on torch views
    def dense_case(dtype: str, layout: str, p: str, alias: str) -> str | None:
        shape, view = LAYOUTS[layout]
        bases = {k: draw(shape, dtype, k) for k in ("weight", "grad", "mean", "var", "out")}
        ref = {k: b.copy() for k, b in bases.items()}
        tst = {k: torch.from_numpy(b.copy()) for k, b in bases.items()}
        s = scalars(dtype, p)
        for lib, store, fn in (("np", ref, reference.adam_dense), ("t", tst, tb.adam_dense)):
            w, g, m, v, o = (view(store[k]) for k in ("weight", "grad", "mean", "var", "out"))
            o = {"out=weight": w, "out=mean": m}.get(alias, o)
            g = w if alias == "grad=weight" else g
            fn(w, g, m, v, o, s, reference.DENSE)
        return compare((k, tst[k], ref[k]) for k in bases)

    for key in _dense_ids():
        _, d, lay, p, al = key.split("-", 4)
        record(key, lambda: dense_case(d, lay, p, al))

    def rows_case(path: str, dtype: str, rows: str, p: str) -> str | None:
        shape, view, idx = ROWS[rows]
        bases = {k: draw(shape, dtype, k) for k in ("weight", "mean", "var")}
        if rows == "signed_zero":
            bases["weight"], bases["mean"][...] = -np.abs(bases["weight"]), -0.0
        vshape = view(bases["weight"]).shape
        gdata = draw((len(idx),) + tuple(vshape[1:]), dtype, "grad")
        gidx = np.array(idx, dtype=np.int64)
        ref = {k: b.copy() for k, b in bases.items()}
        tst = {k: torch.from_numpy(b.copy()) for k, b in bases.items()}
        s = scalars(dtype, p)
        rule = {"lazy": reference.LAZY, "std": reference.STD}[path]
        reference_args = (gdata, gidx)
        kernel_args = (torch.from_numpy(gdata.copy()), torch.from_numpy(gidx))
        for store, fn, (gd, gi) in ((ref, reference.adam_rows, reference_args),
                                    (tst, tb.adam_rows, kernel_args)):
            w, m, v = (view(store[k]) for k in ("weight", "mean", "var"))
            fn(w, gd, gi, m, v, w, s, rule)
        return compare((k, tst[k], ref[k]) for k in bases)

    for key in _rows_ids():
        path, d, r, p = key.split("-", 3)
        record(key, lambda: rows_case(path, d, r, p))

    # batches: the public API on torch CPU tensors, with dispatch sending them to this backend
    adamop.dispatch.select = lambda device, explicit=None: (TRITON, tb)

    def multi_case(dtype: str, mode: str) -> str | None:
        sizes = [1, 2047, 2048, 2049, 0, 5000, 3, 700]
        bases = [{k: draw((n,), dtype, k) for k in ("weight", "grad", "mean", "var")}
                 for n in sizes]
        if mode == "signed-zero-wd":   # wd's sign shows: -0 grad + w*wd, then into a -0 mean
            for b in bases:
                b["weight"] = np.abs(b["weight"])
                b["grad"][::2] = -0.0
                b["mean"][::2] = -0.0
        kwargs = [dict(PARAMS["plain"]) for _ in sizes]
        if mode in ("per-tensor", "mixed-clip"):
            kwargs = [dict(PARAMS["plain" if i % 2 else "clip"]) for i in range(len(sizes))]
        if mode == "per-tensor":         # same clip mode, different lr: one launch, scalar table
            kwargs = [dict(PARAMS["clip"], lr=0.001 * (i + 1)) for i in range(len(sizes))]
        if mode == "signed-zero-wd":     # equal under ==, not in their bits
            kwargs = [dict(lr=0.01, wd="-0.0" if i % 2 else "0.0") for i in range(len(sizes))]
        stores = {}
        for lib in ("np", "t"):
            conv = (lambda a: a.copy()) if lib == "np" else (lambda a: torch.from_numpy(a.copy()))
            stores[lib] = [{k: conv(a) for k, a in b.items()} for b in bases]
        columns = {}
        for lib, store in stores.items():
            cols = [[st[k] for st in store] for k in ("weight", "grad", "mean", "var")]
            if mode == "noncontiguous":      # a strided member runs on its own
                for c in cols:
                    c[5] = c[5][::2]
            if mode == "same-weight-twice":
                for c in cols:
                    c.append(c[5])
            if mode == "strided-view-of-another":
                for c in cols:
                    c.append(c[5][::2])
            if mode == "reads-another-write":    # update 2 reads update 1's new weight
                cols = [[x[:2047] if i == 2 else x for i, x in enumerate(c)] for c in cols]
                cols[1][2] = cols[0][1][:2047]
            columns[lib] = cols
        each = [kwargs[i % len(kwargs)] for i in range(len(columns["t"][0]))]
        per = {k: [kw.get(k) for kw in each] for k in dict.fromkeys(k for kw in each for k in kw)}
        if mode in REFUSED:
            before = [x.clone() for c in columns["t"] for x in c]
            try:
                adamop.adam_update_multi(*columns["t"], out=columns["t"][0], **per)
            except ValueError as exc:
                if "share memory" not in str(exc):
                    return f"refused with another message: {exc}"
            else:
                return "an overlapping batch was not refused"
            after = [x for c in columns["t"] for x in c]
            return compare((f"input {i}", a, b.numpy()) for i, (a, b) in
                           enumerate(zip(after, before)))
        for step in range(2 if mode == "planned-run-twice" else 1):   # a kept plan runs again
            for i, kw in enumerate(each):
                w, g, m, v = (c[i] for c in columns["np"])
                reference.adam_dense(w, g, m, v, w,
                                     adamop.AdamParams.from_kwargs(kw).scalars(np.dtype(dtype)),
                                     reference.DENSE)
            adamop.adam_update_multi(*columns["t"], out=columns["t"][0], **per)
        return compare((f"[{i}].{k}", stores["t"][i][k], stores["np"][i][k])
                       for i in range(len(sizes)) for k in bases[i])

    for key in _multi_ids():
        _, d, m = key.split("-", 2)
        record(key, lambda: multi_case(d, m))

    class Counted:
        """Counts the launches of a kernel (``kernel[grid](...)``)."""

        def __init__(self, kernel):
            self.kernel, self.n = kernel, 0

        def __getitem__(self, grid):
            self.n += 1
            return self.kernel[grid]

    def launches_case(dtypes, pnames, want) -> str | None:
        cols: list[list] = [[], [], [], []]
        for d in dtypes:
            for c, k in zip(cols, ("weight", "grad", "mean", "var")):
                c.append(torch.from_numpy(draw((3000,), d, k)))
        per = {k: [PARAMS[p].get(k) for p in pnames] for k in ("lr", "wd", "rescale_grad",
                                                               "clip_gradient")}
        counts = Counted(tb.adam_multi_kernel), Counted(tb.adam_dense_kernel)
        tb.adam_multi_kernel, tb.adam_dense_kernel = counts
        try:
            adamop.adam_update_multi(*cols, out=cols[0], **per)
        finally:
            tb.adam_multi_kernel, tb.adam_dense_kernel = (c.kernel for c in counts)
        got = tuple(c.n for c in counts)
        return None if got == want else f"(batched, single) launches: {got}, expected {want}"

    for name, (dts, pns, want) in LAUNCHES.items():
        record(f"launches-{name}", lambda: launches_case(dts, pns, want))

    # golden: the public API on torch CPU tensors, sent to this backend (as the batches above)
    def to_torch(x):
        if isinstance(x, RowSparseArray):
            return RowSparseArray(torch.from_numpy(x.data.copy()),
                                  torch.from_numpy(x.indices.copy()), x.shape)
        return torch.from_numpy(x.copy())

    def golden_case(c: dict) -> str | None:
        weight, grad, mean, var = (to_torch(x) for x in test_golden._inputs(c))
        out = weight if c["out_is_weight"] else None
        result = adamop.adam_update(weight, grad, mean, var, out=out, **c["kwargs"])
        w_exp, m_exp, v_exp = test_golden._expected(c)
        return compare((("weight_out", result, w_exp), ("mean_out", mean, m_exp),
                        ("var_out", var, v_exp)))

    for c in test_golden.CASES:
        record("golden-" + test_golden._case_id(c), lambda: golden_case(c))
    return results


if __name__ == "__main__":
    import warnings
    warnings.simplefilter("ignore")     # NumPy warns about the NaN/inf cases the kernels compute
    if os.environ.get("TRITON_INTERPRET") != "1":
        sys.exit("run with TRITON_INTERPRET=1 (the tests start this script that way)")
    Path(sys.argv[1]).write_text(json.dumps(_run_all()))
