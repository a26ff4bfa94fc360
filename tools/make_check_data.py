#!/usr/bin/env python
"""Build ``src/adamop/data/check_cases.npz``, the compact golden set ``adamop check`` runs.

It is a deterministic subset of ``tests/data/golden_dev.npz`` (every number in it was produced by
MXNet 1.9.1). Cases and array names are those of the golden file (layout documented at the top of
the golden generator, ``mxnet_golden.py``), but the arrays are stored pooled: one flat array per
dtype, cut apart by ``meta_json["index"]`` (name -> [dtype, offset, shape]). The selection keeps

* every combination of group, kernel path, dtype, storage types, index order, state kind,
  description, number of dimensions and clipping (the first case of each, in file order);
* every dense case whose hyperparameter strings dmlc parses differently from ``np.float32``;
* all special-value, fallback and optimizer-replay cases, and one large dense case.

csr cases are left out (out of scope). The file is written with fixed zip timestamps, so the same
input always gives the same bytes.

Usage: python tools/make_check_data.py [--golden tests/data/golden_dev.npz]
                                        [--out src/adamop/data/check_cases.npz]
"""
from __future__ import annotations

import argparse
import io
import json
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def _parse_sensitive(case: dict) -> bool:
    """True if some parameter string parses (in MXNet) to a float32 other than np.float32's."""
    for name, text in case["kwargs"].items():
        if name == "lazy_update" or name not in case["params_f32_bits"]:
            continue
        nearest = int(np.array(float(text), np.float32).view(np.uint32))
        if nearest != case["params_f32_bits"][name]:
            return True
    return False


def _key(case: dict) -> tuple:
    kw, ex = case["kwargs"], case["extra"]
    clip = float(kw.get("clip_gradient", "-1")) >= 0
    stypes = tuple(case["stype"][k] for k in ("weight", "grad", "mean", "var"))
    return (case["group"], case["path"], case["dtype"], stypes,
            ex.get("indices_sorted", True), ex.get("state_empty_rsp", False), case["desc"],
            len(case["shape"]), clip)


def select(cases: list[dict]) -> list[dict]:
    """The subset, in file order."""
    keep, seen = [], set()
    for case in cases:
        if "csr" in case["stype"].values():
            continue
        group, key = case["group"], _key(case)
        if group in ("dense_special", "fallback", "optimizer"):
            take = True
        elif group == "large":
            take = case["dtype"] == "float16"  # one is enough: half the bytes of the float32 one
        else:
            take = key not in seen or (group == "dense_grid" and _parse_sensitive(case))
        seen.add(key)
        if take:
            keep.append(case)
    return keep


def pool(arrays: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, list]]:
    """Concatenate the arrays of each dtype into one flat array (a few hundred small arrays
    compress far better together than one zip entry and one .npy header each).

    Returns the pools (dtype name -> 1-D array) and the index (array name -> [dtype, offset,
    shape]) that :func:`adamop.golden.load` uses to cut them apart again.
    """
    parts: dict[str, list[np.ndarray]] = {}
    sizes: dict[str, int] = {}
    index: dict[str, list] = {}
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        dt = a.dtype.name
        index[name] = [dt, sizes.get(dt, 0), list(a.shape)]
        parts.setdefault(dt, []).append(a.reshape(-1))
        sizes[dt] = sizes.get(dt, 0) + a.size
    return {dt: np.concatenate(p) for dt, p in parts.items()}, index


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez_compressed with fixed timestamps and sorted names (byte-for-byte reproducible)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=9)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--golden", type=Path, default=REPO / "tests" / "data" / "golden_dev.npz")
    ap.add_argument("--out", type=Path, default=REPO / "src" / "adamop" / "data" /
                    "check_cases.npz")
    args = ap.parse_args(argv)
    with np.load(args.golden, allow_pickle=False) as z:
        meta = json.loads(str(z["meta_json"]))
        chosen = select(meta["cases"])
        ids = {c["id"] for c in chosen}
        arrays = {k: z[k] for k in z.files if k.split("__", 1)[0] in ids}
    out_meta = {
        "source": args.golden.name, "mxnet_version": meta["mxnet_version"],
        "variant": meta["variant"], "seed": meta["seed"],
        "selection": "tools/make_check_data.py: first case of every group/path/dtype/storage/"
                     "index-order/state/desc/rank/clip combination, parse-sensitive dense "
                     "cases, all special/fallback/optimizer cases, one large case; no csr",
        "cases": chosen,
    }
    pools, out_meta["index"] = pool(arrays)
    pools["meta_json"] = np.array(json.dumps(out_meta, sort_keys=True))
    _write_npz(args.out, pools)
    groups: dict[str, int] = {}
    for c in chosen:
        groups[c["group"]] = groups.get(c["group"], 0) + 1
    print(f"{args.out}: {len(chosen)} of {len(meta['cases'])} cases "
          f"({', '.join(f'{g} {n}' for g, n in groups.items())}), "
          f"{args.out.stat().st_size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
