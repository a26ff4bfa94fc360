"""Seeded random ``mx.optimizer.Adam`` training runs for the live differential test.

Each run is JSON in the layout of ``data/optimizer_dev.npz`` (``data/TRAINING_README.md``) plus
``sym`` (variable name -> ``{"lr_mult", "wd_mult"}``: the symbol given to ``create``) and
``param_dict`` (index -> ``[lr_mult, wd_mult]``: Gluon-Parameter-like objects), with its
initial weights and every step's grads as arrays. MXNet runs them
(``tests/mxnet_side/optimizer_runs.py``) and records what it held after every step; adamop
replays them (``tests/optimizer_runs.py``).

Drawn per run: dtype (float16 with and without master copies, float32, float64); 2-4 parameters
with sparse indices, dense or row_sparse weights and grads, lazy or standard updates; a scheduler
of each kind with random parameters and warmup (linear or constant), the learning rate equal to
its ``base_lr``, different (MXNet's override quirk) or ``None``; lr/wd multipliers by index, by
name (``param_idx2name``), from symbol attributes and from ``param_dict``; ``begin_num_update``;
clipping (``None``, 0, > 0); a per-step ``rescale_grad``; betas and epsilon; and the order of
updates: every parameter per step, shuffled, or an uneven random subset with repeats.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np

D, R = "default", "row_sparse"
SHAPES_2D = [(4, 3), (6, 2), (5, 5), (3, 4)]
SHAPES_ANY = SHAPES_2D + [(7,), (2, 3, 2)]
NAMES = ["fc{}_weight", "fc{}_bias", "bn{}_gamma", "bn{}_beta", "emb{}_weight"]


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _scheduler(rng: np.random.Generator, steps: int, begin: int) -> dict | None:
    kind = rng.choice(["none", "FactorScheduler", "MultiFactorScheduler", "PolyScheduler",
                       "CosineScheduler"])
    if kind == "none":
        return None
    base_lr = _u(rng, 1e-3, 3e-2)
    span = begin + steps   # the largest num_update of the run
    kw: dict[str, Any] = {"base_lr": base_lr}
    if rng.random() < 0.7:
        kw["warmup_steps"] = int(rng.integers(1, 30)) + (begin if rng.random() < 0.3 else 0)
        kw["warmup_mode"] = str(rng.choice(["linear", "constant"]))
        kw["warmup_begin_lr"] = 0 if rng.random() < 0.3 else base_lr * _u(rng, 0, 0.9)
    warm = kw.get("warmup_steps", 0)
    if kind == "FactorScheduler":
        kw.update(step=int(rng.integers(1, 25)), factor=_u(rng, 0.3, 1.0),
                  stop_factor_lr=float(rng.choice([1e-8, base_lr * 0.2])))
    elif kind == "MultiFactorScheduler":
        k = int(rng.integers(1, 5))
        kw.update(step=sorted(int(s) for s in rng.choice(np.arange(1, span), k, replace=False)),
                  factor=_u(rng, 0.2, 1.0))
    else:
        # max_update == warmup_steps divides by zero in MXNet too: keep them apart
        max_update = int(rng.integers(warm + 1, span + 40))
        kw.update(max_update=max_update,
                  final_lr=0 if rng.random() < 0.4 else base_lr * _u(rng, 0, 0.5))
        if kind == "PolyScheduler":
            kw["pwr"] = [1, 2, 3, 0.5][int(rng.integers(4))]
    return {"class": str(kind), "kwargs": kw}


def _mults(rng: np.random.Generator, indices: list[int], names: dict[int, str] | None
           ) -> dict | None:
    if rng.random() < 0.4:
        return None
    table: dict = {}
    for index in indices:
        if rng.random() < 0.4:
            key = names[index] if names and rng.random() < 0.5 else index
            table[key] = [0.0, 0.5, 2.0, _u(rng, 0.1, 3)][int(rng.integers(4))]
    return table


def make_run(name: str, rng: np.random.Generator) -> tuple[dict, dict[str, np.ndarray]]:
    """One random run (JSON) and its arrays (initial weights, every step's grads)."""
    dtype = str(rng.choice(["float16", "float16", "float32", "float32", "float64"]))
    steps = int(rng.integers(100, 121))
    n_params = int(rng.integers(2, 5))
    indices = sorted(int(i) for i in rng.choice(10, n_params, replace=False))
    lazy = bool(rng.random() < 0.7)
    params = []
    for index in indices:
        shape = SHAPES_ANY[int(rng.integers(len(SHAPES_ANY)))]
        g_st = R if len(shape) == 2 and rng.random() < 0.35 else D
        w_st = R if g_st == R and rng.random() < 0.5 else D
        params.append({"index": index, "dtype": dtype, "shape": list(shape),
                       "weight_stype": w_st, "grad_stype": g_st})
    idx2name = ({i: NAMES[int(rng.integers(len(NAMES)))].format(i) for i in indices}
                if rng.random() < 0.5 else None)
    begin = int(rng.integers(1, 200)) if rng.random() < 0.3 else 0
    sched = _scheduler(rng, steps, begin)
    kwargs: dict[str, Any] = {"lazy_update": lazy}
    if sched is not None:
        kwargs["lr_scheduler"] = sched
        choice = rng.random()
        kwargs["learning_rate"] = (None if choice < 0.3 else sched["kwargs"]["base_lr"]
                                   if choice < 0.5 else _u(rng, 1e-3, 3e-2))
    elif rng.random() < 0.7:
        kwargs["learning_rate"] = _u(rng, 1e-3, 3e-2)
    if dtype == "float16":
        kwargs["multi_precision"] = bool(rng.random() < 0.6)
    if begin:
        kwargs["begin_num_update"] = begin
    if rng.random() < 0.6:
        kwargs["wd"] = _u(rng, 0, 0.02)
    clip = rng.random()
    if clip < 0.5:
        kwargs["clip_gradient"] = None if clip < 0.2 else 0.0 if clip < 0.3 else _u(rng, 0.1, 2)
    if rng.random() < 0.4:
        kwargs["beta1"], kwargs["beta2"] = _u(rng, 0.5, 0.99), _u(rng, 0.9, 0.9999)
    if rng.random() < 0.3:
        kwargs["epsilon"] = float(10 ** _u(rng, -8, -3))
    if rng.random() < 0.3:
        kwargs["rescale_grad"] = 1 / int(rng.integers(1, 64))
    sym = None
    if idx2name and rng.random() < 0.4:
        sym = {}
        for n in idx2name.values():
            attrs = {k: [0.0, 0.5, 3.0][int(rng.integers(3))] for k in ("lr_mult", "wd_mult")
                     if rng.random() < 0.5}
            sym[n] = attrs
    param_dict = ({str(i): [_u(rng, 0.2, 2), float(rng.choice([0.0, 1.0, 1.5]))]
                   for i in indices if rng.random() < 0.5} if rng.random() < 0.2 else None)
    mode = str(rng.choice(["all", "shuffled", "uneven"]))
    schedule = []
    for _ in range(steps):
        pos = list(range(n_params))
        if mode == "shuffled":
            pos = [int(p) for p in rng.permutation(n_params)]
        elif mode == "uneven":
            pos = [int(p) for p in rng.choice(n_params, int(rng.integers(1, n_params + 1)),
                                                replace=False)]
            if rng.random() < 0.15:
                pos.insert(int(rng.integers(len(pos) + 1)), pos[int(rng.integers(len(pos)))])
        schedule.append(pos)
    rescale = ([1 / int(rng.integers(1, 64)) for _ in range(steps)]
               if rng.random() < 0.25 else None)
    run = {"name": name, "create": {"name": "adam", "kwargs": kwargs},
           "idx2name": {str(k): v for k, v in idx2name.items()} if idx2name else None,
           "lr_mult": _mults(rng, indices, idx2name), "wd_mult": _mults(rng, indices, idx2name),
           "params": params, "schedule": schedule, "rescale_grad_per_step": rescale,
           "sym": sym, "param_dict": param_dict}
    for key in ("lr_mult", "wd_mult"):   # JSON keys are strings, as in the fixture
        if run[key] is not None:
            run[key] = {str(k): v for k, v in run[key].items()}
    return run, _arrays(run, rng, np.dtype(dtype))


def _arrays(run: dict, rng: np.random.Generator, dt: np.dtype) -> dict[str, np.ndarray]:
    name, out = run["name"], {}
    gscale = 1.0 if dt == np.float16 else float(rng.choice([0.01, 1.0, 10.0]))
    for i, p in enumerate(run["params"]):
        # zeros (biases) and small weights keep the low bits of each step's lr in the weight
        scale = [1.0, 0.01, 0.0][int(rng.integers(3))]
        out[f"{name}__w0_{i}"] = (rng.standard_normal(p["shape"]) * scale).astype(dt)
    for k, positions in enumerate(run["schedule"]):
        for i in dict.fromkeys(positions):
            p, pre = run["params"][i], f"{name}__s{k}__"
            g = (rng.standard_normal(p["shape"]) * gscale).astype(dt)
            if p["grad_stype"] == R:
                rows = p["shape"][0]
                idx = np.sort(rng.choice(rows, int(rng.integers(0, rows + 1)), replace=False))
                dense = np.zeros_like(g)
                dense[idx] = g[idx]
                out[f"{pre}gidx{i}"], out[f"{pre}gdata{i}"] = idx.astype(np.int64), g[idx]
                g = dense
            out[f"{pre}g{i}"] = g
    return out


def make_runs(n: int, seed: int) -> tuple[list[dict], dict[str, np.ndarray]]:
    """``n`` runs named ``r0``, ``r1``, ... and all their arrays."""
    rng = np.random.default_rng(seed)
    runs, arrays = [], {}
    for r in range(n):
        run, arr = make_run(f"r{r}", rng)
        runs.append(run)
        arrays.update(arr)
    return runs, arrays


def mxnet_results(n: int, seed: int) -> tuple[list[dict], dict[str, np.ndarray], dict]:
    """``n`` runs drawn with ``seed`` and run by MXNet 1.9.1 (``mxnet_side/optimizer_runs.py``):
    the runs, their inputs plus MXNet's results, and MXNet's report on each run."""
    from mxnet_oracle import run_mxnet
    runs, arrays = make_runs(n, seed)
    out, report = run_mxnet("optimizer_runs.py", arrays, {"runs": runs})
    return runs, {**arrays, **out}, report


def describe(run: dict, seed: int) -> str:
    """A run as a failure message shows it: its seed and settings (not its long schedules)."""
    shown = {k: v for k, v in run.items() if k not in ("schedule", "rescale_grad_per_step")}
    return f"seed {seed}, run {json.dumps(shown)}"
