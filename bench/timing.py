"""Micro-benchmark timing shared by the in-process measurements (record_codec, tracing_cost)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_per_call(fn: Callable[[], object], repeats: int, loops: int) -> float:
    """Median seconds per call of ``fn`` over ``repeats`` runs of ``loops`` calls each."""
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(loops):
            fn()
        runs.append((time.perf_counter() - started) / loops)
    return statistics.median(runs)
