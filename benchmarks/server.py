"""Real-server figures: gunicorn on 127.0.0.1 driven by wrk (or a bounded Python client).

Every load run is bounded in time (``--duration``) and in requests per connection; the only
target is the loopback server this module starts and stops.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from .apps import new_table_name
from .common import Report, Settings, warn
from .cpu import CpuMeter, per_request_us

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LUA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "load.lua")
#: requests per connection at most, in every load run
MAX_REQUESTS_PER_CONNECTION = 200_000


@dataclass
class LoadResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    s2: int = 0
    s409: int = 0
    s5: int = 0
    other: int = 0
    granted: int = 0
    socket_errors: int = 0
    #: CPU µs per request of the gunicorn workers and of the database server (None when
    #: not measured: see benchmarks/cpu.py)
    cpu_us: tuple[float, float] | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def gunicorn(database_uri: str, table: str, worker_class: str, workers: int = 2,
             threads: int | None = None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A gunicorn serving :func:`benchmarks.apps.server_app` on a free loopback port: one
    thread per worker for ``sync`` (with more, gunicorn would quietly run ``gthread``
    instead), else ``threads`` (default 4)."""
    if threads is None:
        threads = 1 if worker_class == "sync" else 4
    port = free_port()
    env = dict(os.environ, BENCH_DATABASE_URI=database_uri, LOCKING_TABLE_NAME=table,
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    command = [
        sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers), "--worker-class", worker_class, "--threads", str(threads),
        "--log-level", "warning", "--timeout", "60", "benchmarks.apps:server_app()",
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/docs/warmup")
                if conn.getresponse().status == 200:
                    conn.close()
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start (exit code {process.poll()})")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_load(url: str, mode: str, connections: int, seconds: float,
             meter: CpuMeter | None = None) -> LoadResult:
    """One bounded load run against ``url`` (wrk when installed, else Python threads), with
    the CPU per request that ``meter`` reads when given."""
    before = meter.read() if meter else None
    if shutil.which("wrk"):
        result = _wrk(url, mode, connections, seconds)
    else:
        result = _python_load(url, mode, connections, seconds)
    if meter:
        result.cpu_us = per_request_us(before, meter.read(), result.requests)
    return result


