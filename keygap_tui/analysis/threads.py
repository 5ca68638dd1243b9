"""How many BLAS/OpenMP threads the statistics use.

On a machine whose cores are already busy, BLAS threads spin against the other work: at load average 4.5
on 2 cores, default `compare` (MMD + JS, n = 500, d = 4096) took 1.64 s with the libraries' 2 threads and
0.48 s with one (threadpoolctl; small LAPACK calls inside JS's randomized SVD suffered most). "auto" therefore
uses one thread when the 1-minute load average is at least the number of cores, and the libraries' own
default otherwise. The thread count does not enter cache keys: it changes speed, not the method.
"""

from __future__ import annotations

import contextlib
import os


def resolve_threads(threads: int | str | None) -> int | None:
    """None = library default; an int = that many threads; "auto" = 1 on a busy machine, else None."""
    if threads is None:
        return None
    if threads == "auto":
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            return None
        return 1 if load >= (os.cpu_count() or 1) else None
    n = int(threads)
    if n < 1:
        raise ValueError(f"threads must be a positive integer, 'auto' or None, got {threads!r}")
    return n


@contextlib.contextmanager
def limit_threads(threads: int | str | None):
    """Limit BLAS/OpenMP pools inside the block; yields the limit applied (None = none)."""
    limit = resolve_threads(threads)
    if limit is None:
        yield None
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=limit):
        yield limit
