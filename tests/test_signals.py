"""Blinker signals: sender is the app, payload the lock with its token withheld."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from blinker import Signal
from flask import Flask

from flask_locking import Lock
from flask_locking.signals import (
    lock_acquired,
    lock_conflict,
    lock_expired,
    lock_refreshed,
    lock_released,
    lock_stolen,
    write_refused,
)
from tests.conftest import AppFactory


@contextmanager
def recording(signal: Signal, app: Flask) -> Iterator[list[tuple[Any, dict[str, Any]]]]:
    events: list[tuple[Any, dict[str, Any]]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        events.append((sender, kwargs))

    with signal.connected_to(receiver, sender=app):
        yield events


def only_lock(events: list[tuple[Any, dict[str, Any]]], app: Flask) -> Lock:
    assert len(events) == 1, events
    sender, payload = events[0]
    assert sender is app
    lock = payload["lock"]
    assert isinstance(lock, Lock)
    assert lock.token is None
    return lock


def test_acquired_and_refreshed(app: Flask) -> None:
    client = app.test_client()
    with recording(lock_acquired, app) as acquired, recording(lock_refreshed, app) as refreshed:
        response = client.post("/docs/1/@lock", headers={"X-User": "alice"})
        assert response.status_code == 200
        lock = only_lock(acquired, app)
        assert lock.resource == "/docs/1" and lock.owner is not None and lock.owner.id == "alice"
        assert lock.version == response.json["version"]
        assert refreshed == []

        # the owner locking again refreshes; so does PATCH @lock
        assert client.post("/docs/1/@lock", headers={"X-User": "alice"}).status_code == 200
        assert client.patch("/docs/1/@lock", headers={"X-User": "alice"}).status_code == 200
    assert len(acquired) == 1
    assert len(refreshed) == 2
    for sender, payload in refreshed:
        assert sender is app and payload["lock"].token is None
        assert payload["lock"].resource == "/docs/1"


def test_released_and_stolen(app: Flask) -> None:
    client = app.test_client()
    client.post("/docs/1/@lock", headers={"X-User": "alice"})
    client.post("/docs/2/@lock", headers={"X-User": "alice"})
    with recording(lock_released, app) as released, recording(lock_stolen, app) as stolen:
        assert client.delete("/docs/1/@lock", headers={"X-User": "alice"}).status_code == 200
        assert only_lock(released, app).resource == "/docs/1"
        assert stolen == []
        response = client.delete("/docs/2/@lock", json={"force": True}, headers={"X-User": "bob"})
        assert response.status_code == 200
        lock = only_lock(stolen, app)
        assert lock.resource == "/docs/2" and lock.owner is not None and lock.owner.id == "alice"
        assert len(released) == 1  # a steal is not also a release
        # releasing nothing sends nothing
        client.delete("/docs/3/@lock", headers={"X-User": "alice"})
    assert len(released) == 1 and len(stolen) == 1


def test_conflict(app: Flask) -> None:
    client = app.test_client()
    client.post("/docs/1/@lock", headers={"X-User": "alice"})
    with recording(lock_conflict, app) as conflicts, recording(lock_acquired, app) as acquired:
        assert client.post("/docs/1/@lock", headers={"X-User": "bob"}).status_code == 409
    lock = only_lock(conflicts, app)
    assert lock.owner is not None and lock.owner.id == "alice"
    assert acquired == []


def test_write_refused(app: Flask) -> None:
    client = app.test_client()
    token = client.post("/docs/1/@lock", headers={"X-User": "alice"}).json["token"]
    with recording(write_refused, app) as refused:
        assert client.patch("/docs/1", json={}).status_code == 403
        assert client.patch("/docs/1", json={}, headers={"Lock-Token": "nope"}).status_code == 412
        assert client.patch("/docs/9", json={}, headers={"Lock-Token": "nope"}).status_code == 412
        assert client.patch("/docs/1", json={}, headers={"Lock-Token": token}).status_code == 200
        assert client.get("/docs/1").status_code == 200
    assert [(payload["reason"], payload["path"]) for _, payload in refused] == [
        ("locked", "/docs/1"),
        ("stale", "/docs/1"),
        ("stale", "/docs/9"),
    ]
    assert all(sender is app for sender, _ in refused)
    assert refused[0][1]["lock"].token is None and refused[0][1]["lock"].resource == "/docs/1"
    assert refused[1][1]["lock"].token is None
    assert refused[2][1]["lock"] is None


def test_python_api_sends_too(app: Flask) -> None:
    locking = app.extensions["locking"].extension
    with (
        recording(lock_acquired, app) as acquired,
        recording(lock_released, app) as released,
        app.app_context(),
    ):
        lock = locking.acquire("/docs/1", "alice")
        locking.release("/docs/1", token=lock.token)
    assert only_lock(acquired, app).resource == "/docs/1"
    assert only_lock(released, app).resource == "/docs/1"


def test_signals_are_per_app(make_app: AppFactory) -> None:
    first, second = make_app(), make_app()
    with recording(lock_acquired, first) as events:
        second.test_client().post("/docs/1/@lock")
        assert events == []
        first.test_client().post("/docs/1/@lock")
    assert only_lock(events, first).resource == "/docs/1"


def test_expired_sent_by_purge(make_app: AppFactory, database_url: str) -> None:
    app = make_app(database_url=database_url)
    locking = app.extensions["locking"].extension
    with app.app_context():
        locking.acquire("/docs/short", "alice", timeout=0.05)
        locking.acquire("/docs/released", "alice", timeout=600)  # released before it can expire
        locking.release("/docs/released", owner="alice")
        locking.acquire("/docs/long", "bob", timeout=600)
        # expires, then is taken again: the new grant is live, nothing to report
        locking.acquire("/docs/again", "carol", timeout=0.05)
    time.sleep(0.2)
    with app.app_context():
        again = locking.acquire("/docs/again", "dave", timeout=600)
        with recording(lock_expired, app) as expired:
            assert locking.purge_expired() == 1
            assert locking.purge_expired() == 0  # each expiry is reported once
    lock = only_lock(expired, app)
    assert lock.resource == "/docs/short"
    assert lock.owner is not None and lock.owner.id == "alice"
    assert lock.expires_at <= time.time() + 1
    with app.app_context():
        assert {held.resource for held in locking.locks()} == {"/docs/long", "/docs/again"}
        assert locking.get("/docs/again").version == again.version


def test_purge_without_listeners_counts_the_same(make_app: AppFactory) -> None:
    app = make_app()
    locking = app.extensions["locking"].extension
    assert not lock_expired.receivers
    with app.app_context():
        for n in range(3):
            locking.acquire(f"/docs/{n}", "alice", timeout=0.05)
    time.sleep(0.2)
    with app.app_context():
        assert locking.purge_expired() == 3
        assert locking.purge_expired() == 0


def test_prometheus_counters(make_app: AppFactory) -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    from flask_locking.contrib.prometheus import LockingMetrics

    registry = prometheus_client.CollectorRegistry()
    app, other = make_app(), make_app()
    LockingMetrics(app, registry=registry)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("flask_locking_events_total", event="acquired") == 0
    assert value("flask_locking_writes_refused_total", reason="stale") == 0
    client = app.test_client()
    token = client.post("/docs/1/@lock", headers={"X-User": "alice"}).json["token"]
    client.post("/docs/1/@lock", headers={"X-User": "alice"})
    client.post("/docs/1/@lock", headers={"X-User": "bob"})
    client.patch("/docs/1", json={})
    client.patch("/docs/1", json={}, headers={"Lock-Token": "wrong"})
    client.patch("/docs/1", json={}, headers={"Lock-Token": token})
    client.delete("/docs/1/@lock", headers={"X-User": "alice"})
    client.post("/docs/2/@lock", headers={"X-User": "alice"})
    client.delete("/docs/2/@lock", json={"force": True}, headers={"X-User": "bob"})
    other.test_client().post("/docs/3/@lock")  # another app: not counted

    assert value("flask_locking_events_total", event="acquired") == 2
    assert value("flask_locking_events_total", event="refreshed") == 1
    assert value("flask_locking_events_total", event="conflict") == 1
    assert value("flask_locking_events_total", event="released") == 1
    assert value("flask_locking_events_total", event="stolen") == 1
    assert value("flask_locking_writes_refused_total", reason="locked") == 1
    assert value("flask_locking_writes_refused_total", reason="stale") == 1

    locking = app.extensions["locking"].extension
    with app.app_context():
        locking.acquire("/docs/9", "alice", timeout=0.05)
    time.sleep(0.2)
    with app.app_context():
        assert locking.purge_expired() == 1
    assert value("flask_locking_events_total", event="expired") == 1
