"""Contenders that run in separate OS processes (``multiprocessing`` with ``spawn``).

Every function here is a process target: it opens its own store (or Flask app) on the
database URL it is given, runs a few threads, and puts plain tuples on a queue. Nothing is
shared with the parent but the barrier and the queue, as with app servers on other hosts.
"""

from __future__ import annotations

import random
import threading
import time
import traceback
from typing import Any

from flask_locking.store import HeldElsewhere, SQLStore, store_from_uri
from flask_locking.testing import make_request, tree_key
from flask_locking.tokens import new_secret

__all__ = ["make_request", "open_store"]


def open_store(url: str, table: str, timeout: float = 5.0, **options: Any) -> SQLStore:
    """A store on ``url`` with its own engine, as a fresh process would build it."""
    store = store_from_uri(url, table_name=table, timeout=timeout, engine_options=options)
    assert isinstance(store, SQLStore)
    return store


def _threads(count: int, target: Any) -> None:
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _report(queue: Any, name: str, body: Any) -> None:
    try:
        body()
    except BaseException:  # noqa: BLE001 - the parent must see every failure
        queue.put(("crash", name, traceback.format_exc()))


# -- thundering herd -------------------------------------------------------------------


def herd_store(
    url: str, table: str, proc: int, threads: int, rounds: int, barrier: Any, queue: Any
) -> None:
    """Each round: every contender waits at the barrier, then all try to lock one resource.

    Even rounds race for a fresh key (the INSERT path); odd rounds for ``/herd/shared``,
    which the previous winner released (the UPDATE-of-a-tombstone path).
    """

    def body() -> None:
        store = open_store(url, table)
        results: list[tuple[Any, ...]] = []
        guard = threading.Lock()

        def contender(i: int) -> None:
            owner = f"p{proc}t{i}"
            for r in range(rounds):
                resource = f"/herd/fresh-{r}" if r % 2 == 0 else "/herd/shared"
                barrier.wait(timeout=60)
                try:
                    result = store.acquire(make_request(resource, owner, 60_000))
                except HeldElsewhere as held:
                    outcome: tuple[Any, ...] = ("conflict", r, owner, held.row is not None)
                except Exception as error:  # noqa: BLE001
                    outcome = ("error", r, owner, repr(error))
                else:
                    outcome = ("win", r, owner, result.row.version, result.granted)
                barrier.wait(timeout=60)  # everyone has tried before the winner lets go
                if outcome[0] == "win" and r % 2 == 1 and not store.release(result.row):
                    outcome = ("error", r, owner, "winner could not release")
                with guard:
                    results.append(outcome)

        _threads(threads, contender)
        store.dispose()
        queue.put(("results", proc, results))

    _report(queue, f"herd_store {proc}", body)


def _herd_app(name: str, url: str, table: str) -> tuple[Any, Any]:
    """A Flask app named ``name`` with :class:`Locking` on ``url``'s ``table``, and the
    extension (built in the racing process)."""
    from flask import Flask

    from flask_locking import Locking

    app = Flask(name)
    app.config.update(SECRET_KEY="herd", LOCKING_DATABASE_URI=url, LOCKING_TABLE_NAME=table)
    return app, Locking(app)


def herd_app(
    url: str, table: str, proc: int, threads: int, rounds: int, barrier: Any, queue: Any
) -> None:
    """The same herd through a Flask app's Python API (``Locking.acquire``), so the whole
    path (extension, state, engine, store) is raced."""

    def body() -> None:
        from flask_locking import LockConflict

        app, locking = _herd_app(f"herd{proc}", url, table)
        results: list[tuple[Any, ...]] = []
        guard = threading.Lock()

        def contender(i: int) -> None:
            owner = f"p{proc}t{i}"
            for r in range(rounds):
                resource = f"/herd/app-{r}" if r % 2 == 0 else "/herd/app-shared"
                barrier.wait(timeout=60)
                with app.app_context():
                    try:
                        lock = locking.acquire(resource, owner, timeout=60)
                    except LockConflict as conflict:
                        outcome: tuple[Any, ...] = ("conflict", r, owner, conflict.lock is not None)
                    except Exception as error:  # noqa: BLE001
                        outcome = ("error", r, owner, repr(error))
                    else:
                        outcome = ("win", r, owner, lock.version, lock.token is not None)
                barrier.wait(timeout=60)  # everyone has tried before the winner lets go
                if outcome[0] == "win" and r % 2 == 1:
                    with app.app_context():
                        if locking.release(resource, token=lock.token) is None:
                            outcome = ("error", r, owner, "winner could not release")
                with guard:
                    results.append(outcome)

        _threads(threads, contender)
        app.extensions["locking"].close()
        queue.put(("results", proc, results))

    _report(queue, f"herd_app {proc}", body)


# -- expiry hand-off ---------------------------------------------------------------------


