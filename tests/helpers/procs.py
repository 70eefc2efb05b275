"""Run :mod:`helpers.racers` targets in spawned processes and collect what they report."""

from __future__ import annotations

import itertools
import multiprocessing
import queue as queue_module
from collections.abc import Callable, Sequence
from typing import Any

CTX = multiprocessing.get_context("spawn")


def run(
    target: Callable[..., None],
    per_process: Sequence[tuple[Any, ...]],
    *,
    parties: int | None = None,
    timeout: float = 120,
) -> list[tuple[Any, ...]]:
    """Start one process per argument tuple, each called as ``target(*args, sync, queue)``
    where ``sync`` is a barrier of ``parties`` (default: one per process); return every
    message, failing loudly if a worker crashed or did not report."""
    sync = CTX.Barrier(parties or len(per_process))
    results = CTX.Queue()
    processes = [CTX.Process(target=target, args=(*args, sync, results)) for args in per_process]
    for process in processes:
        process.start()
    messages: list[tuple[Any, ...]] = []
    try:
        while len(messages) < len(processes):
            try:
                messages.append(results.get(timeout=timeout))
            except queue_module.Empty:
                raise AssertionError(
                    f"only {len(messages)} of {len(processes)} workers reported"
                ) from None
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join()
    crashes = [m for m in messages if m[0] == "crash"]
    assert not crashes, "\n".join(f"{m[1]}:\n{m[2]}" for m in crashes)
    return messages


def check_grants(grants: Sequence[tuple[Any, ...]]) -> tuple[list[str], list[str]]:
    """The checker: ``(duplicate_versions, overlaps)`` among ``(version, start_ms, end_ms,
    ...)`` grants of one resource. A correct store yields two empty lists."""
    seen: dict[int, tuple[Any, ...]] = {}
    duplicates = []
    for grant in grants:
        if grant[0] in seen:
            duplicates.append(f"version {grant[0]} granted twice: {seen[grant[0]]} and {grant}")
        seen[grant[0]] = grant
    ordered = sorted(grants, key=lambda g: (g[1], g[0]))
    overlaps = []
    for before, after in itertools.pairwise(ordered):
        if after[1] < before[2]:
            overlaps.append(f"{after} starts before {before} ends")
        if after[0] <= before[0]:
            overlaps.append(f"version went back: {before} then {after}")
    return duplicates, overlaps
