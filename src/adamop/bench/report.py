"""The results as a table, a CSV with the machine's description, and a PNG of GB/s vs size."""
from __future__ import annotations

import csv
import datetime
import io
import os
import platform
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path

from .harness import Outcome, Result


def machine(mxnet_version: str | None = None) -> dict[str, str]:
    """CPU, cores, threads, versions, time and git revision of this run."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    now = datetime.datetime.now(datetime.timezone.utc)
    desc = {"timestamp": now.isoformat(timespec="seconds"), "cpu": cpu,
            "cores": str(os.cpu_count())}
    try:
        from adamop.backends import numba_backend
        info = numba_backend.info()
        desc["threads"] = str(info["threads"])
        desc["threading_layer"] = str(info["threading_layer"])
    except ImportError:
        desc["threads"], desc["threading_layer"] = "1", "none (numba missing)"
    desc["python"] = platform.python_version()
    for pkg in ("adamop", "numpy", "numba", "torch", "triton"):
        try:
            desc[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:   # adamop from a source tree (PYTHONPATH=src)
            desc[pkg] = _source_version() if pkg == "adamop" else "absent"
    desc["mxnet"] = mxnet_version or "not run"
    try:
        desc["git_sha"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
            cwd=Path(__file__).resolve().parent).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        desc["git_sha"] = "unknown"
    return desc


def _source_version() -> str:
    import adamop
    return f"{adamop.__version__} (source tree)"


def _primary(results: list[Result]) -> Result | None:
    adamop = [r for r in results if r.role == "adamop"]
    return next((r for r in adamop if "numba" in r.runner), adamop[0] if adamop else None)


def rows(results: list[Result]) -> list[dict]:
    """One dict per result: GB/s, fraction of the limit, adamop's speedup over it."""
    out = []
    for case in dict.fromkeys(r.case for r in results):
        group = [r for r in results if r.case == case]
        limit = next((r for r in group if r.role == "limit"), None)
        best = _primary(group)
        for r in group:
            out.append({
                "case": case.name, "kind": case.kind, "dtype": case.dtype,
                "elements": case.elements, "runner": r.runner, "role": r.role,
                "bytes": r.bytes, "median_s": r.median, "p20_s": r.p20, "p80_s": r.p80,
                "gbps": r.gbps, "frac_limit": r.gbps / limit.gbps if limit else float("nan"),
                "adamop_speedup": r.median / best.median if best else float("nan"),
                "samples": r.samples, "error": ""})
    return out


def _error_row(o: Outcome) -> dict:
    c = o.case
    nan = float("nan")
    return {"case": c.name, "kind": c.kind, "dtype": c.dtype, "elements": c.elements,
            "runner": "", "role": "failed", "bytes": c.bytes, "median_s": nan, "p20_s": nan,
            "p80_s": nan, "gbps": nan, "frac_limit": nan, "adamop_speedup": nan, "samples": 0,
            "error": o.error}


def table(outcomes: list[Outcome]) -> str:
    """A Markdown table per case, in order; a failed case says why. 'adamop x' = this runner's
    time / the first adamop runner's time (adamop[numba] on the CPU)."""
    lines = []
    for o in outcomes:
        lines += [f"### {o.case.name}", ""]
        if o.error is not None and not o.results:
            lines += ["failed: " + o.error.strip().replace("\n", "\n    "), ""]
            continue
        lines += ["| runner | median ms | p20-p80 ms | GB/s | x limit | adamop x | samples |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in rows(o.results):
            lines.append(f"| {r['runner']} | {r['median_s'] * 1e3:.3f} | "
                         f"{r['p20_s'] * 1e3:.3f}-{r['p80_s'] * 1e3:.3f} | {r['gbps']:.1f} | "
                         f"{r['frac_limit']:.2f} | {r['adamop_speedup']:.2f} | {r['samples']} |")
        for name, reason in o.skipped:
            lines.append(f"| {name} | skipped: {reason} | | | | | |")
        lines.append("")
    return "\n".join(lines)


def write_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder: a reader (or a
    crash) sees the old file or the new one, never half of one."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())      # mkstemp makes it private; a result is not
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_csv(path: str, outcomes: list[Outcome], desc: dict[str, str]) -> None:
    """One row per case and runner (a failed case: one row saying why), each with ``desc``."""
    data = [row for o in outcomes
            for row in (rows(o.results) if o.results else [_error_row(o)] if o.error else [])]
    fields = list(desc) + (list(data[0]) if data else [])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    for r in data:
        writer.writerow({**desc, **r})
    write_atomic(path, buf.getvalue())


def write_markdown(path: str, outcomes: list[Outcome], desc: dict[str, str],
                   extra: str = "") -> None:
    """The tables under a line that names the machine and versions, then ``extra``."""
    head = ", ".join(f"{k}={v}" for k, v in desc.items())
    write_atomic(path, f"{head}\n\n{table(outcomes)}\n{extra}")


def plot(path: str, results: list[Result], desc: dict[str, str]) -> None:
    """GB/s against size for the dense cases, one panel per dtype."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    data = [r for r in rows(results) if r["kind"] == "dense"]
    dtypes = list(dict.fromkeys(r["dtype"] for r in data)) or ["float32"]
    fig, axes = plt.subplots(1, len(dtypes), figsize=(5.5 * len(dtypes), 4.2), squeeze=False)
    for ax, dt in zip(axes[0], dtypes):
        for runner in dict.fromkeys(r["runner"] for r in data if r["dtype"] == dt):
            pts = sorted((r["elements"], r["gbps"]) for r in data
                         if r["dtype"] == dt and r["runner"] == runner)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=runner,
                    linestyle="--" if "limit" in runner else "-")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("elements")
        ax.set_ylabel("GB/s (7 x itemsize per element)")
        ax.set_title(f"dense {dt}")
        ax.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=7)
    where = desc.get("device") or f"{desc['cpu']} ({desc['threads']} threads)"
    fig.suptitle(f"adam_update on {where}, {desc['timestamp']}", fontsize=9)
    fig.tight_layout()
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110, format="png")
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    finally:
        plt.close(fig)
