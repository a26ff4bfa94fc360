"""``adamop.torch.Adam`` on CUDA tensors: the dev runs of ``data/optimizer_dev.npz`` replayed with
parameters on the GPU, and a small model trained on the GPU and on the CPU with the same
gradients (float32, sparse COO grads, float16 and bfloat16 master copies), bit for bit. Skips
where torch sees no CUDA device; ``GPU_TESTS=tests/test_gpu_torch_optim.py bash scripts/gpu.sh``
runs it. About 10 s on a GPU.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
from conftest import dev_runs

torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch)")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="needs a CUDA device: torch.cuda.is_available() is False")]

from test_torch_optim import KINDS, bits, loss_of, make
from torch_runs import replay

from adamop.torch import Adam

ARRAYS, RUNS = dev_runs()


@pytest.mark.parametrize("run", RUNS, ids=[r["name"] for r in RUNS])
def test_dev_run_bit_identical_on_cuda(run):
    problems, opt, params, _ = replay(run, ARRAYS, "from_mxnet", device="cuda")
    assert not problems, "\n".join(problems)
    assert all(p.device.type == "cuda" for p in params)
    assert opt.state[params[0]]["exp_avg"].device.type == "cuda"


@pytest.mark.parametrize("kind", ["float32", "sparse lazy", "sparse standard", "float16 master",
                                  "bfloat16 master", "scheduler"])
def test_cuda_matches_cpu(kind):
    m, opt = make(kind)
    mc = copy.deepcopy(m).cuda()
    oc = Adam(mc.parameters(), lr=0.01, **copy.deepcopy(KINDS[kind][2]))
    for k in range(4):
        opt.zero_grad()
        loss_of(m, k).backward()
        for p, q in zip(m.parameters(), mc.parameters()):
            q.grad = p.grad.cuda()
        opt.step()
        oc.step()
    for p, q in zip(m.parameters(), mc.parameters()):
        assert np.array_equal(bits(p), bits(q))
        assert np.array_equal(bits(opt.state[p]["exp_avg_sq"]), bits(oc.state[q]["exp_avg_sq"]))
