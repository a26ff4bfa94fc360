"""The triton backend on a CUDA device, asynchronous as a training step needs it: an update is
captured in a CUDA graph after one warm-up call and replays bit for bit, the host never waits
for the device, and a repeated batched step does no per-tensor work on the host (so 2,000 small
tensors cost the GPU's time, not Python's). Through the public API only: these hold whatever
the backend's launchers do. Skipped, with the reason, without a CUDA device.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import adamop
from adamop import RowSparseArray, reference
from adamop.bitwise import assert_bitexact
from conftest import python_calls
from test_gpu import DTYPES, _draw, gpu

torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch)")


# ---- no host synchronisation: CUDA graphs ------------------------------------------------------
def _capture_and_compare(call, state, reference_steps) -> None:
    """Call ``call`` once (the warm-up: compiles, plans), capture its second call in a CUDA
    graph, replay twice from the initial state and compare with the reference applied twice.
    The warm-up runs on a side stream, as torch.cuda.graphs advises."""
    initial = {k: t.clone() for k, t in state.items()}
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        call()
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


def _multi_state(rng, sizes, dtypes) -> dict:
    return {f"{k}{i}": torch.from_numpy(_draw(rng, (int(n),), d, k)).cuda()
            for i, (n, d) in enumerate(zip(sizes, dtypes))
            for k in ("weight", "grad", "mean", "var")}


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("path", ["dense", "lazy", "std", "multi", "multi-2000-per-tensor-lr"])
def test_update_is_captured_in_a_cuda_graph(path: str) -> None:
    rng = np.random.default_rng(5)
    kw = dict(lr=0.01, wd=0.01)
    if path.startswith("multi"):
        if path == "multi":
            sizes, dtypes = [3000, 70000, 1], ["float32"] * 3
        else:       # mixed dtypes and clipping modes: several launches, per-tensor scalars
            sizes = rng.integers(1, 5000, size=2000)
            dtypes = [DTYPES[i % 3] for i in range(2000)]
            kw = dict(kw, lr=[float(x) for x in rng.uniform(1e-4, 1e-2, size=2000)],
                      clip_gradient=[-1.0 if i % 5 else 0.5 for i in range(2000)])
        state = _multi_state(rng, sizes, dtypes)
        n = len(sizes)
        lists = [[state[f"{k}{i}"] for i in range(n)] for k in ("weight", "grad", "mean", "var")]
        each = [adamop.AdamParams.from_kwargs({k: (v[i] if isinstance(v, list) else v)
                                               for k, v in kw.items()})
                .scalars(np.dtype(dtypes[i])) for i in range(n)]

        def call():
            adamop.adam_update_multi(*lists, out=lists[0], **kw)

        def steps(e):
            for i in range(n):
                reference.adam_dense(e[f"weight{i}"], e[f"grad{i}"], e[f"mean{i}"], e[f"var{i}"],
                                     e[f"weight{i}"], each[i], reference.DENSE)
    else:
        shape = (1000, 50)
        state = {k + "0": torch.from_numpy(_draw(rng, shape, "float32", k)).cuda()
                 for k in ("weight", "grad", "mean", "var")}
        s = adamop.AdamParams.from_kwargs(dict(kw, lazy_update=path != "std")) \
            .scalars(np.dtype("float32"))
        rows = np.array([1, 5, 6, 900], np.int64)
        gdata = _draw(rng, (rows.size, 50), "float32", "grad")
        grad = RowSparseArray(torch.from_numpy(gdata).cuda(), torch.from_numpy(rows).cuda(),
                              shape)                       # built (and checked) outside

        def call():
            g = state["grad0"] if path == "dense" else grad
            adamop.adam_update(state["weight0"], g, state["mean0"], state["var0"],
                               out=state["weight0"], lazy_update=path == "lazy", **kw)

        def steps(e):
            if path == "dense":
                reference.adam_dense(e["weight0"], e["grad0"], e["mean0"], e["var0"],
                                     e["weight0"], s, reference.DENSE)
            else:
                reference.adam_rows(e["weight0"], gdata, rows, e["mean0"], e["var0"],
                                    e["weight0"], s, reference.LAZY if path == "lazy"
                                    else reference.STD)
    _capture_and_compare(call, state, steps)


@gpu
@pytest.mark.gpu
def test_capture_without_warm_up_is_captured_or_refused() -> None:
    """Captured at once, a batched update either works or refuses with a RuntimeError saying to
    call it once first; never a silent wrong result."""
    rng = np.random.default_rng(6)
    state = _multi_state(rng, [1000, 3000, 5], ["float32"] * 3)
    lists = [[state[f"{k}{i}"] for i in range(3)] for k in ("weight", "grad", "mean", "var")]
    expected = {k: t.cpu().numpy() for k, t in state.items()}
    s = adamop.AdamParams.from_kwargs(dict(lr=0.01)).scalars(np.dtype("float32"))
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            adamop.adam_update_multi(*lists, lr=0.01, out=lists[0])
    except RuntimeError as exc:
        assert re.search(r"(?i)once|warm", str(exc)), f"unhelpful refusal: {exc}"
        for k, t in state.items():
            assert_bitexact(t, expected[k], f"{k} unchanged after the refusal")
        return
    graph.replay()
    torch.cuda.synchronize()
    for i in range(3):
        reference.adam_dense(*(expected[f"{k}{i}"] for k in ("weight", "grad", "mean", "var")),
                             expected[f"weight{i}"], s, reference.DENSE)
    for k, t in state.items():
        assert_bitexact(t, expected[k], f"after one replay: {k}")


def _repeated_updates():
    """Every kind of update, on tensors made once; returns a function that runs them all."""
    w, g, m, v = ([torch.rand(10_000, device="cuda") for _ in range(3)] for _ in range(4))
    rows = RowSparseArray(torch.rand(2, 10, device="cuda"), torch.tensor([1, 7], device="cuda"),
                          (1000, 10))
    wr, mr, vr = (torch.rand(1000, 10, device="cuda") for _ in range(3))
    coo = rows.to_torch()                         # a coalesced torch COO grad, taken as it is
    many = [[torch.rand(64, device="cuda") for _ in range(2000)] for _ in range(4)]
    lrs = [0.001 * (1 + i % 7) for i in range(2000)]

    def updates():
        adamop.adam_update(w[0], g[0], m[0], v[0], lr=0.01, out=w[0])
        adamop.adam_update_multi(w, g, m, v, lr=0.01, out=w)
        adamop.adam_update_multi(w, g, m, v, lr=[0.01, 0.02, 0.03], out=w)
        adamop.adam_update_multi(*many, lr=lrs, clip_gradient=0.0, out=many[0])
        for lazy in (True, False):
            adamop.adam_update(wr, rows, mr, vr, lr=0.01, out=wr, lazy_update=lazy)
            adamop.adam_update(wr, coo, mr, vr, lr=0.01, out=wr, lazy_update=lazy)
    return updates


@gpu
@pytest.mark.gpu
def test_no_synchronising_torch_call_after_warm_up() -> None:
    updates = _repeated_updates()
    updates()                                     # compiles, builds the cached tables
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")       # a synchronising torch call now raises
    try:
        updates()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@gpu
@pytest.mark.gpu
def test_host_never_waits_for_the_device_after_warm_up() -> None:
    """Behind a ~1.5 s sleep kernel on the stream, the updates return while the sleep still
    runs: nothing waited for the device (any synchronisation, torch's or not). The control: a
    synchronising call does wait."""
    updates = _repeated_updates()
    updates()
    torch.cuda.synchronize()
    done = torch.cuda.Event()
    torch.cuda._sleep(3_000_000_000)              # cycles: ~1.5 s at the H200's 2 GHz
    done.record()
    updates()
    assert not done.query(), "an update waited for the device (the sleep had ended)"
    torch.zeros(1, device="cuda").item()          # control: this waits
    assert done.query()
    torch.cuda.synchronize()


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("lr", ["one lr", "per-tensor lr"])
def test_repeated_batched_step_has_no_per_tensor_host_work(lr: str) -> None:
    """The second and later calls with the same tensors make as many Python calls for 2,000
    tensors as for 20 (a few of slack): nothing on the host is done per tensor, so a step of many
    small tensors costs the GPU's time, not Python's."""
    counts = {}
    for n in (20, 2000):
        lists = [[torch.rand(64, device="cuda") for _ in range(n)] for _ in range(4)]
        lrs = 0.01 if lr == "one lr" else [0.001 * (1 + i % 7) for i in range(n)]

        def step():
            adamop.adam_update_multi(*lists, lr=lrs, out=lists[0])
        step()
        step()
        counts[n] = python_calls(step)
    torch.cuda.synchronize()
    assert counts[2000] <= counts[20] + 10, f"Python calls per step: {counts}"
