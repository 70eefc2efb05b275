"""Review round 7: defects found by an outside review, each with the test that shows it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask, jsonify

from tests.conftest import AppFactory
from tests.helpers.sse import TestStream

ALICE = {"X-User": "alice"}
REFERENCE = "/api/v2/clients/5/reference"


def _reference_app(make_app: AppFactory, **config: Any) -> Flask:
    """The ``X-User`` identity, a host route below reference data, and Alice's reference
    lock on client 5 (the reference endpoint refuses a caller without an identity)."""
    app = make_app(LOCKING_EVENTS_HEARTBEAT=0.2, **config)

    @app.route(f"{REFERENCE.replace('5', '<int:client>')}/items/<int:item>", methods=["PATCH"])
    def item(client: int, item: int) -> Any:
        return jsonify(item=item)

    client = app.test_client()
    assert client.post(f"{REFERENCE}/lock").status_code == 401  # anonymous: refused
    assert client.post(f"{REFERENCE}/lock", headers=ALICE).status_code == 201
    return app


def test_the_listing_does_not_let_anonymous_callers_steal_reference_locks(
    make_app: AppFactory,
) -> None:
    """Reference-data locks need an authenticated caller at every endpoint (SPEC §5c): its
    own lock endpoint and ``<path>/@lock`` answer 401 to an anonymous one. ``DELETE /@locks``
    with ``{"force": true}`` took that caller as anonymous and stole Alice's lock."""
    app = _reference_app(make_app)
    client = app.test_client()
    assert client.delete(f"{REFERENCE}/lock", json={"force": True}).status_code == 401
    bulk = client.delete("/@locks", json={"resources": [REFERENCE], "force": True})
    assert bulk.status_code == 200
    assert bulk.json["released"] == [], bulk.json
    assert [(r["resource"], r["status"]) for r in bulk.json["refused"]] == [(REFERENCE, 401)]
    assert client.patch(f"{REFERENCE}/items/1", headers={"X-User": "bob"}).status_code == 409
    # An authenticated caller may still release it in bulk (the default authorizer).
    bob = client.delete(
        "/@locks", json={"resources": [REFERENCE], "force": True}, headers={"X-User": "bob"}
    )
    assert bob.json["released"] == [REFERENCE], bob.json


def test_the_listing_shows_no_reference_lock_to_anonymous_callers(make_app: AppFactory) -> None:
    """``GET /@locks`` and ``GET /@locks/events`` showed an anonymous caller who holds the
    reference data of each client, which its own endpoints show only to an authenticated
    caller."""
    app = _reference_app(make_app)
    client = app.test_client()
    assert client.post("/docs/1/@lock").status_code == 200  # a content lock: anyone sees it
    assert client.get(f"{REFERENCE}/@lock").status_code == 401
    anonymous = client.get("/@locks").json["items"]
    assert [lock["resource"] for lock in anonymous] == ["/docs/1"]
    alice = client.get("/@locks", headers=ALICE).json["items"]
    assert [lock["resource"] for lock in alice] == [REFERENCE, "/docs/1"]

    stream = TestStream(client, "/@locks/events?last_event_id=0")
    try:
        assert stream.status == 200
        events = stream.read(3, timeout=3)
    finally:
        stream.close()
    assert [(e.event, e.data["resource"]) for e in events] == [("acquired", "/docs/1")]


def test_plone_mode_refuses_anonymous_bulk_release(make_app: AppFactory) -> None:
    """Plone compatibility answers every anonymous ``@lock`` write with 401; ``DELETE
    /@locks`` released a content lock for an anonymous caller all the same."""
    app = make_app(LOCKING_CONTENT_COMPAT="plone")
    client = app.test_client()
    assert client.post("/docs/1/@lock", headers=ALICE).status_code == 200
    assert client.delete("/docs/1/@lock", json={"force": True}).status_code == 401
    bulk = client.delete("/@locks", json={"resources": ["/docs/1"], "force": True})
    assert bulk.json["released"] == [], bulk.json
    assert [(r["resource"], r["status"]) for r in bulk.json["refused"]] == [("/docs/1", 401)]
    assert client.get("/docs/1/@lock").json["locked"] is True