def spin_store(
    url: str,
    table: str,
    proc: int,
    threads: int,
    resource: str,
    lease_ms: int,
    seconds: float,
    start: Any,
    queue: Any,
) -> None:
    """Contenders spin on one resource with a short lease; every grant is recorded as
    ``(version, locked_at_ms, expires_ms, owner)`` from the database's own row."""

    def body() -> None:
        store = open_store(url, table)
        grants: list[tuple[Any, ...]] = []
        errors: list[str] = []
        attempts = [0]
        guard = threading.Lock()
        start.wait(timeout=60)
        deadline = time.monotonic() + seconds

        def contender(i: int) -> None:
            owner = f"p{proc}t{i}"
            while time.monotonic() < deadline:
                with guard:
                    attempts[0] += 1
                try:
                    result = store.acquire(make_request(resource, owner, lease_ms))
                except HeldElsewhere:
                    time.sleep(random.uniform(0.001, 0.004))
                    continue
                except Exception as error:  # noqa: BLE001
                    with guard:
                        errors.append(repr(error))
                    continue
                row = result.row
                with guard:
                    grants.append(
                        (row.version, row.locked_at_ms, row.expires_ms, owner, result.granted)
                    )
                # Let the lease run out rather than refresh our own grant.
                time.sleep(lease_ms / 1000 + 0.002)

        _threads(threads, contender)
        store.dispose()
        queue.put(("grants", proc, grants, errors, attempts[0]))

    _report(queue, f"spin_store {proc}", body)


def naive_acquire(
    store: SQLStore, resource: str, owner: str, lease_ms: int
) -> tuple[int, int, int] | None:
    """A deliberately WRONG acquisition: read the row, decide in Python, then write.

    Two contenders can both read "expired" and both write; nothing makes the decision and
    the write one atomic step. Used only to prove the overlap checker can fail.
    """
    import sqlalchemy as sa

    t = store.table
    with store.engine.connect() as conn:
        now = int(conn.execute(store._select_now).scalar_one())
        row = conn.execute(sa.select(t).where(t.c.resource == resource)).first()
        conn.commit()
        if row is not None and row.locked_at_ms + row.timeout_ms > now:
            return None
        time.sleep(0.002)  # the gap every read-then-write has, made wide enough to see
        version = 1 if row is None else row.version + 1
        if row is None:
            stmt: Any = sa.insert(t).values(
                resource=resource,
                secret=new_secret(),
                owner_key="u:" + owner,
                owner_id=owner,
                stealable=True,
                infinite=False,
                timeout_ms=lease_ms,
                locked_at_ms=now,
                version=version,
            )
        else:
            stmt = (
                sa.update(t)
                .where(t.c.resource == resource)
                .values(
                    secret=new_secret(),
                    owner_key="u:" + owner,
                    owner_id=owner,
                    timeout_ms=lease_ms,
                    locked_at_ms=now,
                    version=version,
                )
            )
        try:
            conn.execute(stmt)
            conn.commit()
        except sa.exc.IntegrityError:
            conn.rollback()
            return None
    return version, now, now + lease_ms


def spin_naive(
    url: str,
    table: str,
    proc: int,
    threads: int,
    resource: str,
    lease_ms: int,
    seconds: float,
    start: Any,
    queue: Any,
) -> None:
    """:func:`spin_store` with :func:`naive_acquire` instead of the store's acquisition."""

    def body() -> None:
        store = open_store(url, table)
        grants: list[tuple[Any, ...]] = []
        errors: list[str] = []
        guard = threading.Lock()
        start.wait(timeout=60)
        deadline = time.monotonic() + seconds

        def contender(i: int) -> None:
            owner = f"p{proc}t{i}"
            while time.monotonic() < deadline:
                try:
                    grant = naive_acquire(store, resource, owner, lease_ms)
                except Exception as error:  # noqa: BLE001
                    with guard:
                        errors.append(repr(error))
                    continue
                if grant is None:
                    time.sleep(random.uniform(0.001, 0.004))
                    continue
                with guard:
                    grants.append((*grant, owner, True))
                time.sleep(lease_ms / 1000 + 0.002)

        _threads(threads, contender)
        store.dispose()
        queue.put(("grants", proc, grants, errors, 0))

    _report(queue, f"spin_naive {proc}", body)


