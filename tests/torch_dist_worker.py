"""One rank of the distributed test of ``adamop.torch.Adam`` (``test_torch_optim_dist.py``).

Launched as torchrun launches a script (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
``MASTER_PORT``), on CPU with gloo. Every rank trains the same small model on its own batches
(two param groups, an MXNet scheduler, weight decay, clipping; layers whose rows do not split
evenly over the ranks, one with a single row) and checks, bit for bit:

* DDP against one process that applies the averaged gradients of both ranks' batches;
* ``ZeroRedundancyOptimizer(optimizer_class=adamop.torch.Adam)`` against DDP, its consolidated
  ``state_dict`` against DDP's optimizer state, and a fresh ZeRO optimizer that loads it and
  continues against DDP continuing;
* FSDP2 (``fully_shard``: DTensor parameters and states, updated on the local shards) against
  DDP, and its sharded state (``state_dict`` and ``torch.distributed.checkpoint``'s
  ``get/set_optimizer_state_dict``) loaded into a fresh model and optimizer, continuing.

Each rank writes the names of the checks it passed to ``$ADAMOP_DIST_OUT/rank<r>.json``; a
failed check raises (the test shows the rank's stderr).
"""
from __future__ import annotations

import copy
import gc
import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

import adamop.torch
from adamop.lr_scheduler import FactorScheduler

STEPS, MORE = 6, 3          # steps before a state is saved, and after it is loaded
PASSED: list[str] = []


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3), nn.Tanh(), nn.Linear(3, 1))