def _wrk(url: str, mode: str, connections: int, seconds: float) -> LoadResult:
    threads = connections if mode in ("hot", "distinct") else min(connections, 2)
    command = [
        "wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
        "--timeout", "10s", "-s", LUA, url, "--", mode,
        str(MAX_REQUESTS_PER_CONNECTION * max(1, connections // threads)),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            data = json.loads(line[len("BENCH_JSON "):])
            return LoadResult(
                requests=data["requests"],
                seconds=data["duration_us"] / 1e6,
                p50_ms=data["p50_us"] / 1000,
                p99_ms=data["p99_us"] / 1000,
                s2=data["s2"], s409=data["s409"], s5=data["s5"], other=data["other"],
                granted=data["granted"],
                socket_errors=data["connect_errors"] + data["read_errors"]
                + data["write_errors"] + data["timeouts"],
            )
    raise RuntimeError(f"wrk gave no result: {done.stdout[-500:]} {done.stderr[-500:]}")


def _python_load(url: str, mode: str, connections: int, seconds: float) -> LoadResult:
    """The fallback load generator: one thread per connection, keep-alive, bounded."""
    host, port = url.rsplit("/", 1)[-1].split(":")
    latencies: list[float] = []
    counts = {"s2": 0, "s409": 0, "s5": 0, "other": 0, "granted": 0, "socket_errors": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(ident: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        user = {"X-User": f"u{ident}", "Content-Length": "0"}
        token: str | None = None
        path = "/docs/hot/@lock" if mode == "hot" else f"/docs/c{ident}/@lock"
        mine: list[float] = []
        local = dict.fromkeys(counts, 0)
        for n in range(MAX_REQUESTS_PER_CONNECTION):
            if time.monotonic() > deadline:
                break
            if mode == "bare":
                method, target, headers = "POST", f"/bare/{ident}-{n}/lock", user
            elif mode == "acquire":
                method, target, headers = "POST", f"/docs/{ident}-{n}/@lock", user
            elif mode == "raw":
                method, target, headers = "POST", f"/raw/{ident}-{n}/lock", user
            elif token is not None:
                method, target, headers = "DELETE", path, {**user, "Lock-Token": token}
                token = None
            else:
                method, target, headers = "POST", path, user
            t0 = time.perf_counter()
            try:
                conn.request(method, target, headers=headers)
                response = conn.getresponse()
                response.read()
            except OSError:
                local["socket_errors"] += 1
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=10)
                continue
            mine.append(time.perf_counter() - t0)
            status = response.status
            key = "s5" if status >= 500 else "s409" if status == 409 else (
                "s2" if 200 <= status < 300 else "other")
            local[key] += 1
            if mode in ("hot", "distinct") and status == 200 and method == "POST":
                token = response.getheader("Lock-Token")
                local["granted"] += 1
        conn.close()
        with lock:
            latencies.extend(mine)
            for k, v in local.items():
                counts[k] += v

    started = time.monotonic()
    workers = [threading.Thread(target=worker, args=(i + 1,)) for i in range(connections)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(seconds + 30)
    elapsed = time.monotonic() - started
    latencies.sort()

    def pct(q: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return LoadResult(requests=len(latencies), seconds=elapsed, p50_ms=pct(0.5), p99_ms=pct(0.99),
                      **counts)


# -- backends ------------------------------------------------------------------------------


@contextmanager
def backends(settings: Settings) -> Iterator[list[tuple[str, str, str]]]:
    """``(name, database URI, table)`` for SQLite (a temp file), and PostgreSQL and
    MariaDB/MySQL when their URLs are given; their tables are dropped afterwards."""
    directory = tempfile.mkdtemp(prefix="flbench-server-")
    chosen = [("sqlite", f"sqlite:///{directory}/locks.sqlite3", "bench_locks")]
    servers = [("postgresql", settings.postgresql_url), ("mariadb", settings.mysql_url)]
    for name, url in servers:
        if not url:
            continue
        try:
            engine = sa.create_engine(url)
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            engine.dispose()
            chosen.append((name, url, new_table_name()))
        except Exception as error:  # noqa: BLE001 - report and go on with the others
            warn(f"{name} at {url} is not reachable, skipped: {error}")
    try:
        yield chosen
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        for _name, url, table in chosen[1:]:
            drop_tables(url, [table])


#: The tables a benchmark run leaves beside its lock table.
SUFFIXES = ("_meta", "_events", "_event_head", "_raw", "")


def drop_tables(url: str, tables: list[str]) -> None:
    engine = sa.create_engine(url)
    quote = engine.dialect.identifier_preparer.quote
    try:
        with engine.begin() as conn:
            for table in tables:
                for suffix in SUFFIXES:
                    conn.execute(sa.text(f"DROP TABLE IF EXISTS {quote(table + suffix)}"))
    finally:
        engine.dispose()


def _alternate(url: str, modes: tuple[str, ...], connections: int, seconds: float,
               rounds: int = 2, meter: CpuMeter | None = None) -> dict[str, list[LoadResult]]:
    """Run the modes in alternating rounds so drift hits each."""
    results: dict[str, list[LoadResult]] = {mode: [] for mode in modes}
    for round_number in range(rounds):
        order = modes if round_number % 2 == 0 else modes[::-1]
        for mode in order:
            results[mode].append(run_load(url, mode, connections, seconds / rounds, meter))
    return results


def _summary(results: list[LoadResult]) -> dict[str, Any]:
    cpu = [r.cpu_us for r in results if r.cpu_us is not None]
    measured = {
        # CPU µs per request: the workers', the database server's, and both
        "cpu_worker_us": round(statistics.median(w for w, _d in cpu)),
        "cpu_db_us": round(statistics.median(d for _w, d in cpu)),
        "cpu_us": round(statistics.median(w + d for w, d in cpu)),
    } if cpu else {}
    return {
        "req_s": round(statistics.median(r.rps for r in results), 1),
        "p50_ms": round(statistics.mean(r.p50_ms for r in results), 2),
        "p99_ms": round(statistics.mean(r.p99_ms for r in results), 2),
        "5xx": sum(r.s5 for r in results),
        "socket_errors": sum(r.socket_errors for r in results),
        # a request the route did not do (4xx, a 409) is no measure of that route's work
        "not_2xx": sum(max(0, r.requests - r.s2) for r in results),
        **measured,
    }


def postgresql_floor(url: str, count: int = 200) -> tuple[str, float]:
    """The server version, and the milliseconds of one upsert + COMMIT on one connection:
    the floor under any lock acquisition on that server (a commit waits for its WAL flush)."""
    engine = sa.create_engine(url)
    table = new_table_name() + "_floor"
    try:
        with engine.connect() as conn:
            server = str(conn.execute(sa.text("SHOW server_version")).scalar_one())
            conn.execute(sa.text(f'CREATE TABLE "{table}" (k text PRIMARY KEY, v bigint)'))
            conn.commit()
            upsert = sa.text(f'INSERT INTO "{table}" VALUES (:k, 1) ON CONFLICT (k) '
                             f'DO UPDATE SET v = "{table}".v + 1')
            started = time.perf_counter()
            for i in range(count):
                conn.execute(upsert, {"k": str(i % 16)})
                conn.commit()
            per_commit = (time.perf_counter() - started) / count * 1000
            conn.execute(sa.text(f'DROP TABLE "{table}"'))
            conn.commit()
        return server, per_commit
    finally:
        engine.dispose()


def run_server(report: Report, settings: Settings) -> None:
    report.section("Real server: gunicorn on 127.0.0.1, lock acquire vs a bare route and a "
                   "raw-driver upsert route "
                   f"({'wrk' if shutil.which('wrk') else 'Python client'})")
    with backends(settings) as chosen:
        for backend, uri, _table in chosen:
            if backend == "postgresql":
                server, per_commit = postgresql_floor(uri)
                report.note(f"PostgreSQL {server}: one raw upsert + COMMIT on one connection "
                            f"takes {per_commit:.2f} ms (the storage floor: ~"
                            f"{1000 / per_commit:.0f} write transactions/s per connection)")
        for backend, uri, table in chosen:
            for worker_class, connections in (("sync", 8), ("gthread", 16)):
                with gunicorn(uri, table, worker_class) as (url, process):
                    run_load(url, "acquire", 4, 1)  # warm-up: every worker opens its store
                    run_load(url, "raw", 4, 1)
                    results = _alternate(url, ("bare", "raw", "acquire"), connections,
                                         settings.load_seconds,
                                         meter=CpuMeter(process.pid, backend))
                bare, raw = _summary(results["bare"]), _summary(results["raw"])
                acquire = _summary(results["acquire"])
                label = f"{backend} {worker_class} x2 workers, {connections} connections"
                for name, summary in (("bare", bare), ("raw", raw), ("acquire", acquire)):
                    if summary["not_2xx"]:
                        warn(f"{label}: {summary['not_2xx']} '{name}' requests were not"
                             " answered 2xx: that row does not measure its route")
                report.row(f"{label}: bare POST", **bare)
                report.row(f"{label}: raw-driver upsert + commit", **raw,
                           ratio=round(raw["req_s"] / bare["req_s"], 3) if bare["req_s"] else 0)
                # CPU per request, workers + database: the raw route's over the acquisition's
                cpu_vs_raw = ({"cpu_vs_raw": round(raw["cpu_us"] / acquire["cpu_us"], 3)}
                              if acquire.get("cpu_us") and raw.get("cpu_us") else {})
                report.row(f"{label}: lock acquire", **acquire,
                           ratio=round(acquire["req_s"] / bare["req_s"], 3) if bare["req_s"] else 0,
                           vs_raw=round(acquire["req_s"] / raw["req_s"], 3) if raw["req_s"] else 0,
                           **cpu_vs_raw)


def run_contention(report: Report, settings: Settings) -> None:
    report.section("Contention: 32 clients on one hot resource vs 32 on distinct resources "
                   "(lock cycles, gunicorn gthread)")
    with backends(settings) as chosen:
        for backend, uri, table in chosen:
            with gunicorn(uri, table, "gthread") as (url, _process):
                run_load(url, "distinct", 4, 1)
                results = _alternate(url, ("distinct", "hot"), 32, settings.load_seconds)
            distinct, hot = _summary(results["distinct"]), _summary(results["hot"])
            granted = {m: sum(r.granted for r in results[m]) for m in results}
            conflicts = sum(r.s409 for r in results["hot"])
            other = sum(r.other for r in results["hot"]) + sum(r.other for r in results["distinct"])
            report.row(f"{backend}: distinct resources", **distinct, grants=granted["distinct"])
            report.row(f"{backend}: one hot resource", **hot, grants=granted["hot"],
                       conflicts_409=conflicts,
                       ratio=round(hot["req_s"] / distinct["req_s"], 3) if distinct["req_s"] else 0)
            if other:
                report.note(f"{backend}: {other} answers that were neither 2xx, 409 nor 5xx")
