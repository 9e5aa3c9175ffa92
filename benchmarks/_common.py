"""Small helpers shared by the benchmarks: percentiles and the floor verdict."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def pct(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(samples: Sequence[float]) -> str:
    ms = [s * 1000 for s in samples]
    return (f"p50 {pct(ms, 50):7.2f} ms  p99 {pct(ms, 99):7.2f} ms  "
            f"mean {statistics.fmean(ms):7.2f} ms  n={len(ms)}")


class Floors:
    def __init__(self) -> None:
        self.failed: list[str] = []

    def check(self, name: str, value: float, limit: float, unit: str = "ms") -> None:
        ok = value <= limit
        print(f"  floor {name}: {value:.2f} {unit} <= {limit:g} {unit}: "
              f"{'PASS' if ok else 'FAIL'}")
        if not ok:
            self.failed.append(name)
