"""In-process figures through the WSGI test client: the lock cycle and the guard overhead."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from flask import Flask

from .apps import locking_app, plain_app, raw_sqlite_app
from .common import Report, Settings, compare, warn
from .peers import wsgidav_cycle_ops

USER = {"X-User": "alice"}

#: Issue 13's targets: the product's throughput over its baseline's, per comparison.
TARGETS = {"cycle": 0.70, "unguarded": 0.98, "guarded-unlocked": 0.85, "guarded-locked": 0.80}


def _expect(response: Any, status: int) -> Any:
    if response.status_code != status:
        raise RuntimeError(
            f"{response.request.method} {response.request.path}: expected {status}, got "
            f"{response.status_code} {response.get_data(as_text=True)[:200]}"
        )
    return response


@contextmanager
def sqlite_locking_app(**config: Any) -> Iterator[tuple[Flask, str]]:
    """A locking app on a fresh temporary SQLite file (removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix="flbench-") as directory:
        path = os.path.join(directory, "locks.sqlite3")
        app = locking_app(f"sqlite:///{path}", **config)
        try:
            yield app, directory
        finally:
            app.extensions["locking"].close()


@contextmanager
def statement_counter(app: Flask) -> Iterator[list[str]]:
    """Every SQL statement the lock store sends while the block runs."""
    with app.app_context():
        engine = app.extensions["locking"].engine.store.engine
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement.split(None, 1)[0].upper())

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


def lock_cycle_ops(app: Flask, path: str = "/docs/1") -> Callable[[], None]:
    """One content ``@lock`` cycle: POST (acquire) then DELETE with the token."""
    client = app.test_client()
    url = path + "/@lock"

    def cycle() -> None:
        token = client.post(url, headers=USER).headers["Lock-Token"]
        client.delete(url, headers={**USER, "Lock-Token": token})

    # correctness once, outside the timed loop
    response = _expect(client.post(url, headers=USER), 200)
    _expect(client.delete(url, headers={**USER, "Lock-Token": response.headers["Lock-Token"]}), 200)
    return cycle


def bare_cycle_ops(app: Flask) -> Callable[[], None]:
    client = app.test_client()
    _expect(client.post("/bare/1/lock", headers=USER), 200)

    def cycle() -> None:
        client.post("/bare/1/lock", headers=USER)
        client.delete("/bare/1/lock", headers={**USER, "Lock-Token": "x" * 43})

    return cycle


def raw_cycle_ops(app: Flask) -> Callable[[], None]:
    client = app.test_client()
    token = _expect(client.post("/raw/1/@lock", headers=USER), 200).headers["Lock-Token"]
    _expect(client.delete("/raw/1/@lock", headers={**USER, "Lock-Token": token}), 200)

    def cycle() -> None:
        token = client.post("/raw/1/@lock", headers=USER).headers["Lock-Token"]
        client.delete("/raw/1/@lock", headers={**USER, "Lock-Token": token})

    return cycle


@contextmanager
def lock_cycle_variants() -> Iterator[tuple[dict[str, Callable[[], None]], Flask, str]]:
    """The lock cycle's variants (label -> one cycle), the events-on locking app and the
    temporary directory their SQLite files live in (removed afterwards)."""
    with sqlite_locking_app() as (app, directory), sqlite_locking_app(
        LOCKING_EVENTS_ENABLED=False
    ) as (quiet, _quiet_directory):
        raw = raw_sqlite_app(os.path.join(directory, "raw.sqlite3"))
        variants = {
            "bare Flask route pair": bare_cycle_ops(plain_app()),
            "raw SQLite upsert route pair": raw_cycle_ops(raw),
            "flask-locking @lock cycle": lock_cycle_ops(app),
            # the share of the event log (LOCKING_EVENTS_ENABLED, on by default)
            "flask-locking @lock cycle, events off": lock_cycle_ops(quiet),
        }
        yield variants, app, directory


