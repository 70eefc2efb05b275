"""Timing helpers shared by every section: alternating batches, medians, the report."""

from __future__ import annotations

import gc
import json
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Settings:
    """How long each section runs. ``quick`` is for a smoke run, not for figures."""

    quick: bool = False
    #: operations per batch, batches per variant (alternating), warm-up operations
    batch: int = 400
    rounds: int = 9
    warmup: int = 200
    #: seconds one comparison may take at most (the rounds stop early past it)
    max_seconds: float = 60.0
    #: seconds each load-generator run lasts (real server sections)
    load_seconds: float = 8.0
    #: stored locks for the scale section
    scale_sizes: tuple[int, ...] = (1, 10_000, 1_000_000)
    #: lock cycles before the memory reading
    memory_cycles: int = 100_000
    #: counted operations per callgrind run of the instructions section (the second: twice)
    instruction_requests: int = 200
    postgresql_url: str | None = None
    mysql_url: str | None = None

    @classmethod
    def make(cls, quick: bool, smoke: bool = False) -> Settings:
        if smoke:  # the test suite: prove every in-process path runs, in a fraction of a second
            return cls(quick=True, batch=5, rounds=2, warmup=2, max_seconds=2.0, load_seconds=1.0,
                       scale_sizes=(1, 100), memory_cycles=50, instruction_requests=5)
        if quick:
            return cls(quick=True, batch=100, rounds=3, warmup=50, max_seconds=10.0,
                       load_seconds=2.0, scale_sizes=(1, 10_000), memory_cycles=2_000,
                       instruction_requests=50)
        return cls()


@dataclass
class Timing:
    """Seconds per operation of one variant, one value per batch: CPU time of this process
    (what the code costs; robust when other processes load the machine) and wall time."""

    name: str
    per_op: list[float] = field(default_factory=list)
    wall_per_op: list[float] = field(default_factory=list)

    @property
    def wall_median(self) -> float:
        return statistics.median(self.wall_per_op)

    @property
    def median(self) -> float:
        return statistics.median(self.per_op)

    @property
    def ops_per_second(self) -> float:
        return 1.0 / self.median if self.median > 0 else float("inf")

    @property
    def spread(self) -> float:
        """Relative interquartile spread of the batches (noise indicator)."""
        if len(self.per_op) < 4:
            return 0.0
        q = statistics.quantiles(self.per_op, n=4)
        return (q[2] - q[0]) / self.median if self.median else 0.0


def compare(
    variants: Mapping[str, Callable[[], Any]], settings: Settings, *, batch: int | None = None
) -> dict[str, Timing]:
    """Time every variant in alternating batches (order rotated each round).

    Drift on the machine (other processes, CPU frequency) then hits every variant alike,
    and the ratio of medians is stable even when the absolute numbers are not.
    """
    size = batch or settings.batch
    names = list(variants)
    for name in names:  # warm-up: caches, connection pools, first-request setup
        op = variants[name]
        for _ in range(settings.warmup):
            op()
    timings = {name: Timing(name) for name in names}
    started = time.perf_counter()
    for round_number in range(settings.rounds):
        order = names[round_number % len(names):] + names[: round_number % len(names)]
        for name in order:
            op = variants[name]
            gc.collect()
            w0, t0 = time.perf_counter(), time.process_time()
            for _ in range(size):
                op()
            timings[name].per_op.append((time.process_time() - t0) / size)
            timings[name].wall_per_op.append((time.perf_counter() - w0) / size)
        if time.perf_counter() - started > settings.max_seconds and round_number >= 2:
            break
    return timings


@dataclass
class Report:
    """Figures as they are measured: printed at once, kept for ``--json``."""

    sections: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    current: str = ""

    def section(self, title: str) -> None:
        self.current = title
        self.sections.setdefault(title, [])
        print(f"\n== {title} ==", flush=True)

    def row(self, label: str, **values: Any) -> None:
        self.sections.setdefault(self.current, []).append({"label": label, **values})
        parts = []
        for key, value in values.items():
            parts.append(f"{key}={_fmt(value)}")
        print(f"  {label:<52} " + "  ".join(parts), flush=True)

    def note(self, text: str) -> None:
        self.sections.setdefault(self.current, []).append({"note": text})
        print(f"  - {text}", flush=True)

    def timings(self, timings: Mapping[str, Timing], baseline: str) -> None:
        """One row per variant: ops per CPU-second, CPU µs/op, the ratio of throughput
        against ``baseline`` (on CPU time), the same on wall-clock time, and the spread."""
        base = timings[baseline]
        for name, timing in timings.items():
            self.row(
                name,
                ops_s=round(timing.ops_per_second, 1),
                us_op=round(timing.median * 1e6, 1),
                ratio=round(base.median / timing.median, 3),
                wall_ratio=round(base.wall_median / timing.wall_median, 3),
                spread=round(timing.spread, 3),
            )

    def dump(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self.sections, handle, indent=2)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def warn(text: str) -> None:
    print(f"  ! {text}", file=sys.stderr, flush=True)