def spin_app_skewed(
    url: str,
    table: str,
    proc: int,
    threads: int,
    resource: str,
    lease: float,
    seconds: float,
    skew: float,
    start: Any,
    queue: Any,
) -> None:
    """Contenders in a Flask app whose Python clock is off by ``skew`` seconds."""

    def body() -> None:
        real_time = time.time
        time.time = lambda: real_time() + skew  # type: ignore[assignment]
        from flask import Flask

        from flask_locking import LockConflict, Locking

        app = Flask(f"skew{proc}")
        app.config.update(SECRET_KEY="skew", LOCKING_DATABASE_URI=url, LOCKING_TABLE_NAME=table)
        locking = Locking(app)
        grants: list[tuple[Any, ...]] = []
        errors: list[str] = []
        guard = threading.Lock()
        with app.app_context():
            locking.engine.store.create_schema()
        start.wait(timeout=60)
        deadline = time.monotonic() + seconds

        def contender(i: int) -> None:
            owner = f"p{proc}t{i}"
            with app.app_context():
                while time.monotonic() < deadline:
                    try:
                        lock = locking.acquire(resource, owner, timeout=lease)
                    except LockConflict:
                        time.sleep(random.uniform(0.001, 0.004))
                        continue
                    except Exception as error:  # noqa: BLE001
                        with guard:
                            errors.append(repr(error))
                        continue
                    with guard:
                        grants.append(
                            (
                                lock.version,
                                round(lock.time * 1000),
                                round(lock.expires_at * 1000),
                                owner,
                                time.time(),
                            )
                        )
                    time.sleep(lease + 0.002)

        _threads(threads, contender)
        app.extensions["locking"].close()
        queue.put(("grants", proc, grants, errors, skew))

    _report(queue, f"spin_app_skewed {proc}", body)


# -- schema and shared secret -------------------------------------------------------------


def create_and_share(url: str, table: str, proc: int, barrier: Any, queue: Any) -> None:
    """Start like a fresh app server: create the schema, then agree on the HMAC key."""

    def body() -> None:
        store = open_store(url, table)
        barrier.wait(timeout=60)
        store.create_schema()
        barrier.wait(timeout=60)
        key = store.shared_secret(f"candidate-of-{proc}")
        result = store.acquire(make_request(f"/schema/{proc}", f"p{proc}", 60_000))
        store.dispose()
        queue.put(("shared", proc, key, result.row.version))

    _report(queue, f"create_and_share {proc}", body)


# -- hierarchy herd ------------------------------------------------------------------------


def tree_keys(r: int, proc: int, i: int) -> tuple[str, bool]:
    """What contender ``i`` of process ``proc`` asks for in round ``r`` (leaves per process)."""
    return tree_key(r, i, str(proc))


def herd_tree(
    url: str, table: str, proc: int, threads: int, rounds: int, barrier: Any, queue: Any
) -> None:
    """Each round, contenders race for overlapping keys of one tree at once."""

    def body() -> None:
        store = open_store(url, table)
        results: list[tuple[Any, ...]] = []
        guard = threading.Lock()

        def contender(i: int) -> None:
            owner = f"p{proc}t{i}"
            for r in range(rounds):
                resource, infinite = tree_keys(r, proc, i)
                barrier.wait(timeout=60)
                try:
                    store.acquire(make_request(resource, owner, 60_000, infinite=infinite))
                except HeldElsewhere:
                    outcome: tuple[Any, ...] = ("conflict", r, resource, infinite)
                except Exception as error:  # noqa: BLE001
                    outcome = ("error", r, resource, repr(error))
                else:
                    outcome = ("win", r, resource, infinite)
                with guard:
                    results.append(outcome)

        _threads(threads, contender)
        store.dispose()
        queue.put(("results", proc, results))

    _report(queue, f"herd_tree {proc}", body)


# -- a herd over the contenders' own expired locks ------------------------------------------


def herd_over_expired(
    url: str, table: str, proc: int, threads: int, rounds: int, barrier: Any, queue: Any
) -> None:
    """Each round, every contender first takes a lock of its own on a leaf and lets it run
    out; then all race, through a Flask app's Python API (events recorded), for the round's
    root at infinite depth and for their leaf again, half of them in each order. A leaf
    asked for after the root was won loses to it: its owner's expired row must stay as it
    was (not stamped live again, no event)."""

    def body() -> None:
        from flask_locking import LockConflict

        app, locking = _herd_app(f"expired{proc}", url, table)
        results: list[tuple[Any, ...]] = []
        guard = threading.Lock()

        def contender(i: int) -> None:
            owner = f"p{proc}t{i}"
            for r in range(rounds):
                leaf, root = f"/x{r}/{owner}", f"/x{r}"
                with app.app_context():
                    locking.acquire(leaf, owner, timeout=0.02)
                with guard:
                    results.append(("pre", r, leaf, False))
                time.sleep(0.06)
                asks = [(root, True), (leaf, False)]
                if i % 2:
                    asks.reverse()
                barrier.wait(timeout=60)
                for resource, infinite in asks:
                    with app.app_context():
                        try:
                            locking.acquire(resource, owner, timeout=60,
                                            depth="infinity" if infinite else 0)
                        except LockConflict:
                            outcome: tuple[Any, ...] = ("conflict", r, resource, infinite)
                        except Exception as error:  # noqa: BLE001
                            outcome = ("error", r, resource, repr(error))
                        else:
                            outcome = ("win", r, resource, infinite)
                    with guard:
                        results.append(outcome)
                barrier.wait(timeout=60)

        _threads(threads, contender)
        app.extensions["locking"].close()
        queue.put(("results", proc, results))

    _report(queue, f"herd_over_expired {proc}", body)
