"""Scale: cost with 1, 10k and 1M stored locks; memory of a worker over many lock cycles."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from typing import Any

from .apps import locking_app
from .common import Report, Settings, compare
from .inprocess import USER, _expect


def fill(path: str, table: str, count: int) -> float:
    """Bulk-insert ``count`` live locks straight into the lock table; return the seconds."""
    started = time.perf_counter()
    now_ms = int(time.time() * 1000)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        rows = (
            (f"/bulk/{i}", "s" * 64, f"u:user{i % 97}", f"user{i % 97}", f"user{i % 97}", None,
             1, 0, 86_400_000, now_ms, 1)
            for i in range(count)
        )
        conn.executemany(f"INSERT INTO {table} VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
        conn.execute("COMMIT")
    finally:
        conn.close()
    return time.perf_counter() - started


def run_scale(report: Report, settings: Settings) -> None:
    report.section(
        "Scale: guard lookup and lock cycle with 1 / 10k / 1M stored live locks (SQLite)"
    )
    with tempfile.TemporaryDirectory(prefix="flbench-scale-") as directory:
        variants: dict[str, Any] = {}
        apps = []
        for size in settings.scale_sizes:
            path = os.path.join(directory, f"locks-{size}.sqlite3")
            app = locking_app(f"sqlite:///{path}", "bench_locks")
            apps.append(app)
            client = app.test_client()
            _expect(client.patch("/docs/warm"), 200)  # creates the table
            seconds = fill(path, "bench_locks", max(0, size - 1))
            held = _expect(client.post("/docs/held/@lock", headers=USER), 200)
            token = held.headers["Lock-Token"]
            with sqlite3.connect(path) as conn:
                stored = conn.execute("SELECT count(*) FROM bench_locks").fetchone()[0]
                plan = conn.execute(
                    "EXPLAIN QUERY PLAN SELECT * FROM bench_locks WHERE resource IN (?, ?, ?)",
                    ("/", "/docs", "/docs/1"),
                ).fetchall()
            report.note(f"{stored} locks stored (bulk insert {seconds:.1f}s); guard query plan: "
                        f"{'; '.join(str(row[-1]) for row in plan)}")
            variants[f"guard PATCH unlocked, {stored} locks"] = (
                lambda c=client: c.patch("/docs/1"))
            variants[f"guard PATCH locked + token, {stored} locks"] = (
                lambda c=client, t=token: c.patch("/docs/held", headers={"Lock-Token": t}))

            def cycle(c: Any = client) -> None:
                held = c.post("/docs/cycled/@lock", headers=USER).headers["Lock-Token"]
                c.delete("/docs/cycled/@lock", headers={**USER, "Lock-Token": held})

            variants[f"lock cycle, {stored} locks"] = cycle
        try:
            for kind in ("guard PATCH unlocked", "guard PATCH locked + token", "lock cycle"):
                chosen = {name: op for name, op in variants.items() if name.startswith(kind + ",")}
                timings = compare(chosen, settings)
                report.timings(timings, next(iter(chosen)))
        finally:
            for app in apps:
                app.extensions["locking"].close()


# -- memory --------------------------------------------------------------------------------

_MEMORY_CHILD = r"""
import json, os, sys, tempfile
sys.path.insert(0, sys.argv[3])
from benchmarks.apps import locking_app

def rss_kib():
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

cycles, budget = int(sys.argv[1]), float(sys.argv[2])
import time
with tempfile.TemporaryDirectory() as d:
    app = locking_app(f"sqlite:///{d}/locks.sqlite3")
    client = app.test_client()
    started = time.monotonic()
    marks = sorted({max(1, cycles // 10), cycles // 4, cycles // 2, 3 * cycles // 4, cycles})
    samples = []
    for n in range(1, cycles + 1):
        path = f"/docs/{n % 1000}/@lock"   # 1000 resources, each locked and released again
        user = {"X-User": f"user{n % 50}"}
        token = client.post(path, headers=user).headers["Lock-Token"]
        client.delete(path, headers={**user, "Lock-Token": token})
        if n in marks:
            samples.append((n, rss_kib()))
        if time.monotonic() - started > budget:
            samples.append((n, rss_kib()))
            break
    app.extensions["locking"].close()
print("MEMORY_JSON " + json.dumps({"samples": samples, "seconds": time.monotonic() - started}))
"""


def run_memory(report: Report, settings: Settings) -> None:
    cycles = settings.memory_cycles
    budget = 300.0 if not settings.quick else 30.0
    report.section(f"Memory: RSS of a worker process over {cycles} lock cycles (SQLite, WSGI)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, str(cycles), str(budget), root],
        capture_output=True, text=True, timeout=budget + 120, check=False,
    )
    for line in done.stdout.splitlines():
        if line.startswith("MEMORY_JSON "):
            data = json.loads(line[len("MEMORY_JSON "):])
            samples = data["samples"]
            for n, kib in samples:
                report.row(f"after {n} cycles", rss_mib=round(kib / 1024, 1))
            first, last = samples[0], samples[-1]
            report.note(f"growth from {first[0]} to {last[0]} cycles: "
                        f"{(last[1] - first[1]) / 1024:+.1f} MiB in {data['seconds']:.0f}s")
            return
    report.note(f"memory run failed: {done.stderr[-800:]}")
