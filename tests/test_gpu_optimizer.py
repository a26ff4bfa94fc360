"""The dev runs of ``data/optimizer_dev.npz`` replayed with torch CUDA tensors (weights, grads,
row_sparse arrays and the states the optimizer creates on the device), bit for bit after every
step. Skips (with the reason) where torch sees no CUDA device; on a machine with one,
``GPU_TESTS=tests/test_gpu_optimizer.py bash scripts/gpu.sh`` runs it. About 5 s on a GPU.
"""
from __future__ import annotations


import numpy as np
import pytest

from conftest import dev_runs
from optimizer_runs import replay

torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch)")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="needs a CUDA device: torch.cuda.is_available() is False")]

ARRAYS, RUNS = dev_runs()


def _cuda(x: np.ndarray):
    return torch.from_numpy(x).cuda()


@pytest.mark.parametrize("run", RUNS, ids=[r["name"] for r in RUNS])
def test_dev_run_bit_identical_on_cuda(run):
    problems, updater, _, weights = replay(run, ARRAYS, convert=_cuda)
    assert not problems, "\n".join(problems)
    state = updater.states[run["params"][0]["index"]]
    mean = state[1][0] if isinstance(state[1], tuple) else state[0]
    data = getattr(mean, "data", mean)   # a RowSparseArray's rows, or the tensor
    assert data.device.type == "cuda"    # states live on the weight's device