def test_lock_events_are_served_past_a_host_path_route(make_app: AppFactory) -> None:
    """``<path>/@lock/events`` is served "even behind a host catch-all route"
    (docs/events.rst), as ``<path>/@lock`` is. Behind ``/files/<path:name>`` the host's
    view answered it instead: Werkzeug prefers the rule with the static first segment, and
    the endpoint's own code for that case (``LockEventsEndpoint.dispatch``) was never
    called."""
    app = make_app(LOCKING_EVENTS_HEARTBEAT=0.2)

    @app.route("/files/<path:name>", methods=["GET", "PATCH"])
    def files(name: str) -> Any:
        return jsonify(name=name)

    client = app.test_client()
    assert client.post("/files/a/b/@lock", headers=ALICE).status_code == 200  # @lock: served
    stream = TestStream(client, "/files/a/b/@lock/events?last_event_id=0")
    try:
        assert stream.status == 200 and stream.response.mimetype == "text/event-stream"
        events = stream.read(1, timeout=3)
    finally:
        stream.close()
    assert [(e.event, e.data["resource"]) for e in events] == [("acquired", "/files/a/b")]
    refused = client.post("/files/a/b/@lock/events")
    assert refused.status_code == 405 and refused.json["error"]["type"] == "MethodNotAllowed"
    assert client.get("/files/a/b").json == {"name": "a/b"}  # the host's route is untouched


def test_the_listing_shows_no_released_lock_when_the_clock_steps_back(
    database_url: str, table_name: str
) -> None:
    """A released row stays as a tombstone whose empty secret alone says "no grant" (its
    ``locked_at_ms`` is kept); every query but the listing's page tested the secret. After
    the database clock stepped back, ``GET /@locks`` showed a released lock as held by an
    anonymous owner with a timeout of 0."""
    from tests.conftest import drop_tables
    from tests.helpers.racers import make_request
    from tests.test_release_tombstone import HOUR_MS, Clock, skewed

    clock = Clock()
    store = skewed(database_url, table_name, clock)
    try:
        store.create_schema()
        row = store.acquire(make_request("/docs/1", "ann", 60_000)).row
        assert store.release(row)
        clock.offset_ms = -HOUR_MS
        assert store.live_rows() == []
        assert store.live_page(prefix="/", after=None, owner_key=None, limit=10) == []
        assert store.live_page(prefix=None, after=None, owner_key=None, limit=10) == []
    finally:
        store.dispose()
        if not database_url.startswith("sqlite"):
            drop_tables(database_url, table_name)


@pytest.mark.parametrize("after_steal", ["nobody", "bob"])
def test_the_client_notices_a_lost_lock_in_plone_mode(
    make_app: AppFactory, after_steal: str
) -> None:
    """In Plone compatibility, ``PATCH @lock`` answers 200 with the lock as it stands when
    the caller's lock is gone: the unlocked body, or the new holder's lock without a token.
    ``HeldLock.refresh`` took any 200 for a refresh, kept its old token and the new holder's
    lock JSON as its own, and never marked the lock lost."""
    httpx = pytest.importorskip("httpx")
    from flask_locking.client import LockingClient, LockLost

    app = make_app(LOCKING_CONTENT_COMPAT="plone")
    transport = httpx.WSGITransport(app=app)
    with LockingClient("http://testserver", transport=transport, headers=ALICE) as alice:
        held = alice.lock("/docs/1", auto_refresh=False).acquire()
        version = held.version
        bob = app.test_client()
        assert bob.delete("/docs/1/@lock", json={"force": True}, headers={"X-User": "bob"}).json[
            "locked"
        ] is False
        if after_steal == "bob":
            assert bob.post("/docs/1/@lock", headers={"X-User": "bob"}).json["locked"] is True
        with pytest.raises(LockLost):
            held.refresh()
        assert not held.held and held.version == version
        with pytest.raises(LockLost):
            held.patch(json={"title": "stale"})


