"""``adamop bench``: adamop against the same-pattern limit and the peers present, on the CPU
(default) or, with ``--device cuda``, on a GPU (:mod:`.gpu`).

Method (``BENCH.md``): GB/s at 7 x itemsize bytes per element (lazy row_sparse: the touched rows
plus the indices); every runner of a case timed in turn in one process (MXNet through its side
interpreter, step by step); each runner warmed up and checked before it is timed; median and
p20-p80 reported. A benchmark, not a test: nothing here asserts on time.

Each case's tables are written as soon as it is done (a crash keeps what was measured), and a
case that fails is recorded as failed and the next one runs. ``--case-timeout`` runs every case
in a process of its own with a time limit (:mod:`.isolate`); ``--budget`` bounds the whole run.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="adamop bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cpu: NumPy arrays against the CPU peers (default); cuda: torch CUDA "
                        "tensors against the GPU peers, with the device copy as the limit")
    p.add_argument("--quick", action="store_true", help="small sizes, few repetitions (seconds)")
    p.add_argument("--rehearse", action="store_true",
                   help="with --device cuda: run its cases on CPU torch tensors at 1/1024 of "
                        "their sizes, to rehearse a GPU run without a GPU (not a measurement)")
    p.add_argument("--cases", nargs="+", metavar="PATTERN",
                   help="only cases whose name contains a pattern, e.g. 'dense float32' lazy")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("--reps", type=int, default=None, help="samples per runner (default 15; 5 "
                                                          "with --quick)")
    p.add_argument("--skip", nargs="+", action="extend", metavar="PATTERN", default=[],
                   help="peers not to run, by a part of their name, e.g. optax foreach")
    p.add_argument("--case-timeout", type=float, metavar="S",
                   help="run each case in a process of its own, ended after S seconds (a "
                        "crash or a hang then costs one case); sampling stops early to fit")
    p.add_argument("--budget", type=float, metavar="S",
                   help="with --case-timeout: the whole run's seconds; cases that do not fit "
                        "are listed as not run")
    p.add_argument("--csv", metavar="PATH", help="write the results and machine description")
    p.add_argument("--plot", metavar="PNG", help="draw GB/s against size (needs matplotlib)")
    p.add_argument("--markdown", metavar="PATH", help="write the table as Markdown")
    p.add_argument("--mxnet-python", metavar="PATH",
                   help="python of a venv with mxnet==1.9.1: adds MXNet as a peer")
    p.add_argument("--cold-start", action="store_true",
                   help="also time the first calls in fresh processes, without and with the "
                        "on-disk kernel cache")
    p.add_argument("--seed", type=int, default=0)
    # the child of --case-timeout: run case INDEX of the unselected list, append to FILE
    p.add_argument("--case-index", type=int, help=argparse.SUPPRESS)
    p.add_argument("--outcome-file", help=argparse.SUPPRESS)
    return p


def _refusal(args: argparse.Namespace, n_cases: int) -> str | None:
    """Why these options cannot run here, or None."""
    if args.case_index is not None and not (0 <= args.case_index < n_cases
                                            and args.outcome_file):
        return f"--case-index needs an --outcome-file and a number below {n_cases}"
    if args.rehearse and args.device != "cuda":
        return "--rehearse rehearses --device cuda; add --device cuda"
    if args.budget is not None and args.case_timeout is None:
        return "--budget needs --case-timeout (cases in processes of their own)"
    for name in ("case_timeout", "budget", "reps"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            return f"--{name.replace('_', '-')} must be positive, got {value}"
    if args.device == "cuda":
        if args.mxnet_python or args.cold_start:
            return ("--device cuda: --mxnet-python and --cold-start measure the CPU; run them "
                    "without --device cuda")
        if not args.rehearse:
            from . import gpu
            why = gpu.unavailable()
            if why is not None:
                return f"--device cuda: {why}"
    return None


def _every_case(args: argparse.Namespace) -> list:
    from . import cases as cases_mod
    if args.device == "cuda":
        from . import gpu
        return gpu.cases(1024 if args.rehearse else 64 if args.quick else 1)
    return cases_mod.all_cases(args.quick)


def _describe(args: argparse.Namespace, mxnet_version: str | None) -> dict[str, str]:
    from . import report
    desc = report.machine(mxnet_version)
    if args.rehearse:
        desc["device"] = "none: a rehearsal on CPU torch tensors, not a GPU measurement"
    elif args.device == "cuda":
        from . import gpu
        desc.update(gpu.describe())
    return desc


def _run_case(case, index: int, args: argparse.Namespace, mxnet, deadline: float | None):
    """Build, check and time one case in this process; any failure becomes the outcome."""
    import numpy as np

    from . import harness, peers
    print(f"[bench] {case.name}: preparing and checking", file=sys.stderr, flush=True)
    rng = np.random.default_rng([args.seed, index])
    outcome = harness.Outcome(case)
    try:
        if args.device == "cuda":
            from . import gpu
            runners, outcome.skipped = gpu.build(case, rng, device="cpu" if args.rehearse
                                                 else "cuda", skip=tuple(args.skip))
        else:
            runners, outcome.skipped = peers.build(case, rng, mxnet=mxnet)
            outcome.skipped += [(r.name, "--skip") for r in runners
                                if r.role == "peer" and any(p in r.name for p in args.skip)]
            runners = [r for r in runners
                       if not (r.role == "peer" and any(p in r.name for p in args.skip))]
        reps = args.reps or (5 if args.quick or args.rehearse else 15)
        progress = harness.Progress(reps * len(runners), case.name)
        outcome.results = harness.time_case(case, runners, reps, progress, deadline)
        progress.close()
    except peers.CheckFailed as exc:
        outcome.error = f"result check failed, nothing timed: {exc}"
    except Exception as exc:      # recorded, and the next case runs
        traceback.print_exc()
        outcome.error = f"{type(exc).__name__}: {exc}"
    if outcome.error:
        print(f"[bench] {case.name}: {outcome.error}", file=sys.stderr, flush=True)
    return outcome


def _write(args: argparse.Namespace, outcomes: list, desc: dict[str, str], extra: str = "",
           plot: bool = False) -> None:
    from . import report
    if args.csv:
        report.write_csv(args.csv, outcomes, desc)
    if args.markdown:
        report.write_markdown(args.markdown, outcomes, desc, extra)
    if plot and args.plot:
        try:
            report.plot(args.plot, [r for o in outcomes for r in o.results], desc)
        except Exception as exc:       # the tables are written; a missing plot is not fatal
            print(f"[bench] no plot: {type(exc).__name__}: {exc}", file=sys.stderr)


def _child(args: argparse.Namespace, case, mxnet) -> int:
    """The --case-timeout child: one case, one JSON line appended to the outcome file."""
    deadline = None if args.case_timeout is None else time.monotonic() + args.case_timeout
    outcome = _run_case(case, args.case_index, args, mxnet, deadline)
    desc = _describe(args, mxnet.version if mxnet else None)
    line = json.dumps({"index": args.case_index, "outcome": outcome.to_json(), "desc": desc})
    with open(args.outcome_file, "a") as f:
        f.write(line + "\n")
    return 0


def _child_argv(args: argparse.Namespace) -> list[str]:
    argv = [sys.executable, "-m", "adamop", "bench", "--device", args.device, "--seed",
            str(args.seed)]
    argv += ["--quick"] * args.quick + ["--rehearse"] * args.rehearse
    argv += ["--reps", str(args.reps)] if args.reps else []
    argv += ["--skip", *args.skip] if args.skip else []
    argv += ["--mxnet-python", args.mxnet_python] if args.mxnet_python else []
    return argv


def _terminated(signum: int, frame) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the process exit code (1 if a case failed)."""
    args = _parser().parse_args(argv)
    # Passive OpenMP waiting, before any OpenMP runtime starts: Numba's and torch's thread pools
    # otherwise spin against each other on a small machine (measured on 2 cores: 0.03 ms steps
    # took 6-8 ms right after a torch step). Set OMP_WAIT_POLICY yourself to override.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from . import cases as cases_mod
    from . import harness, isolate, report

    every = _every_case(args)
    chosen = every if args.case_index is not None else cases_mod.select(every, args.cases)
    if args.list or not chosen:
        for c in chosen:
            print(c.name)
        if not chosen:
            print("no case matches --cases " + " ".join(args.cases or []), file=sys.stderr)
            return 2
        return 0
    why = _refusal(args, len(every))
    if why is not None:
        print(f"error: {why}", file=sys.stderr)
        return 2
    mxnet = None
    if args.mxnet_python and args.case_timeout is None:
        from .mxnet_peer import MXNetPeer
        try:
            mxnet = MXNetPeer(args.mxnet_python)
        except FileNotFoundError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if args.case_timeout is not None and args.case_index is None:
        signal.signal(signal.SIGTERM, _terminated)   # so the running case's process ends too
    try:
        if args.case_index is not None:
            return _child(args, every[args.case_index], mxnet)
        desc = _describe(args, mxnet.version if mxnet else None)
        deadline = None if args.budget is None else time.monotonic() + args.budget
        outcomes: list[harness.Outcome] = []
        with tempfile.TemporaryDirectory(prefix="adamop-bench-") as tmp:
            for i, case in enumerate(chosen):
                print(f"[{i + 1}/{len(chosen)}] {case.name}", file=sys.stderr, flush=True)
                if args.case_timeout is None:
                    outcome = _run_case(case, every.index(case), args, mxnet, None)
                else:
                    outcome, child_desc = isolate.run_case(
                        _child_argv(args), every.index(case), case,
                        Path(tmp) / "outcomes.jsonl", args.case_timeout, deadline)
                    desc.update({k: v for k, v in (child_desc or {}).items()
                                 if k not in ("timestamp",)})
                outcomes.append(outcome)
                print("\n" + report.table([outcome]), flush=True)
                _write(args, outcomes, desc)
    finally:
        if mxnet is not None:
            mxnet.close()
    print(", ".join(f"{k}={v}" for k, v in desc.items()) + "\n")
    extra = ""
    if args.cold_start:
        cold = harness.cold_start()
        lines = ["### cold start (first calls in a fresh process, seconds)", "",
                 "| | " + " | ".join(next(iter(cold.values()))) + " |",
                 "| --- |" + " ---: |" * len(next(iter(cold.values())))]
        for label, t in cold.items():
            lines.append(f"| {label} | " + " | ".join(f"{x:.3f}" for x in t.values()) + " |")
        extra = "\n".join(lines) + "\n"
        print(extra)
    _write(args, outcomes, desc, extra, plot=True)
    failed = [o.case.name for o in outcomes if o.error]
    if failed:
        print(f"error: {len(failed)} of {len(outcomes)} cases failed: " + "; ".join(failed),
              file=sys.stderr)
    return 1 if failed else 0
