"""The results as a table, a CSV with the machine's description, and a PNG of GB/s vs size."""
from __future__ import annotations

import csv
import datetime
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from .harness import Result


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
    for pkg in ("adamop", "numpy", "numba", "torch"):
        try:
            desc[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            desc[pkg] = "absent"
    desc["mxnet"] = mxnet_version or "not run"
    try:
        desc["git_sha"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
            cwd=Path(__file__).resolve().parent).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        desc["git_sha"] = "unknown"
    return desc


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
                "adamop_speedup": r.median / best.median if best else float("nan")})
    return out


def table(results: list[Result], skipped: dict[str, list[tuple[str, str]]]) -> str:
    """A Markdown table per case. 'adamop x' = this runner's time / adamop[numba]'s time."""
    lines = []
    for case_name in dict.fromkeys(r["case"] for r in rows(results)):
        group = [r for r in rows(results) if r["case"] == case_name]
        lines += [f"### {case_name}", "",
                  "| runner | median ms | p20-p80 ms | GB/s | x limit | adamop x |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for r in group:
            lines.append(f"| {r['runner']} | {r['median_s'] * 1e3:.3f} | "
                         f"{r['p20_s'] * 1e3:.3f}-{r['p80_s'] * 1e3:.3f} | {r['gbps']:.1f} | "
                         f"{r['frac_limit']:.2f} | {r['adamop_speedup']:.2f} |")
        for name, reason in skipped.get(case_name, []):
            lines.append(f"| {name} | skipped: {reason} | | | | |")
        lines.append("")
    return "\n".join(lines)


def write_csv(path: str, results: list[Result], desc: dict[str, str]) -> None:
    data = rows(results)
    fields = list(desc) + (list(data[0]) if data else [])
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for r in data:
            writer.writerow({**desc, **r})


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
    fig.savefig(path, dpi=110)
    plt.close(fig)
