"""The ``adamop`` command: ``info`` (versions and backend choice), ``check`` (the shipped MXNet
golden set, bit for bit, on every backend), ``bench`` (the benchmark harness), ``inspect`` and
``convert`` (MXNet checkpoint files).

Also runnable as ``python -m adamop``. Every subcommand returns an exit status: 0 on success,
1 when a check fails, 2 on a usage error or a missing component.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import os
import platform
import sys
from typing import Any, Sequence

from . import __version__, dispatch

_PACKAGES = ("numpy", "torch", "numba", "triton", "scipy")


def _version(package: str) -> str:
    """Installed version without importing the package (importing torch takes seconds)."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _devices() -> list[str]:
    """'cpu', plus 'cuda' where torch sees a CUDA device."""
    if importlib.util.find_spec("torch") is None:
        return ["cpu"]
    import torch
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def _automatic(device: str) -> str:
    """The backend an automatic call on ``device`` gets (loads it, as a real call would)."""
    try:
        spec, _ = dispatch.select(device)
    except Exception as exc:   # no backend at all: say why
        return f"none ({exc})"
    forced = os.environ.get("ADAMOP_BACKEND")
    return spec.name + (f" (forced by ADAMOP_BACKEND={forced})" if forced else "")


def _backend_details(name: str) -> str:
    """Extra facts a backend module reports about itself via an optional ``info()``."""
    spec = next(s for s in dispatch.registry() if s.name == name)
    try:
        module = spec.load()
    except Exception as exc:
        return f"failed to load: {exc}"
    info = getattr(module, "info", None)
    if not callable(info):
        return ""
    try:
        facts = info()
    except Exception as exc:
        return f"info() failed: {exc}"
    return ", ".join(f"{k}={v}" for k, v in facts.items())


def cmd_info(args: argparse.Namespace) -> int:
    print(f"adamop {__version__}")
    print(f"  python  {platform.python_version()} ({sys.executable})")
    for package in _PACKAGES:
        print(f"  {package:<7} {_version(package)}")
    devices = _devices()
    print(f"  devices {', '.join(devices)}")
    print("backends (best first):")
    for spec in dispatch.registry():
        reason = spec.unavailable_reason()
        status = "available" if reason is None else f"unavailable: {reason}"
        print(f"  {spec.name:<7} [{'/'.join(spec.devices)}] {status}")
        if spec.description:
            print(f"          {spec.description}")
        if reason is None and any(d in devices for d in spec.devices):
            details = _backend_details(spec.name)
            if details:
                print(f"          {details}")
    print("automatic choice:")
    for device in ("cpu", "cuda"):
        if device in devices:
            print(f"  {device:<5} -> {_automatic(device)}")
        else:
            own = {s.name for s in dispatch.registry() if device in s.devices}
            why = "; ".join(f"{n}: {r}" for n, r in dispatch.explain(device) if n in own and r)
            print(f"  {device:<5} -> none ({why or f'no {device} backend registered'})")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from .selfcheck import load_cases, run_check
    cases, arrays = load_cases()
    progress = (lambda msg: print(msg, file=sys.stderr)) if args.verbose else None
    report = run_check(args.backend, devices=_devices(), cases=cases, arrays=arrays,
                       progress=progress)
    print(f"adamop {__version__}: {len(cases)} golden cases recorded from MXNet 1.9.1, "
          f"compared bit for bit")
    if report.counts:
        print(report.table())
    for line in report.errors:
        print(f"error: {line}", file=sys.stderr)
    if report.failures:
        print(f"FAILED: {len(report.failures)} case run(s) differ from MXNet:")
        shown = report.failures if args.verbose else report.failures[:20]
        for backend, cid, why in shown:
            print(f"  {backend} {cid}: {why}")
        if len(shown) < len(report.failures):
            print(f"  ... {len(report.failures) - len(shown)} more (use --verbose)")
        ids = sorted({cid for _, cid, _ in report.failures})
        print(f"failing case ids: {' '.join(ids)}")
        return 1
    if report.errors or not report.counts:
        if not report.counts and not report.errors:
            print("error: no backend could be checked", file=sys.stderr)
        return 2
    print("OK: every case is bit-identical to MXNet 1.9.1")
    return 0


def cmd_bench(argv: Sequence[str]) -> int:
    try:
        bench = importlib.import_module("adamop.bench")
    except ImportError as exc:
        if getattr(exc, "name", None) == "adamop.bench":
            fix = "this installation of adamop has no benchmark harness; install adamop from a "\
                  "source checkout (pip install -e .)"
        else:
            fix = "install its dependencies with: pip install 'adamop[bench]'"
        print(f"error: the benchmark harness (adamop.bench) cannot be imported ({exc}); {fix}",
              file=sys.stderr)
        return 2
    return int(bench.main(list(argv)) or 0)