def test_the_client_reports_a_conflict_in_plone_mode(make_app: AppFactory) -> None:
    """Plone compatibility answers ``POST @lock`` on another's lock with 200 and that lock
    (no token); the client raised a bare ``LockingClientError`` ("sent no token") instead
    of the ``LockConflictError`` carrying the holder that it raises for a 409."""
    httpx = pytest.importorskip("httpx")
    from flask_locking.client import LockConflictError, LockingClient

    app = make_app(LOCKING_CONTENT_COMPAT="plone")
    assert app.test_client().post("/docs/1/@lock", headers={"X-User": "bob"}).status_code == 200
    transport = httpx.WSGITransport(app=app)
    with LockingClient("http://testserver", transport=transport, headers=ALICE) as alice:
        held = alice.lock("/docs/1", auto_refresh=False)
        with pytest.raises(LockConflictError) as refused:
            held.acquire()
        assert refused.value.holder is not None and refused.value.holder["creator"] == "bob"
        assert "token" not in refused.value.holder and not held.held


def test_a_job_lock_covers_writes_below_its_url_whatever_their_canonical_url(
    make_app: AppFactory,
) -> None:
    """A job lock covers ``/api/v1.0/companies/{c}/jobs/{j}`` and everything below it (SPEC
    §5b). Writes are keyed by their endpoint's canonical URL (``url_for``'s: the first
    rule registered, here an alias outside the job), and only that key's ancestors were
    looked up: ``PATCH .../jobs/2/tasks/3`` reached the view past Alice's job lock."""
    from flask import url_for

    app = make_app()
    written: list[int] = []

    @app.route("/api/v1.0/companies/<int:c>/jobs/<int:j>/tasks/<int:t>", methods=["PATCH"])
    @app.route("/tasks/<int:c>-<int:j>-<int:t>", methods=["PATCH"])
    def task(c: int, j: int, t: int) -> Any:
        written.append(t)
        return jsonify(task=t)

    with app.test_request_context():
        assert url_for("task", c=1, j=2, t=3) == "/tasks/1-2-3"
    client = app.test_client()
    lock = client.post("/api/v1.0/companies/1/jobs/2/lock/", headers=ALICE)
    assert lock.status_code == 201
    token = lock.json["token"]
    bob = {"X-User": "bob"}
    for _ in range(2):  # computed, then from the guard's key cache
        refused = client.patch("/api/v1.0/companies/1/jobs/2/tasks/3", headers=bob)
        assert refused.status_code == 423, refused.get_data(as_text=True)
        assert refused.headers["Lock-Refused"] == "locked"
        stale = client.patch(
            "/api/v1.0/companies/01/jobs/2/tasks/3", headers={**bob, "Lock-Token": "x" * 43}
        )
        assert stale.status_code == 412, stale.get_data(as_text=True)
    assert written == []
    ok = client.patch("/api/v1.0/companies/1/jobs/2/tasks/3", headers={"Lock-Token": token})
    assert ok.status_code == 200 and written == [3]
    # The alias writes the same task: covered as well. Another job's task is not.
    assert client.patch("/tasks/1-2-3", headers=bob).status_code == 423
    assert client.patch("/tasks/1-9-3", headers=bob).status_code == 200
    assert client.patch("/api/v1.0/companies/1/jobs/9/tasks/3", headers=bob).status_code == 200
    assert written == [3, 3, 3]


