"""Checkpoints of CUDA tensors: saved (.params) and dumped (.states) as their host copies, which
are what MXNet writes for the same arrays (tests/test_ckpt_mxnet.py). Needs a CUDA device."""
from __future__ import annotations

import pytest

from adamop import RowSparseArray, nd, states

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(),
                                 reason="needs a CUDA device: torch.cuda.is_available() is False")]


def test_cuda_tensors_are_written_as_their_host_copies():
    x = torch.arange(6, dtype=torch.float16).reshape(2, 3)
    b = torch.randn(4, 2).to(torch.bfloat16)
    coo = torch.zeros(5, 2).index_fill_(0, torch.tensor([1, 3]), 2.5).to_sparse(1)
    host = nd.save_tobuffer({"x": x, "b": b, "e": coo})
    assert nd.save_tobuffer({"x": x.cuda(), "b": b.cuda(), "e": coo.cuda()}) == host
    rsp = RowSparseArray.from_torch(coo)
    assert states.dumps({0: (x.cuda(), RowSparseArray.from_torch(coo.cuda()))}) == \
        states.dumps({0: (x, rsp)})