def batches(rank: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(100 + rank)
    return [(torch.randn(8, 5, generator=g), torch.randn(8, 1, generator=g))
            for _ in range(STEPS + MORE)]


def groups(module: nn.Module) -> list[dict]:
    """Weights, and biases with their own multipliers (as MXNet's ``lr_mult``/``wd_mult``)."""
    named = list(module.named_parameters())
    return [{"params": [p for n, p in named if n.endswith("weight")]},
            {"params": [p for n, p in named if n.endswith("bias")], "lr_mult": 2.0,
             "wd_mult": 0.0}]


KW = {"lr": 0.05, "weight_decay": 1e-3, "clip_gradient": 0.5, "eps": 1e-6}


def scheduler() -> FactorScheduler:
    return FactorScheduler(step=2, factor=0.5, base_lr=0.05, warmup_steps=2,
                           warmup_begin_lr=0.01)


def mxnet_adam() -> Any:
    from adamop import optimizer as mx
    return mx.create("adam", learning_rate=KW["lr"])


def optimizer(module: nn.Module) -> adamop.torch.Adam:
    return adamop.torch.Adam(groups(module), **KW, lr_scheduler=scheduler())


def train(module: nn.Module, opt: torch.optim.Optimizer, data: list, steps: range) -> None:
    for k in steps:
        x, y = data[k]
        loss = ((module(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()


def full(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if hasattr(t, "full_tensor") else t.detach()


def same(what: str, got: list, want: list) -> None:
    """Bit for bit (float32 as int32), or an AssertionError naming the first difference."""
    assert len(got) == len(want), f"{what}: {len(got)} tensors, expected {len(want)}"
    for i, (a, b) in enumerate(zip(got, want)):
        a, b = full(a).contiguous(), full(b).contiguous()
        if a.shape != b.shape or not torch.equal(a.view(torch.int32), b.view(torch.int32)):
            raise AssertionError(f"rank {dist.get_rank()}: {what}: tensor {i} differs:\n{a}\n{b}")
    PASSED.append(what)


def states(opt: torch.optim.Optimizer, params: list) -> list:
    return [opt.state[p][k] for p in params for k in ("exp_avg", "exp_avg_sq")]


def in_order(module: nn.Module) -> list:
    """The parameters in the optimizer's (and its state_dict's) order."""
    return [p for g in groups(module) for p in g["params"]]


def reference(base: nn.Module) -> tuple[nn.Module, adamop.torch.Adam]:
    """One process: both ranks' gradients, averaged as DDP averages them, then one step."""
    module = copy.deepcopy(base)
    opt = optimizer(module)
    data = [batches(r) for r in range(dist.get_world_size())]
    for k in range(STEPS + MORE):
        grads = []
        for d in data:
            x, y = d[k]
            ((module(x) - y) ** 2).mean().backward()
            grads.append([p.grad.clone() for p in module.parameters()])
            opt.zero_grad()
        for p, *gs in zip(module.parameters(), *grads):
            p.grad = torch.stack(gs).sum(0) / len(gs)
        opt.step()
        opt.zero_grad()
    return module, opt


def main() -> None:
    dist.init_process_group("gloo")
    checks(dist.get_rank())
    out = Path(os.environ["ADAMOP_DIST_OUT"]) / f"rank{dist.get_rank()}.json"
    out.write_text(json.dumps(PASSED))
    gc.collect()   # DDP's reducers and FSDP's hooks go before their process group
    dist.barrier()
    dist.destroy_process_group()


def checks(rank: int) -> None:
    base, data = model(), batches(rank)
    ref, ref_opt = reference(base)

    # ---- DDP ---------------------------------------------------------------------------------
    from torch.nn.parallel import DistributedDataParallel as DDP
    ddp = DDP(copy.deepcopy(base))
    ddp_opt = optimizer(ddp.module)
    train(ddp, ddp_opt, data, range(STEPS))
    saved_params = [p.detach().clone() for p in ddp.module.parameters()]
    saved_states = [t.clone() for t in states(ddp_opt, in_order(ddp.module))]
    train(ddp, ddp_opt, data, range(STEPS, STEPS + MORE))
    final = list(ddp.module.parameters())
    same("DDP = one process with the averaged gradients", final, list(ref.parameters()))
    same("DDP optimizer states = one process", states(ddp_opt, final),
         states(ref_opt, list(ref.parameters())))

    # ---- ZeroRedundancyOptimizer -------------------------------------------------------------
    from torch.distributed.optim import ZeroRedundancyOptimizer as ZeRO
    zmod = DDP(copy.deepcopy(base))
    zopt = ZeRO(groups(zmod.module), optimizer_class=adamop.torch.Adam, **KW,
                lr_scheduler=scheduler())
    train(zmod, zopt, data, range(STEPS))
    same("ZeRO params = DDP after the first steps", list(zmod.module.parameters()), saved_params)
    zopt.consolidate_state_dict(to=0)
    box = [zopt.state_dict() if rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    consolidated = box[0]
    n = len(saved_params)
    same("ZeRO's consolidated state = DDP's optimizer state",
         [consolidated["state"][i][k] for i in range(n) for k in ("exp_avg", "exp_avg_sq")],
         saved_states)
    assert [consolidated["state"][i]["step"] for i in range(n)] == [STEPS] * n
    zmod2 = DDP(copy.deepcopy(base))
    with torch.no_grad():
        for p, q in zip(zmod2.module.parameters(), saved_params):
            p.copy_(q)
    zopt2 = ZeRO(groups(zmod2.module), optimizer_class=adamop.torch.Adam, **KW,
                 lr_scheduler=scheduler())
    zopt2.load_state_dict(copy.deepcopy(consolidated))
    train(zmod2, zopt2, data, range(STEPS, STEPS + MORE))
    same("ZeRO resumed from its consolidated state = DDP", list(zmod2.module.parameters()), final)

    # ---- FSDP2 -------------------------------------------------------------------------------
    from torch.distributed.checkpoint import state_dict as dcp
    from torch.distributed.fsdp import fully_shard

    def sharded() -> nn.Module:
        module = copy.deepcopy(base)
        for layer in module:
            if isinstance(layer, nn.Linear):
                fully_shard(layer)
        return fully_shard(module)

    fmod = sharded()
    fopt = optimizer(fmod)
    before = [full(p).clone() for p in fmod.parameters()]
    fresh = dcp.get_optimizer_state_dict(fmod, fopt)   # checkpoint loaders take a fresh one's too
    assert all(s["step"] == 0 for s in fresh["state"].values()) and len(fresh["state"]) == 6
    same("a fresh FSDP2 optimizer's checkpoint moves no weight", list(fmod.parameters()), before)
    assert all(type(p).__name__ == "DTensor" for p in fmod.parameters())
    train(fmod, fopt, data, range(STEPS))
    same("FSDP2 params = DDP after the first steps", list(fmod.parameters()), saved_params)
    same("FSDP2 sharded states = DDP's", states(fopt, in_order(fmod)), saved_states)
    assert all(type(fopt.state[p]["exp_avg"]).__name__ == "DTensor" for p in fmod.parameters())
    plain = fopt.state_dict()
    saved_dcp = dcp.get_optimizer_state_dict(fmod, fopt)
    model_state = {k: v.detach().clone() for k, v in fmod.state_dict().items()}
    for how in ("state_dict", "torch.distributed.checkpoint"):
        fmod2 = sharded()
        fmod2.load_state_dict(model_state)
        fopt2 = optimizer(fmod2)
        if how == "state_dict":
            fopt2.load_state_dict(copy.deepcopy(plain))
        else:
            dcp.set_optimizer_state_dict(fmod2, fopt2, copy.deepcopy(saved_dcp))
        same(f"FSDP2 states loaded through {how}", states(fopt2, in_order(fmod2)), saved_states)
        train(fmod2, fopt2, data, range(STEPS, STEPS + MORE))
        same(f"FSDP2 resumed through {how} = DDP", list(fmod2.parameters()), final)
    train(fmod, fopt, data, range(STEPS, STEPS + MORE))
    same("FSDP2 = DDP after every step", list(fmod.parameters()), final)

    # MXNet's (full) states onto FSDP2's shards: sharded as the parameters are
    mx_states = {i: (saved_states[2 * i].numpy(), saved_states[2 * i + 1].numpy())
                 for i in range(len(saved_params))}
    fmod3 = sharded()
    fopt3 = adamop.torch.Adam.from_mxnet(in_order(fmod3), (mx_states, mxnet_adam()))
    assert all(type(fopt3.state[p]["exp_avg"]).__name__ == "DTensor" for p in fmod3.parameters())
    same("from_mxnet states on FSDP2 shards", states(fopt3, in_order(fmod3)), saved_states)


if __name__ == "__main__":
    main()
