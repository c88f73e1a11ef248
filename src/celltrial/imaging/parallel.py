"""Threads for the independent slabs of a CT volume (off by default).

numpy's loops and SciPy's ndimage filters, morphology and labelling release the GIL while they
run, so slabs of slices (or the two lungs) handled in threads can use several cores. Each task
writes only its own part of the output, so results do not depend on the number of threads.

One thread is the default: on the shared 2-core machine of issue 10 (load 5–8) two threads gave
no shorter wall time for the 512 × 512 × 300 benchmark and raised its peak resident memory by
about half the volume's size (each thread's malloc arena keeps freed slab buffers). Set
:data:`WORKERS` (``benchmarks/bench_ct.py --threads N``) to measure or use more on idle cores.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: Threads per scan; 1 runs everything in the calling thread. At most the machine's cores.
WORKERS = 1


def map_threads(task: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[task(item) for item in items]``, run in up to :data:`WORKERS` threads, in order."""
    items = list(items)
    workers = min(WORKERS, os.cpu_count() or 1, len(items))
    if workers <= 1:
        return [task(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(task, items))


__all__ = ["WORKERS", "map_threads"]
