"""The benchmark's limits on the CPU: trivial kernels with the update's own memory pattern.

Compiled and launched like the update's kernels (:mod:`adamop.backends.numba_kernels`, one thread
for small work), so that the fraction "adamop / limit" measures the arithmetic and the loop, not
the compiler, the threads or the memory system.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..backends.numba_kernels import _CHUNK, _JIT, _prefetch_ahead

__all__ = ["limit", "limit_rows"]


@njit(**_JIT)
def limit(w, g, m, v):
    """The same-pattern limit for benchmarks: read 4 arrays, write 3 in place, trivial math."""
    n = w.shape[0]
    for k in prange((n + _CHUNK - 1) // _CHUNK):
        for i in range(np.uint64(k * _CHUNK), np.uint64(min(n, (k + 1) * _CHUNK))):
            a, b, c, d = w[i], g[i], m[i], v[i]
            m[i] = c + b
            v[i] = d + b
            w[i] = a + d


@njit(**_JIT)
def limit_rows(w, gd, idx, m, v):
    """``limit`` for the lazy pattern: rows ``idx`` of 2-D w, m, v (prefetched as in ``lazy``)
    and the grad rows in order, trivial math."""
    n = w.shape[1]
    for k in prange(idx.shape[0]):
        _prefetch_ahead(w, m, v, idx, k)
        r = idx[k]
        for j in range(np.uint64(n)):
            a, b, c, d = w[r, j], gd[k, j], m[r, j], v[r, j]
            m[r, j] = c + b
            v[r, j] = d + b
            w[r, j] = a + d
