"""Lock events as Server-Sent Events, in one process: shapes, tokens, routing, replay,
visibility, limits, expiry. The cross-process promises are in test_events_processes.py."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import pytest
from flask import Flask, jsonify, request
from helpers.sse import TestStream
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_locking import Locking, LockingError
from flask_locking.signals import BY_EVENT
from tests.conftest import AppFactory

FAST = {
    "LOCKING_EVENTS_HEARTBEAT": 0.1,
    "LOCKING_EVENTS_POLL_INTERVAL": 0.05,
    "LOCKING_EVENTS_EXPIRY_INTERVAL": 0.1,
}
ALICE, BOB = {"X-User": "alice"}, {"X-User": "bob"}


def names(events: list[Any]) -> list[str]:
    return [e.event for e in events]


@pytest.fixture
def fast_app(make_app: AppFactory) -> Flask:
    return make_app(**FAST)


def test_every_change_is_an_event_without_a_token(make_app: AppFactory, database_url: str) -> None:
    app = make_app(database_url=database_url, **FAST)
    client = app.test_client()
    stream = TestStream(client, "/docs/a/@lock/events", headers=BOB)
    assert stream.status == 200
    assert stream.response.mimetype == "text/event-stream"
    token = client.post("/docs/a/@lock", headers=ALICE).json["token"]
    assert client.patch("/docs/a/@lock", headers={**ALICE, "Lock-Token": token}).status_code == 200
    assert client.delete("/docs/a/@lock", headers=BOB, json={"force": True}).status_code == 200
    token2 = client.post("/docs/a/@lock", headers=ALICE, json={"timeout": 60}).json["token"]
    assert client.delete("/docs/a/@lock", headers=ALICE).status_code == 200
    client.post("/docs/other/@lock", headers=ALICE)  # another resource: not on this stream
    events = stream.read(5)
    stream.close()
    assert names(events) == ["acquired", "refreshed", "stolen", "acquired", "released"]
    assert [e.data["version"] for e in events] == [1, 1, 1, 2, 2]
    ids = [int(e.id) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert all(e.data["resource"] == "/docs/a" for e in events)
    assert all(e.data["lock"]["creator"] == "alice" for e in events)
    assert all("token" not in e.data["lock"] for e in events)
    assert token not in stream.raw and token2 not in stream.raw
    assert [e.data["by"] for e in events] == [
        None,
        None,
        {"id": "bob", "name": "bob"},
        None,
        {"id": "alice", "name": "alice"},
    ]
    assert events[3].data["lock"]["timeout"] == 60
    assert stream.raw.startswith("retry: 2000\n")
    assert all(isinstance(e.data["time"], float) for e in events)


def test_an_infinite_lock_above_counts(fast_app: Flask) -> None:
    client = fast_app.test_client()
    locking: Locking = fast_app.extensions["locking"].extension
    stream = TestStream(client, "/docs/a/parts/p1/@lock/events")
    with fast_app.app_context():
        locking.acquire("/docs/a", "alice", depth="infinity")
        locking.acquire("/docs/b", "alice", depth="infinity")  # not above: not on the stream
        locking.acquire("/docs/c/parts/p1", "bob")  # the same leaf elsewhere: not on it
        locking.release("/docs/a", owner="alice")
    events = stream.read(2)
    stream.close()
    assert [(e.event, e.data["resource"], e.data["lock"]["depth"]) for e in events] == [
        ("acquired", "/docs/a", "infinity"),
        ("released", "/docs/a", "infinity"),
    ]


def test_routing_and_errors_follow_lock(make_app: AppFactory) -> None:
    app = make_app(**FAST)
    client = app.test_client()
    missing = client.get("/nowhere/@lock/events")
    assert missing.status_code == 404 and missing.json["error"]["type"] == "NotFound"
    bad = client.get("/docs/a/@lock/events", headers={"Last-Event-ID": "x1"})
    assert bad.status_code == 400 and "Last-Event-ID" in bad.json["error"]["message"]
    assert client.get("/docs/a/@lock/events?last_event_id=-1").status_code == 400
    too_long = client.get("/docs/a/@lock/events?last_event_id=" + "9" * 19)
    assert too_long.status_code == 400
    assert "at most 18 digits" in too_long.json["error"]["message"]
    posted = client.post("/docs/a/@lock/events")
    assert posted.status_code == 405


def test_served_past_a_host_catch_all(tmp_path: Any, table_name: str) -> None:
    app = Flask(__name__, instance_path=str(tmp_path))
    app.config.update(SECRET_KEY="s", LOCKING_TABLE_NAME=table_name, **FAST)

    @app.route("/<path:anything>", methods=["GET", "PATCH"])
    def catch_all(anything: str) -> Any:
        return jsonify(caught=anything)

    locking = Locking(app)
    client = app.test_client()
    stream = TestStream(client, "/pages/x/@lock/events")
    assert stream.status == 200 and stream.response.mimetype == "text/event-stream"
    with app.app_context():
        locking.acquire("/pages/x", "alice")
    assert names(stream.read(1)) == ["acquired"]
    stream.close()
    app.extensions["locking"].close()


def test_a_listener_denied_view_sees_nothing(make_app: AppFactory) -> None:
    app = make_app(**FAST)
    locking: Locking = app.extensions["locking"].extension

    @locking.authorizer
    def authorize(action: str, resource: str, identity: Any) -> bool:
        if identity is not None and identity.id == "mallory":
            return action == "view" and not resource.startswith("/docs/secret")
        return action != "steal"

    client = app.test_client()
    refused = client.get("/docs/secret/@lock/events", headers={"X-User": "mallory"})
    assert refused.status_code == 403 and refused.json["error"]["type"] == "Forbidden"
    everything = TestStream(client, "/@locks/events", headers={"X-User": "mallory"})
    client.post("/docs/secret/@lock", headers=ALICE)
    client.post("/docs/public/@lock", headers=ALICE)
    client.delete("/docs/secret/@lock", headers=ALICE)
    events = everything.read(1)
    assert [(e.event, e.data["resource"]) for e in events] == [("acquired", "/docs/public")]
    assert "/docs/secret" not in everything.raw
    everything.close()


def test_the_multi_resource_stream_filters(fast_app: Flask) -> None:
    client = fast_app.test_client()
    mine = TestStream(client, "/@locks/events?prefix=/docs/x&owner=me", headers=ALICE)
    jobs = TestStream(client, "/@locks/events?dialect=jobs")
    client.post("/docs/y/@lock", headers=ALICE)  # outside the prefix
    client.post("/docs/x/parts/1/@lock", headers=BOB)  # bob's
    client.post("/docs/x/parts/2/@lock", headers=ALICE)
    client.post("/docs/x/@lock", headers=ALICE)
    client.post("/api/v1.0/companies/1/jobs/2/lock/", headers=BOB)
    got = mine.read(2)
    assert [e.data["resource"] for e in got] == ["/docs/x/parts/2", "/docs/x"]
    assert [e.data["resource"] for e in jobs.read(1)] == ["/api/v1.0/companies/1/jobs/2"]
    mine.close()
    jobs.close()
    assert client.get("/@locks/events?dialect=webdav").status_code == 400
    assert client.get("/@locks/events?prefix=/a/../b").status_code == 400


def test_reconnect_replays_what_was_missed(fast_app: Flask) -> None:
    client = fast_app.test_client()
    first = TestStream(client, "/docs/r/@lock/events")
    client.post("/docs/r/@lock", headers=ALICE)
    seen = first.read(1)
    first.close()
    # while nobody listens
    client.post("/docs/r/@lock", headers=ALICE)
    client.delete("/docs/r/@lock", headers=ALICE)
    client.post("/docs/r/@lock", headers=BOB)
    for how in (
        {"headers": {"Last-Event-ID": seen[0].id}},
        {"query_string": {"last_event_id": seen[0].id}},
    ):
        again = TestStream(client, "/docs/r/@lock/events", **how)
        replay = again.read(3)
        again.close()
        assert names(replay) == ["refreshed", "released", "acquired"]
        assert [int(e.id) for e in replay] == list(range(int(seen[0].id) + 1, int(seen[0].id) + 4))
    fresh = TestStream(client, "/docs/r/@lock/events")  # no id: only what comes next
    client.delete("/docs/r/@lock", headers=BOB)
    assert names(fresh.read(1)) == ["released"]
    fresh.close()


def test_a_replay_past_the_retention_says_so(make_app: AppFactory) -> None:
    app = make_app(LOCKING_EVENTS_RETENTION=0.05, **FAST)
    client = app.test_client()
    client.post("/docs/g/@lock", headers=ALICE)
    client.delete("/docs/g/@lock", headers=ALICE)
    time.sleep(0.2)
    client.post("/docs/g/@lock", headers=BOB)
    with app.app_context():
        assert app.extensions["locking"].engine.events.prune() == 2
    stream = TestStream(client, "/docs/g/@lock/events", headers={"Last-Event-ID": "1"})
    events = stream.read(2)
    stream.close()
    assert events[0].event == "gap"
    assert events[0].data == {"last_event_id": 1, "oldest": 3, "head": 3}
    assert (events[1].event, events[1].id) == ("acquired", "3")
    ahead = TestStream(client, "/docs/g/@lock/events", headers={"Last-Event-ID": "99"})
    assert ahead.read(1)[0].event == "gap"
    ahead.close()


def test_expiry_is_an_event_once(fast_app: Flask) -> None:
    client = fast_app.test_client()
    locking: Locking = fast_app.extensions["locking"].extension
    one = TestStream(client, "/docs/e/@lock/events")
    two = TestStream(client, "/@locks/events")
    expired: list[Any] = []
    with fast_app.app_context():
        locking.acquire("/docs/e", "alice", timeout=0.3)

    def on_expired(sender: Any, lock: Any, **extra: Any) -> None:
        expired.append(lock)

    BY_EVENT["expired"].connect(on_expired, sender=fast_app)
    try:
        first = one.read(2)
        second = two.read(2)
    finally:
        BY_EVENT["expired"].disconnect(on_expired, sender=fast_app)
    one.close()
    two.close()
    assert names(first) == ["acquired", "expired"] == names(second)
    assert first[1].id == second[1].id
    assert first[1].data["lock"]["creator"] == "alice"
    assert [lock.resource for lock in expired] == ["/docs/e"]  # the signal, once


def test_streams_are_bounded(make_app: AppFactory) -> None:
    app = make_app(LOCKING_EVENTS_MAX_STREAMS=1, **FAST)
    client = app.test_client()
    first = TestStream(client, "/docs/a/@lock/events")
    refused = client.get("/@locks/events")
    assert refused.status_code == 503
    assert refused.json["error"]["type"] == "ServiceUnavailable"
    assert refused.headers["Retry-After"] == "5"
    first.close()
    second = TestStream(client, "/@locks/events")
    assert second.status == 200
    second.close()


def test_switched_off(make_app: AppFactory) -> None:
    app = make_app(LOCKING_EVENTS_ENABLED=False)
    client = app.test_client()
    assert client.get("/@locks/events").status_code == 404
    assert client.post("/docs/a/@lock", headers=ALICE).status_code == 200  # no event table
    with app.app_context():
        assert app.extensions["locking"].engine.events is None


def test_bad_settings_are_refused(make_app: AppFactory) -> None:
    with pytest.raises(ValueError, match="LOCKING_EVENTS_POLL_INTERVAL"):
        make_app(LOCKING_EVENTS_POLL_INTERVAL=0)
    with pytest.raises(ValueError, match="LOCKING_EVENTS_MAX_STREAMS"):
        make_app(LOCKING_EVENTS_MAX_STREAMS=-1)


OPS = st.lists(
    st.tuples(
        st.sampled_from(["lock", "refresh", "release", "steal"]),
        st.sampled_from(["alice", "bob"]),
        st.sampled_from(["/docs/p", "/docs/q"]),
    ),
    max_size=12,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS)
def test_the_log_and_the_signals_tell_the_same_story(fast_app: Flask, ops: list[Any]) -> None:
    """Whatever the sequence of operations, replaying the log gives exactly the events the
    in-process signals saw, in the same order, with consecutive ids and no token."""
    locking: Locking = fast_app.extensions["locking"].extension
    client = fast_app.test_client()
    signalled: list[tuple[str, str, int]] = []

    def receiver(name: str) -> Any:
        def receive(sender: Any, lock: Any, **extra: Any) -> None:
            signalled.append((name, lock.resource, lock.version))

        return receive

    receivers = {name: receiver(name) for name in ("acquired", "refreshed", "released", "stolen")}
    with fast_app.app_context():
        start = fast_app.extensions["locking"].engine.events.head()
        for name, fn in receivers.items():
            BY_EVENT[name].connect(fn, sender=fast_app)
        try:
            for op, user, resource in ops:
                with contextlib.suppress(LockingError):  # conflicts are part of the story
                    if op == "lock":
                        locking.acquire(resource, user)
                    elif op == "refresh":
                        held = locking.get(resource, owner=user)
                        if held is not None and held.token is not None:
                            locking.refresh(resource, held.token)
                    elif op == "release":
                        locking.release(resource, owner=user)
                    else:
                        locking.release(resource, owner=user, force=True)
        finally:
            for name, fn in receivers.items():
                BY_EVENT[name].disconnect(fn, sender=fast_app)
    if not signalled:
        return
    stream = TestStream(client, "/@locks/events", headers={"Last-Event-ID": str(start)})
    events = stream.read(len(signalled))
    stream.close()
    assert [(e.event, e.data["resource"], e.data["version"]) for e in events] == signalled
    assert [int(e.id) for e in events] == list(range(start + 1, start + 1 + len(signalled)))
    assert "token" not in stream.raw
    with fast_app.app_context():
        for resource in ("/docs/p", "/docs/q"):
            locking.release(resource, owner="admin", force=True)


def test_request_identity_is_read_once_per_stream(make_app: AppFactory) -> None:
    """The authorizer is asked per event with the identity of the request that opened the
    stream (the stream keeps its request context)."""
    app = make_app(**FAST)
    locking: Locking = app.extensions["locking"].extension
    asked: list[tuple[str, str, str | None]] = []

    @locking.authorizer
    def authorize(action: str, resource: str, identity: Any) -> bool:
        asked.append((action, resource, identity.id if identity else None))
        assert request.headers.get("X-User") == (identity.id if identity else None)
        return action != "steal"

    client = app.test_client()
    stream = TestStream(client, "/@locks/events", headers={"X-User": "carol"})
    client.post("/docs/z/@lock", headers=ALICE)
    assert names(stream.read(1)) == ["acquired"]
    stream.close()
    assert ("view", "/docs/z", "carol") in asked