def _table(header: Sequence[str], rows: list[Sequence]) -> str:
    cells = [[str(c) for c in header]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def _fail(exc: BaseException) -> int:
    """1 for a file that could not be read or written, 2 for a usage error or missing package."""
    from .convert import MissingDependency, UnknownFormat
    print(f"error: {exc}", file=sys.stderr)
    return 2 if isinstance(exc, (MissingDependency, UnknownFormat)) else 1


def cmd_inspect(args: argparse.Namespace) -> int:
    from . import convert, states
    path = args.file
    try:
        if path.lower().endswith(".states"):
            with open(path, "rb") as f:
                lines, rows = convert.states_summary(states.loads(f.read(), source=path,
                                                                  resolve=False))
            print(f"{path}: MXNet optimizer states")
            print("\n".join(lines))
            header = ("index", "name", "state", "storage", "dtype", "shape", "stored rows",
                      "bytes")
        else:
            convert.kind_of(path)
            rows = convert.entries(path)
            print(f"{path}: {len(rows)} arrays, {sum(r[-1] for r in rows):,} bytes of values")
            header = ("name", "storage", "dtype", "shape", "stored rows", "bytes")
    except (ValueError, OSError, ImportError) as exc:
        return _fail(exc)
    if rows and header[1] == "name" and not any(r[1] for r in rows):
        header, rows = header[:1] + header[2:], [r[:1] + r[2:] for r in rows]   # no names known
    if rows:
        print(_table(header, rows))
    return 0


def _progress(path: str) -> tuple[Any, Any]:
    """A tqdm bar over a big file's bytes on a terminal (none for small files or without tqdm)."""
    try:
        size = os.path.getsize(path)
        from tqdm import tqdm
    except (OSError, ImportError):
        return None, None
    if size < 64 << 20 or not sys.stderr.isatty():
        return None, None
    bar = tqdm(total=size, unit="B", unit_scale=True, desc=os.path.basename(path),
               file=sys.stderr)
    return bar, bar.update


def cmd_convert(args: argparse.Namespace) -> int:
    from . import convert
    try:
        convert.kind_of(args.out)
        bar, step = _progress(args.input)
        data = convert.read(args.input, progress=step)
        if bar is not None:
            bar.reset(total=sum(int(getattr(v, "nbytes", 0) or 0) for v in
                                (data.values() if isinstance(data, dict) else data)))
        notes = convert.write(args.out, data, dense=args.dense, progress=step)
        if bar is not None:
            bar.close()
    except (ValueError, TypeError, OSError, ImportError) as exc:
        return _fail(exc)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"{args.input} -> {args.out}: {len(data)} arrays")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adamop", description="MXNet 1.9.1's adam_update, bit for bit, on NumPy and PyTorch.")
    parser.add_argument("--version", action="version", version=f"adamop {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{info,check,bench,inspect,convert}")
    sub.required = True
    info = sub.add_parser("info", help="versions, backends and which one runs automatically")
    info.set_defaults(func=cmd_info)
    check = sub.add_parser("check", help="replay the shipped MXNet golden cases on every backend")
    check.add_argument("--backend", action="append", metavar="NAME",
                       help="check only this backend (repeatable); default: every available one")
    check.add_argument("-v", "--verbose", action="store_true",
                       help="show progress and every failure")
    check.set_defaults(func=cmd_check)
    sub.add_parser("bench", help="run the benchmark harness (arguments are passed to it; "
                                 "see `adamop bench --help`)", add_help=False)
    inspect = sub.add_parser("inspect", help="list the arrays of a checkpoint (.params, .states, "
                                             ".npz, .pt, .safetensors)")
    inspect.add_argument("file")
    inspect.set_defaults(func=cmd_inspect)
    convert = sub.add_parser(
        "convert", help="convert a checkpoint between .params, .npz, .pt and .safetensors",
        description="Convert arrays between MXNet .params, NumPy .npz, torch .pt state dicts and "
                    ".safetensors (by extension). row_sparse and csr arrays stay sparse: torch "
                    "sparse tensors in .pt; in .npz and .safetensors an entry NAME is stored as "
                    "NAME@row_sparse.data/.indices/.shape (csr: NAME@csr.data/.indices/.indptr/"
                    ".shape), which convert reads back; --dense stores dense arrays instead.")
    convert.add_argument("input", metavar="IN")
    convert.add_argument("out", metavar="OUT")
    convert.add_argument("--dense", action="store_true",
                         help="store sparse arrays densely (in .npz, .pt, .safetensors)")
    convert.set_defaults(func=cmd_convert)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``adamop`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":   # everything after 'bench' belongs to the harness
        return cmd_bench(argv[1:])
    args = _parser().parse_args(argv)
    return int(args.func(args))
