"""Fuzzing the checkpoint readers with mutations of real MXNet files (fixed seed).

Every mutant either loads, or is refused with a ValueError; nothing else escapes, nothing sized
by the file's numbers is allocated (tracemalloc's peak stays small), and a mutant that loads as
a .params file is written back byte for byte. 9,000 cases, ~10 s.
"""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from conftest import DATA
from test_states import classes, either_classes  # noqa: F401  (optimizer class fixtures)

from adamop import nd, states

PARAMS = [p.read_bytes() for p in sorted((DATA / "ckpt_dev").glob("*.params"))]
PARAMS += [p.read_bytes() for p in sorted((DATA / "ckpt_extra").glob("*.params"))]
STATES = [p.read_bytes() for p in sorted((DATA / "ckpt_dev").glob("*.states"))]
STATES += [p.read_bytes() for p in sorted((DATA / "ckpt_extra").glob("*_p[0-2].states"))]
PEAK = 1 << 20     # bytes; the inputs are at most a few KiB


def mutate(rng: np.random.Generator, data: bytes) -> bytes:
    """One mutation: bit flips, a cut, inserted or duplicated bytes, or a large length field."""
    b = bytearray(data)
    kind = rng.integers(6)
    if kind == 0:
        for _ in range(rng.integers(1, 4)):
            i = rng.integers(len(b))
            b[i] ^= 1 << int(rng.integers(8))
    elif kind == 1:
        del b[rng.integers(len(b)):]
    elif kind == 2:
        i = rng.integers(len(b) + 1)
        b[i:i] = rng.bytes(int(rng.integers(1, 9)))
    elif kind == 3:
        i, j = sorted(rng.integers(len(b), size=2))
        b[j:j] = b[i:j]
    elif kind == 4:      # a 32-bit field (ndim, type flag, dims of legacy records, ...)
        i = int(rng.integers(len(b) // 4)) * 4
        value = [0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 33, 1, 0, int(rng.integers(2 ** 32))]
        b[i:i + 4] = value[rng.integers(len(value))].to_bytes(4, "little")
    else:                # a 64-bit field (counts, dims, name lengths)
        i = int(rng.integers(len(b) // 8)) * 8
        b[i:i + 8] = int(rng.integers(2 ** 63)).to_bytes(8, "little")
    return bytes(b)


def _fuzz(files, load, check_loaded, n, seed):
    rng = np.random.default_rng(seed)
    for data in files:                  # imports (scipy) done before measuring
        load(data)
    outcomes = {"loaded": 0, "refused": 0}
    tracemalloc.start()
    try:
        for case in range(n):
            data = mutate(rng, files[case % len(files)])
            tracemalloc.reset_peak()
            try:
                loaded = load(data)
            except ValueError:
                outcomes["refused"] += 1
            except Exception as exc:     # noqa: BLE001  (the point: nothing else may escape)
                pytest.fail(f"case {case}: {type(exc).__name__}: {exc} for {data!r:.300}")
            else:
                outcomes["loaded"] += 1
                check_loaded(data, loaded)
            peak = tracemalloc.get_traced_memory()[1]
            assert peak < PEAK, f"case {case}: {peak} bytes allocated for {len(data)} bytes"
    finally:
        tracemalloc.stop()
    return outcomes


def _resaves(data, loaded):
    """A mutant that loads writes back as it came, unless MXNet 1.9.1 could not read it back
    (a dtype it refuses) or a name repeats (a dict keeps the last, as mx.nd.load's does)."""
    try:
        again = nd.save_tobuffer(loaded)
    except TypeError as exc:
        assert "cannot read" in str(exc)
        return
    assert again == data or len(loaded) < int.from_bytes(data[16:24], "little")


def test_fuzz_params():
    outcomes = _fuzz(PARAMS, nd.load_frombuffer, _resaves, 5000, seed=20240611)
    print(outcomes)
    assert outcomes["loaded"] > 300 and outcomes["refused"] > 2000, outcomes


def test_fuzz_states(either_classes):  # noqa: F811
    outcomes = _fuzz(STATES, lambda b: states.loads(b, source="fuzz"), lambda d, x: None,
                     2000, seed=20240612)
    print(outcomes)
    assert outcomes["loaded"] > 30 and outcomes["refused"] > 1000, outcomes
