"""Thread pools of the BLAS libraries loaded in the process, capped once at start-up.

numpy's OpenBLAS (and the one faiss bundles) start a thread per core, and between calls
those threads spin for a while before they sleep. The worker scores small micro-batches
many times a second, so the pool never sleeps: on two cores it burned most of a core
while serving 100 events/s (``bench/compute_bench.py --blas-threads`` measures it).
"""

from __future__ import annotations

from typing import Any

_limits: list[Any] = []  # keeps the limiter alive: the cap holds while it exists


def limit_blas_threads(threads: int) -> dict[str, int]:
    """Cap every BLAS library loaded so far at ``threads``; 0 leaves their defaults.

    Call it after numpy and faiss are imported (a library loaded later keeps its own
    default). Returns the libraries' thread counts after the call, by file name.
    """
    from threadpoolctl import threadpool_info, threadpool_limits

    if threads > 0:
        _limits.append(threadpool_limits(limits=int(threads), user_api="blas"))
    return {
        info["filepath"].rsplit("/", 1)[-1]: int(info["num_threads"])
        for info in threadpool_info()
        if info["user_api"] == "blas"
    }