def run_lock_cycle(report: Report, settings: Settings) -> None:
    report.section("Lock cycle in-process (content @lock POST + DELETE, SQLite, test client)")
    with lock_cycle_variants() as (variants, app, directory):
        peer = wsgidav_cycle_ops(directory)
        if peer is None:
            warn("wsgidav is not installed (pip install wsgidav, or the bench extra): "
                 "its LOCK/UNLOCK row is skipped")
        else:
            variants["wsgidav LOCK + UNLOCK (in-memory locks)"] = peer
        timings = compare(variants, settings)
        report.timings(timings, "bare Flask route pair")
        cycle = timings["flask-locking @lock cycle"].median
        ratio = timings["bare Flask route pair"].median / cycle
        limit = timings["raw SQLite upsert route pair"].median / cycle
        quiet_ratio = (timings["bare Flask route pair"].median
                       / timings["flask-locking @lock cycle, events off"].median)
        report.note(f"lock cycle = {ratio:.3f}x the bare Flask pair "
                    f"(target >= {TARGETS['cycle']:.2f}x); "
                    f"{limit:.3f}x the raw SQLite upsert pair; "
                    f"{quiet_ratio:.3f}x with LOCKING_EVENTS_ENABLED = False")
        with statement_counter(app) as seen:
            lock_cycle_ops(app, "/docs/counted")  # one checked cycle (two requests)
        report.note(f"SQL statements per cycle (POST + DELETE): {len(seen)} {seen}")


GuardPair = tuple[str, Callable[[], Any], Callable[[], Any], str]


@contextmanager
def guard_pairs() -> Iterator[tuple[list[GuardPair], Flask, dict[str, str]]]:
    """The guard's comparisons: (title, the request on the plain app, the same request on the
    locking app, kind), the locking app and the header carrying the held lock's token."""
    plain = plain_app().test_client()
    with sqlite_locking_app() as (app, _directory):
        guarded = app.test_client()
        # a held lock on /docs/locked, and its token
        token = _expect(guarded.post("/docs/locked/@lock", headers=USER), 200).headers["Lock-Token"]
        right = {"Lock-Token": token}
        _expect(guarded.get("/docs/1"), 200)
        _expect(guarded.patch("/docs/1"), 200)
        _expect(guarded.patch("/docs/locked"), 403)
        _expect(guarded.patch("/docs/locked", headers=right), 200)

        pairs: list[GuardPair] = [
            ("GET (not guarded)", lambda: plain.get("/docs/1"), lambda: guarded.get("/docs/1"),
             "unguarded"),
            ("PATCH, unlocked resource", lambda: plain.patch("/docs/1"),
             lambda: guarded.patch("/docs/1"), "guarded-unlocked"),
            ("PATCH, locked resource + right token", lambda: plain.patch("/docs/locked",
             headers=right), lambda: guarded.patch("/docs/locked", headers=right),
             "guarded-locked"),
        ]
        yield pairs, app, right


def run_guard(report: Report, settings: Settings) -> None:
    report.section("Guard overhead in-process (same host routes, with vs without the extension)")
    with guard_pairs() as (pairs, app, right):
        guarded = app.test_client()
        for title, without, with_, kind in pairs:
            timings = compare({f"{title} without": without, f"{title} with": with_}, settings)
            report.timings(timings, f"{title} without")
            ratio = timings[f"{title} without"].median / timings[f"{title} with"].median
            report.note(f"{title}: {ratio:.3f}x (target >= {TARGETS[kind]:.2f}x)")
        counted: list[tuple[str, Callable[[], Any]]] = [
            ("GET", lambda: guarded.get("/docs/1")),
            ("PATCH unlocked", lambda: guarded.patch("/docs/1")),
            ("PATCH locked + token", lambda: guarded.patch("/docs/locked", headers=right)),
        ]
        for label, call in counted:
            with statement_counter(app) as seen:
                call()
            report.note(f"SQL statements for a {label}: {len(seen)} {seen}")
