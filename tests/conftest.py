"""Shared fixtures: every CPU backend runs every parametrised test, so a new backend is tested
automatically; an unavailable one skips with its reason."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).resolve().parent))   # mxnet_oracle.py, cases.py, ...

from adamop import dispatch  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"


def python_calls(fn) -> int:
    """Python-level calls (functions and builtins) made while ``fn`` runs, with the garbage
    collector off (a collection's callbacks, which other tests may register, are not adamop's)."""
    import gc
    count = 0

    def profile(frame, event, arg):
        nonlocal count
        count += event in ("call", "c_call")
    gc.disable()
    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
        gc.enable()
    return count


def dev_runs() -> tuple[dict, list]:
    """The MXNet-recorded optimizer runs (``data/optimizer_dev.npz``, layout in
    ``data/TRAINING_README.md``): its arrays by name, and its runs' manifest entries."""
    with np.load(DATA / "optimizer_dev.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return arrays, json.loads(str(arrays["manifest"]))["runs"]

# Property and fuzz tests: "ci" (the default) is derandomised with a fixed example budget, so every
# run draws the same examples; HYPOTHESIS_PROFILE=explore searches longer, at random.
settings.register_profile("ci", derandomize=True, database=None, deadline=None,
                          print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
# every backend that runs CPU arrays in this process: the CPU ones, and one that runs in its
# interpreter here (triton under TRITON_INTERPRET=1, as tests/test_triton_interpret.py runs this
# suite's parity tests)
CPU_BACKENDS = [s.name for s in dispatch.registry() if "cpu" in s.devices or s.interpreted("cpu")]


@pytest.fixture(params=CPU_BACKENDS)
def backend(request) -> str:
    """Name of a CPU backend; skips (with the reason) where it is not available."""
    spec = next(s for s in dispatch.registry() if s.name == request.param)
    reason = spec.unavailable_reason("cpu")
    if reason is not None:
        pytest.skip(f"backend {spec.name} unavailable: {reason}")
    return spec.name


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20241125)


@pytest.fixture(params=["small work on one thread", "every launch threaded"])
def launch_mode(request, monkeypatch) -> str:
    """The numba backend runs small work on the calling thread alone; "every launch threaded"
    sends every size through the thread pool, so that both launches are checked bit for bit.
    (The numpy backend runs the same either way.)"""
    if request.param == "every launch threaded":
        try:
            from adamop.backends import numba_backend
        except ImportError:   # no numba: nothing launches threads
            pass
        else:
            monkeypatch.setattr(numba_backend, "ONE_THREAD_UP_TO", -1)
    return request.param
