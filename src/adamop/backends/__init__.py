"""The registered backends. Registration is explicit and cheap: no backend module is imported
(and nothing is compiled) until a call selects it."""
from __future__ import annotations

from ..dispatch import KernelSpec, register


def _cuda_probe() -> str | None:
    import torch
    if not torch.cuda.is_available():
        return "torch reports no CUDA device"
    return None


NUMPY = register(KernelSpec(
    name="numpy", module="adamop.reference", devices=("cpu",), array_library="numpy",
    priority=0, description="the NumPy reference: the executable definition of MXNet's math"))

NUMBA = register(KernelSpec(
    name="numba", module="adamop.backends.numba_backend", devices=("cpu",),
    array_library="numpy", priority=10, requires=("numba",),
    description="fused multi-threaded CPU kernels (Numba prange), cached on disk"))

TRITON = register(KernelSpec(
    name="triton", module="adamop.backends.triton_backend", devices=("cuda",),
    array_library="torch", priority=20, requires=("torch", "triton"), probe=_cuda_probe,
    description="fused GPU kernels over torch CUDA tensors",
    interpreter=("cpu", "TRITON_INTERPRET")))
