"""``python -m benchmarks.store [--no-at-once] [--count N] [URL ...]``: the store's own cost.

CPU µs (and wall µs) per operation in this process (2 000 SQLite / 300 server iterations
after 200 warm-up), and on PostgreSQL and MariaDB the server's CPU µs spent on this
process's connections (:class:`~benchmarks.cpu.ServingThreadsMeter`: readable while other
programs use the same server): one acquire + live read + release of ``/docs/1`` (two
ancestors) on the store; the same cycle through a
:class:`~flask_locking.engine.LockEngine` recording its events (``LOCKING_EVENTS_ENABLED``)
and without; and one event append. Without a URL, a
temporary SQLite file. ``--no-at-once`` turns the one-statement / one-round-trip acquisition
off, so its share shows. Tables get a random name; a server's are dropped at the end.
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable

import sqlalchemy as sa

from flask_locking.engine import LockEngine
from flask_locking.store import create_store, engine_for_uri
from flask_locking.store.base import AcquireRequest, LockRow
from flask_locking.store.events import NewEvent

from .cpu import ServingThreadsMeter
from .server import drop_tables

REQUEST = AcquireRequest.of(LockRow(
    "/docs/1", "", "u:alice", "alice", None, None, True, False, 600_000, 0, 0
))
EVENT = NewEvent("acquired", REQUEST.row._replace(version=1, locked_at_ms=1), None, None)


def measure(
    url: str, at_once: bool, count: int | None = None
) -> dict[str, tuple[float, float, float | None]]:
    """CPU, wall and database-server CPU µs (None where not measured: SQLite, or no
    ``/proc``) per operation of each kind on the store at ``url``."""
    table = "bench_store_" + secrets.token_hex(4)
    store = create_store(engine_for_uri(url), table_name=table)
    admin_engine = meter = None
    backend = store.engine.dialect.name
    if backend in ("postgresql", "mysql", "mariadb") and os.path.isdir("/proc/self/fd"):
        admin_engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        admin = admin_engine.raw_connection()
        meter = ServingThreadsMeter("postgresql" if backend == "postgresql" else "mariadb",
                                    admin)
    try:
        store.create_schema()
        log = store.event_log()
        log.create_schema()
        if not at_once:
            store.acquires_at_once = False  # type: ignore[misc]

        def cycle() -> None:
            request = REQUEST._replace(row=REQUEST.row._replace(secret=secrets.token_hex(32)))
            row = store.acquire(request).row
            store.live(REQUEST.resource)
            store.release(row)

        def engine_cycle(engine: LockEngine) -> Callable[[], object]:
            def run() -> None:
                lock = engine.acquire("/docs/2", "alice")
                engine.release("/docs/2", token=lock.token)
            return run

        with_events = LockEngine(store, secret_key="bench", events=log)
        without = LockEngine(store, secret_key="bench")
        ops: dict[str, Callable[[], object]] = {
            "acquire + live + release": cycle,
            "engine cycle, events": engine_cycle(with_events),
            "engine cycle, no events": engine_cycle(without),
            "event append": lambda: log.append(EVENT),
        }
        if count is None:
            count = 2000 if url.startswith("sqlite") else 300
        figures = {}
        for name, op in ops.items():
            for _ in range(min(count, 200)):
                op()
            served = meter is not None and meter.resolve() > 0
            if meter is not None:
                meter.admin.rollback()  # type: ignore[attr-defined]  # (a fresh stats snapshot next time)
            server = meter.read() if served and meter else 0.0
            started, wall = time.process_time(), time.perf_counter()
            for _ in range(count):
                op()
            figures[name] = (
                (time.process_time() - started) / count * 1e6,
                (time.perf_counter() - wall) / count * 1e6,
                (meter.read() - server) / count * 1e6 if served and meter else None,
            )
        return figures
    finally:
        if meter is not None:
            meter.admin.close()  # type: ignore[attr-defined]
        if admin_engine is not None:
            admin_engine.dispose()
        store.dispose()
        if not url.startswith("sqlite"):
            drop_tables(url, [table])


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    at_once = "--no-at-once" not in args
    count = None
    if "--count" in args:  # (the smoke test's tiny run)
        at = args.index("--count")
        count = int(args[at + 1])
        del args[at:at + 2]
    urls = [a for a in args if not a.startswith("--")]
    with tempfile.TemporaryDirectory(prefix="flbench-store-") as directory:
        for url in urls or [f"sqlite:///{os.path.join(directory, 'store.sqlite3')}"]:
            for name, (cpu, wall, server) in measure(url, at_once, count).items():
                served = "" if server is None else f" {server:8.1f} µs server CPU"
                print(f"{url.split(':', 1)[0]:<20} {name:<26} {cpu:8.1f} µs CPU "
                      f"{wall:8.1f} µs wall{served}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
