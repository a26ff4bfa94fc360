"""Compile adamop's Triton kernels for an H100/H200 (sm_90) without a GPU and print their PTX.

Run as ``python tests/triton_ptx_child.py OUT.json CASES_JSON`` by ``tests/test_triton_ptx.py``,
under the CI's Triton and under Triton 3.6 (the GPU machine's version) from the side venv
``.triton36``; CASES_JSON lists ``[id, kernel, dtype, clip, lazy]``.
It needs nothing but the standard library and ``triton``: the side venv has no NumPy or torch,
so the kernels are loaded from their file, not through the ``adamop`` package.

Every kernel is specialised as the backend launches it (contiguous, 16-byte aligned, fp fusion
off, 4 warps); ``fusion`` entries compile with contraction on, and the probes are one-line
kernels of a negation, so the parent can show that its checks are able to fail.
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

KERNELS = Path(__file__).resolve().parents[1] / "src/adamop/backends/triton_kernels.py"
TARGET = GPUTarget("cuda", 90, 32)          # H100 and H200: sm_90, warps of 32
SCALARS = ("lr", "beta1", "beta2", "epsilon", "wd", "rescale_grad", "clip_gradient")
DT = {"fp16": tl.float16, "fp32": tl.float32, "fp64": tl.float64}


@triton.jit
def unary_minus_probe(x_ptr, y_ptr):
    """``-x``: Triton 3.6 lowers it to ``0 - x`` (+0.0 for x = +0.0), later versions to neg."""
    tl.store(y_ptr, -tl.load(x_ptr))


@triton.jit
def zero_minus_probe(x_ptr, y_ptr):
    """``0 - x`` spelled out: the sign-losing form on every version."""
    tl.store(y_ptr, 0.0 - tl.load(x_ptr))


def _load_kernels():
    spec = importlib.util.spec_from_file_location("adamop_triton_kernels", KERNELS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _compile(fn, sig: dict, const: dict, aligned: list[str], fusion: bool) -> str:
    sig = dict(sig, **{k: "constexpr" for k in const})
    sig = {a: sig[a] for a in fn.arg_names}
    attrs = {(fn.arg_names.index(a),): [["tt.divisibility", 16]] for a in aligned}
    compiled = triton.compile(ASTSource(fn, sig, const, attrs), target=TARGET,
                              options=dict(num_warps=4, enable_fp_fusion=fusion))
    return compiled.asm["ptx"]


def kernel_ptx(kernels, name: str, dtype: str, *, clip: bool = True, lazy: bool = False,
               fusion: bool = False) -> str:
    """PTX of one of adamop's kernels for ``dtype`` (fp16/fp32/fp64; "mp": the batched kernel of
    mp_adam_update, float32 arithmetic on the master copy with a float16 grad and out)."""
    fn = getattr(kernels, name)
    mp = dtype == "mp"
    dtype = "fp32" if mp else dtype
    # the rounding order of v as the reference's PathRules give it: dense never squares g first,
    # lazy when clipping, standard always
    square_first = (clip if lazy else True) if name == "adam_rows_kernel" else False
    flags = dict(IS_F16=dtype == "fp16", IS_F64=dtype == "fp64", CLIP=clip,
                 V_SQUARE_FIRST=square_first)
    sig = {s: "fp32" for s in SCALARS}
    if name == "adam_dense_kernel":
        ptrs = ["w_ptr", "g_ptr", "m_ptr", "v_ptr", "o_ptr"]
        const = dict(w_s=1, g_s=1, m_s=1, v_s=1, o_s=1, BLOCK=2048, **flags)
        sig.update({p: f"*{dtype}" for p in ptrs}, n="i64")
        aligned = ptrs + ["n"]
    elif name == "adam_multi_kernel":
        ptrs = ["table_ptr", "chunk_tensor_ptr", "chunk_first_ptr", "scalars_ptr"]
        const = dict(DT=DT[dtype], GDT=DT["fp16" if mp else dtype], MP=mp, PER_TENSOR=True,
                     ALIGNED=True, BLOCK=2048, **flags)
        sig.update(dict(zip(ptrs, ["*i64", "*i32", "*i64", "*fp32"])))
        aligned = ptrs
    else:
        ptrs = ["w_ptr", "gd_ptr", "gi_ptr", "pos_ptr", "m_ptr", "v_ptr", "o_ptr"]
        const = dict(w_cs=1, g_cs=1, m_cs=1, v_cs=1, o_cs=1, LAZY=lazy, BLOCK_R=32, BLOCK_C=64,
                     **flags)
        sig.update({p: "*i64" if p in ("gi_ptr", "pos_ptr") else f"*{dtype}" for p in ptrs})
        sig.update(n_rows="i64", n_cols="i32", n_col_blocks="i32", n_table_rows="i64",
                   **{f"{a}_rs": "i64" for a in "wgmvo"})
        aligned = ptrs + ["n_cols"] + [f"{a}_rs" for a in "wgmvo"]
    return _compile(fn, sig, const, aligned, fusion)


def probe_ptx(fn, dtype: str) -> str:
    return _compile(fn, {"x_ptr": f"*{dtype}", "y_ptr": f"*{dtype}"}, {}, [], False)


def main(out: str, cases: list) -> None:
    kernels = _load_kernels()
    ptx = {cid: kernel_ptx(kernels, k, d, clip=c, lazy=lz) for cid, k, d, c, lz in cases}
    ptx["fusion-dense-fp32"] = kernel_ptx(kernels, "adam_dense_kernel", "fp32", fusion=True)
    for d in ("fp32", "fp64"):
        ptx[f"probe-unary-minus-{d}"] = probe_ptx(unary_minus_probe, d)
        ptx[f"probe-zero-minus-{d}"] = probe_ptx(zero_minus_probe, d)
    Path(out).write_text(json.dumps({"triton": triton.__version__, "ptx": ptx}))


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]))
