"""Measurement harness: interleaved repetitions, robust statistics, ratios.

Rules this module enforces for every benchmark:

* Modes are *interleaved*: each repetition runs one batch of every mode, in an
  order that rotates from one repetition to the next, so slow drifts of a noisy
  machine (another tenant, CPU frequency, a background job) hit every mode
  alike.  Never all of A, then all of B.
* Each batch starts with a few warm-up iterations that are not recorded, and
  runs with the cyclic garbage collector paused (as ``timeit`` does); the
  collector runs between batches.
* Results are medians (and p90/p99 for latencies) over every recorded sample;
  a comparison also keeps the ratio of the two modes' medians *per repetition*
  so the spread of the ratio is visible.
* Nothing here asserts an absolute time.
"""

from __future__ import annotations

import gc
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

#: One batch of a mode: runs its iterations and returns samples in nanoseconds.
Batch = Callable[[], "list[float]"]


@dataclass
class Mode:
    """One way of doing the thing being measured."""

    name: str
    batch: Batch


@dataclass
class Series:
    """Every sample of one mode, plus the median of each repetition's batch."""

    name: str
    samples: list[float] = field(default_factory=list)
    rep_medians: list[float] = field(default_factory=list)


def interleave(modes: Sequence[Mode], reps: int) -> dict[str, Series]:
    """Run ``reps`` repetitions; each runs one batch of every mode, rotating the order."""
    series = {m.name: Series(m.name) for m in modes}
    k = len(modes)
    for r in range(reps):
        for i in range(k):
            mode = modes[(r + i) % k]
            gc.collect()
            gc.disable()
            try:
                samples = mode.batch()
            finally:
                gc.enable()
            if not samples:
                continue
            s = series[mode.name]
            s.samples.extend(samples)
            s.rep_medians.append(statistics.median(samples))
    return series


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) with linear interpolation between order statistics."""
    if not values:
        return math.nan
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(s: Series) -> dict[str, Any]:
    """Median, p90, p99, min and count of a series (nanoseconds)."""
    xs = s.samples
    if not xs:
        return {"n": 0, "median_ns": None, "p90_ns": None, "p99_ns": None, "min_ns": None}
    return {
        "n": len(xs),
        "median_ns": round(statistics.median(xs), 1),
        "p90_ns": round(quantile(xs, 0.90), 1),
        "p99_ns": round(quantile(xs, 0.99), 1),
        "min_ns": round(min(xs), 1),
    }


def compare(a: Series, b: Series, target: Optional[float] = None,
            stat: str = "median") -> dict[str, Any]:
    """``a`` relative to ``b``: the ratio of their medians (or p99s), and its spread.

    ``per_rep`` gives the median, quartiles and extremes of the ratio computed
    repetition by repetition (median of a's batch over median of b's batch of
    the same repetition), which shows how much the noise moves it.
    """
    if not a.samples or not b.samples:
        return {"of": a.name, "to": b.name, "stat": stat, "ratio": None,
                "target": target, "met": None}
    if stat == "p99":
        ratio = quantile(a.samples, 0.99) / quantile(b.samples, 0.99)
    else:
        ratio = statistics.median(a.samples) / statistics.median(b.samples)
    out: dict[str, Any] = {"of": a.name, "to": b.name, "stat": stat,
                           "ratio": round(ratio, 3)}
    if stat == "median":
        reps = [x / y for x, y in zip(a.rep_medians, b.rep_medians) if y > 0]
        if reps:
            out["per_rep"] = {"median": round(statistics.median(reps), 3),
                              "p25": round(quantile(reps, 0.25), 3),
                              "p75": round(quantile(reps, 0.75), 3),
                              "min": round(min(reps), 3), "max": round(max(reps), 3)}
    out["target"] = target
    out["met"] = None if target is None else bool(ratio <= target)
    return out


def us(ns: Optional[float], digits: int = 2) -> str:
    """Nanoseconds as a microsecond string for tables."""
    if ns is None or (isinstance(ns, float) and math.isnan(ns)):
        return "n/a"
    return f"{ns / 1000:.{digits}f}"
