"""``adamop.torch.Adam`` under DDP, ``ZeroRedundancyOptimizer`` and FSDP2: two CPU processes with
gloo, launched by torchrun (``torch.distributed.run``), as the README shows.

The checks run in the ranks (``torch_dist_worker.py``): DDP equals one process applying both
ranks' averaged gradients, ZeRO and FSDP2 equal DDP, bit for bit, and ZeRO's consolidated
``state_dict`` and FSDP2's sharded state (``state_dict`` and ``torch.distributed.checkpoint``)
load into fresh optimizers that continue as DDP does. About 10 s.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

import adamop

WORKER = Path(__file__).resolve().parent / "torch_dist_worker.py"
CHECKS = ["DDP = one process with the averaged gradients", "DDP optimizer states = one process",
          "ZeRO params = DDP after the first steps",
          "ZeRO's consolidated state = DDP's optimizer state",
          "ZeRO resumed from its consolidated state = DDP",
          "a fresh FSDP2 optimizer's checkpoint moves no weight",
          "FSDP2 params = DDP after the first steps", "FSDP2 sharded states = DDP's",
          "FSDP2 states loaded through state_dict", "FSDP2 resumed through state_dict = DDP",
          "FSDP2 states loaded through torch.distributed.checkpoint",
          "FSDP2 resumed through torch.distributed.checkpoint = DDP",
          "FSDP2 = DDP after every step", "from_mxnet states on FSDP2 shards"]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                    reason="torch.distributed with gloo is not available in this torch build")
def test_ddp_zero_fsdp2_bit_identical(tmp_path):
    src = str(Path(adamop.__file__).resolve().parents[1])   # the adamop under test
    # TMPDIR: torchrun's own scratch folders (torchelastic_*) go to the test's folder, not /tmp
    env = {**os.environ, "ADAMOP_DIST_OUT": str(tmp_path), "OMP_NUM_THREADS": "1",
           "TMPDIR": str(tmp_path),
           "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", "2", str(WORKER)],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    for rank in (0, 1):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == CHECKS
