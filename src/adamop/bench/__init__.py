"""``adamop bench``: adamop against the same-pattern limit and the peers present, on the CPU
(default) or, with ``--device cuda``, on a GPU (:mod:`.gpu`).

Method (``BENCH.md``): GB/s at 7 x itemsize bytes per element (lazy row_sparse: the touched rows
plus the indices); every runner of a case timed in turn in one process (MXNet through its side
interpreter, step by step); each runner warmed up and checked before it is timed; median and
p20-p80 reported. A benchmark, not a test: nothing here asserts on time.
"""
from __future__ import annotations

import argparse
import os
import sys

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="adamop bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cpu: NumPy arrays against the CPU peers (default); cuda: torch CUDA "
                        "tensors against the GPU peers, with the device copy as the limit")
    p.add_argument("--quick", action="store_true", help="small sizes, few repetitions (seconds)")
    p.add_argument("--cases", nargs="+", metavar="PATTERN",
                   help="only cases whose name contains a pattern, e.g. 'dense float32' lazy")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("--reps", type=int, default=None, help="samples per runner (default 15; 5 "
                                                          "with --quick)")
    p.add_argument("--csv", metavar="PATH", help="write the results and machine description")
    p.add_argument("--plot", metavar="PNG", help="draw GB/s against size (needs matplotlib)")
    p.add_argument("--markdown", metavar="PATH", help="write the table as Markdown")
    p.add_argument("--mxnet-python", metavar="PATH",
                   help="python of a venv with mxnet==1.9.1: adds MXNet as a peer")
    p.add_argument("--cold-start", action="store_true",
                   help="also time the first calls in fresh processes, without and with the "
                        "on-disk kernel cache")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the process exit code."""
    args = _parser().parse_args(argv)
    # Passive OpenMP waiting, before any OpenMP runtime starts: Numba's and torch's thread pools
    # otherwise spin against each other on a small machine (measured on 2 cores: 0.03 ms steps
    # took 6-8 ms right after a torch step). Set OMP_WAIT_POLICY yourself to override.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import numpy as np

    from . import cases as cases_mod, harness, peers, report

    on_gpu = args.device == "cuda"
    if on_gpu:
        from . import gpu
    chosen = cases_mod.select(gpu.cases(args.quick) if on_gpu else
                              cases_mod.all_cases(args.quick), args.cases)
    if args.list or not chosen:
        for c in chosen:
            print(c.name)
        if not chosen:
            print("no case matches --cases " + " ".join(args.cases or []), file=sys.stderr)
            return 2
        return 0
    if on_gpu:
        why = gpu.unavailable()
        if why is None and (args.mxnet_python or args.cold_start):
            why = "--mxnet-python and --cold-start measure the CPU; run them without --device cuda"
        if why is not None:
            print(f"error: --device cuda: {why}", file=sys.stderr)
            return 2
    reps = args.reps or (5 if args.quick else 15)
    mxnet = None
    if args.mxnet_python:
        from .mxnet_peer import MXNetPeer
        try:
            mxnet = MXNetPeer(args.mxnet_python)
        except FileNotFoundError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    rng = np.random.default_rng(args.seed)
    results, skipped = [], {}
    progress = None
    try:
        for i, case in enumerate(chosen):
            print(f"[{i + 1}/{len(chosen)}] {case.name}: preparing and checking", file=sys.stderr)
            runners, skipped[case.name] = (gpu.build(case, rng) if on_gpu else
                                           peers.build(case, rng, mxnet=mxnet))
            progress = harness.Progress(reps * len(runners), case.name)
            results += harness.time_case(case, runners, reps, progress)
            progress.close()
            del runners
    except peers.CheckFailed as exc:
        print(f"error: result check failed, nothing timed for this case: {exc}", file=sys.stderr)
        return 1
    finally:
        if mxnet is not None:
            mxnet.close()
    desc = report.machine(mxnet.version if mxnet else None)
    if on_gpu:
        desc.update(gpu.describe())
    text = report.table(results, skipped)
    print("\n" + ", ".join(f"{k}={v}" for k, v in desc.items()) + "\n")
    print(text)
    if args.cold_start:
        cold = harness.cold_start()
        lines = ["### cold start (first calls in a fresh process, seconds)", "",
                 "| | " + " | ".join(next(iter(cold.values()))) + " |",
                 "| --- |" + " ---: |" * len(next(iter(cold.values())))]
        for label, t in cold.items():
            lines.append(f"| {label} | " + " | ".join(f"{x:.3f}" for x in t.values()) + " |")
        print("\n".join(lines))
        text += "\n" + "\n".join(lines) + "\n"
    if args.csv:
        report.write_csv(args.csv, results, desc)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    if args.plot:
        report.plot(args.plot, results, desc)
    return 0