def test_a_lock_on_an_ancestor_keyed_by_its_alias_covers_the_writes_below(
    make_app: AppFactory,
) -> None:
    """The job's own endpoint has an alias rule registered first (``/j/<c>/<j>``), so a
    lock on the job is taken under ``/j/1/2``, the key ``<job>/lock/`` gives it. A task
    below the job's URL looked up only the ancestors of its own URL, never ``/j/1/2``:
    Bob's write to task 3 went through Alice's job lock. Each ancestor is now also looked
    up under the key a lock on it is taken under."""
    app = make_app()
    written: list[int] = []

    @app.route("/api/v1.0/companies/<int:c>/jobs/<int:j>", methods=["PATCH"])
    @app.route("/j/<int:c>/<int:j>", methods=["PATCH"])
    def job(c: int, j: int) -> Any:
        return jsonify(job=j)

    @app.route("/api/v1.0/companies/<int:c>/jobs/<int:j>/tasks/<int:t>", methods=["PATCH"])
    def task(c: int, j: int, t: int) -> Any:
        written.append(t)
        return jsonify(task=t)

    client = app.test_client()
    lock = client.post("/api/v1.0/companies/1/jobs/2/lock/", headers=ALICE)
    assert lock.status_code == 201 and lock.json["resource"] == "/j/1/2"
    bob = {"X-User": "bob"}
    for _ in range(2):  # computed, then from the guard's key cache
        refused = client.patch("/api/v1.0/companies/1/jobs/2/tasks/3", headers=bob)
        assert refused.status_code in (403, 423), refused.get_data(as_text=True)
        assert refused.headers["Lock-Refused"] == "locked"
        assert client.patch("/api/v1.0/companies/1/jobs/2", headers=bob).status_code in (403, 423)
    assert written == []
    ok = client.patch(
        "/api/v1.0/companies/1/jobs/2/tasks/3", headers={"Lock-Token": lock.json["token"]}
    )
    assert ok.status_code == 200 and written == [3]
    assert client.patch("/api/v1.0/companies/1/jobs/9/tasks/3", headers=bob).status_code == 200


def test_no_single_token_writes_a_resource_under_two_overlapping_locks(
    make_app: AppFactory,
) -> None:
    """The task ``/tasks/1-2-3`` (its canonical URL) is also ``.../jobs/2/tasks/3``, below
    job 2: Alice's lock on the task and Bob's lock on the job overlap, but each acquisition
    checks only its own key's URL tree, so both are granted. The guard let each of them
    write with their own token, under the other's lock; now it lets a write through only
    when the token opens every lock that covers it."""
    app = make_app()

    @app.route("/api/v1.0/companies/<int:c>/jobs/<int:j>/tasks/<int:t>", methods=["PATCH"])
    @app.route("/tasks/<int:c>-<int:j>-<int:t>", methods=["PATCH"])
    def task(c: int, j: int, t: int) -> Any:
        return jsonify(task=t)

    client = app.test_client()
    task_lock = client.post("/api/v1.0/companies/1/jobs/2/tasks/3/@lock", headers=ALICE)
    assert task_lock.status_code == 200 and task_lock.json["resource"] == "/tasks/1-2-3"
    job_lock = client.post("/api/v1.0/companies/1/jobs/2/lock/", headers={"X-User": "bob"})
    assert job_lock.status_code == 201  # (a product decision: see the review's report)
    for token in (task_lock.json["token"], job_lock.json["token"]):
        for url in ("/tasks/1-2-3", "/api/v1.0/companies/1/jobs/2/tasks/3"):
            refused = client.patch(url, headers={"Lock-Token": token})
            assert refused.status_code == 412, (url, refused.get_data(as_text=True))
    released = client.delete("/api/v1.0/companies/1/jobs/2/lock/", headers={"X-User": "bob"})
    assert released.status_code == 204
    ok = client.patch("/tasks/1-2-3", headers={"Lock-Token": task_lock.json["token"]})
    assert ok.status_code == 200


def test_the_cli_names_a_resource_as_the_python_api_does(make_app: AppFactory) -> None:
    """``flask locks show`` and ``release`` used the path as typed, while the Python API, the
    guard and ``@lock`` key it by its route: ``flask locks release /items/07 --force`` said
    "/items/07 was not locked." and left the lock on item 7 in place."""
    app = make_app()

    @app.patch("/items/<int:item_id>")
    def item(item_id: int) -> Any:
        return jsonify(item=item_id)

    locking = app.extensions["locking"].extension
    with app.app_context():
        assert locking.acquire("/items/07", "alice").resource == "/items/7"
    runner = app.test_cli_runner()
    shown = runner.invoke(args=["locks", "show", "/items/07", "--json"])
    assert shown.exit_code == 0 and json.loads(shown.output)["resource"] == "/items/7"
    released = runner.invoke(args=["locks", "release", "/items/07", "--force"])
    assert released.exit_code == 0 and "Released the lock on /items/7" in released.output
    with app.app_context():
        assert locking.get("/items/7") is None
