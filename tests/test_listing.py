"""The lock listing API: GET /@locks (filters, pages, no tokens, authorizer) and the bulk
DELETE /@locks, on every backend, and through the Python client."""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_locking import Locking
from tests.conftest import AppFactory

ALICE, BOB = {"X-User": "alice"}, {"X-User": "bob"}


def locking_of(app: Flask) -> Locking:
    return app.extensions["locking"].extension  # type: ignore[no-any-return]


def wait_expired(app: Flask, expires_at: float) -> None:
    """Wait until the store's clock has passed ``expires_at`` (epoch seconds)."""
    store = app.extensions["locking"].engine.store
    while store.now_ms() < expires_at * 1000:
        time.sleep(0.001)


def all_pages(client: Any, query: str, headers: dict[str, str] | None = None) -> list[str]:
    resources: list[str] = []
    url = f"/@locks?{query}"
    for _ in range(1000):
        body = client.get(url, headers=headers or {}).json
        resources += [item["resource"] for item in body["items"]]
        if body["next"] is None:
            return resources
        url = f"/@locks?{query}&cursor={body['next']}"
    raise AssertionError("pages never ended")


def test_listing_filters_and_tokens(make_app: AppFactory, database_url: str) -> None:
    app = make_app(database_url=database_url)
    client = app.test_client()
    tokens = [
        client.post("/docs/a/@lock", headers=ALICE).json["token"],
        client.post("/docs/b/@lock", headers=BOB).json["token"],
        client.post("/docs/b/parts/1/@lock", headers=ALICE).json["token"],
        client.post("/api/v1.0/companies/1/jobs/2/lock/", headers=ALICE).json["token"],
        client.post("/docs/anon/@lock").json["token"],
    ]
    with app.app_context():
        gone = locking_of(app).acquire("/docs/gone", "alice", timeout=0.001)
        wait_expired(app, gone.expires_at)  # expired: not listed
    everything = client.get("/@locks", headers=ALICE)
    assert everything.status_code == 200
    items = everything.json["items"]
    assert [i["resource"] for i in items] == [
        "/api/v1.0/companies/1/jobs/2",
        "/docs/a",
        "/docs/anon",
        "/docs/b",
        "/docs/b/parts/1",
    ]
    assert everything.json["next"] is None
    text = everything.get_data(as_text=True)
    assert all(token not in text for token in tokens) and '"token"' not in text
    assert items[1]["creator"] == "alice" and items[1]["locked"] is True
    assert all_pages(client, "prefix=/docs/b") == ["/docs/b", "/docs/b/parts/1"]
    assert all_pages(client, "prefix=/docs/b/") == ["/docs/b", "/docs/b/parts/1"]
    assert all_pages(client, "owner=me", ALICE) == [
        "/api/v1.0/companies/1/jobs/2",
        "/docs/a",
        "/docs/b/parts/1",
    ]
    assert all_pages(client, "owner=bob") == ["/docs/b"]
    assert all_pages(client, "owner=me") == ["/docs/anon"]  # anonymous: the anonymous locks
    assert all_pages(client, "dialect=jobs") == ["/api/v1.0/companies/1/jobs/2"]
    assert all_pages(client, "dialect=content&owner=alice") == ["/docs/a", "/docs/b/parts/1"]
    assert all_pages(client, "limit=2") == [i["resource"] for i in items]


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=",
        "limit=1001",
        "limit=x",
        "limit=-1",
        "limit=1.5",
        "cursor=%00",
        "dialect=webdav",
        "dialect=",
        "dialect=locking_jobs",
        "prefix=/a/../b",
        "prefix=/a&prefix=/b",
        "limit=1&limit=2",
        "prefix=" + "a" * 5000,
    ],
)
def test_bad_queries_are_400(app: Flask, query: str) -> None:
    response = app.test_client().get(f"/@locks?{query}")
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.json["error"]["type"] == "BadRequest"


def test_listing_follows_the_authorizer(make_app: AppFactory) -> None:
    app = make_app()
    locking = locking_of(app)

    @locking.authorizer
    def authorize(action: str, resource: str, identity: Any) -> bool:
        if identity is not None and identity.id == "mallory":
            return action == "view" and resource.startswith("/docs/public")
        return action != "steal" or (identity is not None and identity.id == "admin")

    client = app.test_client()
    for n in range(5):
        client.post(f"/docs/secret{n}/@lock", headers=ALICE)
    client.post("/docs/public/@lock", headers=ALICE)
    page = client.get("/@locks?limit=1", headers={"X-User": "mallory"}).json
    # the invisible locks are skipped, not counted against the page
    assert [i["resource"] for i in page["items"]] == ["/docs/public"]
    assert all_pages(client, "limit=2", {"X-User": "mallory"}) == ["/docs/public"]


def test_bulk_release_outcomes(make_app: AppFactory, database_url: str) -> None:
    app = make_app(database_url=database_url)
    locking = locking_of(app)

    @locking.authorizer
    def authorize(action: str, resource: str, identity: Any) -> bool:
        if resource.startswith("/docs/guarded") and action == "unlock":
            return identity is not None and identity.id == "alice"
        return action != "steal" or (identity is not None and identity.id == "admin")

    client = app.test_client()
    client.post("/docs/mine/@lock", headers=BOB)
    client.post("/docs/hers/@lock", headers=ALICE)
    client.post("/docs/fixed/@lock", headers=ALICE, json={"stealable": False})
    client.post("/docs/guarded/@lock", headers=ALICE)
    body = {
        "resources": [
            "/docs/mine",
            "/docs/hers",
            "/docs/fixed",
            "/docs/guarded",
            "/docs/free",
            "/a/../b",
        ]
    }
    plain = client.delete("/@locks", headers=BOB, json=body)
    assert plain.status_code == 200
    assert plain.json["released"] == ["/docs/mine"]
    assert plain.json["not_locked"] == ["/docs/free"]  # nobody held it
    refused = {r["resource"]: r["status"] for r in plain.json["refused"]}
    assert refused == {"/docs/hers": 409, "/docs/fixed": 409, "/docs/guarded": 403, "/a/../b": 400}
    assert all(r["message"] for r in plain.json["refused"])
    forced = client.delete("/@locks", headers=BOB, json={**body, "force": True}).json
    assert forced["released"] == ["/docs/hers"]
    assert forced["not_locked"] == ["/docs/mine", "/docs/free"]  # released just before
    assert {r["resource"]: r["status"] for r in forced["refused"]} == {
        "/docs/fixed": 403,
        "/docs/guarded": 403,
        "/a/../b": 400,
    }
    admin = client.delete(
        "/@locks", headers={"X-User": "admin"}, json={"resources": ["/docs/fixed"], "force": True}
    ).json
    assert admin == {"released": ["/docs/fixed"], "not_locked": [], "refused": []}
    assert [i["resource"] for i in client.get("/@locks").json["items"]] == ["/docs/guarded"]


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {"resources": []},
        {"resources": "/docs/a"},
        {"resources": [1]},
        {"resources": ["/docs/a"], "force": "yes"},
        {"resources": ["/docs/a"], "other": 1},
        {"force": True},
        {"resources": ["/x"] * 1001},
    ],
)
def test_bulk_release_bad_bodies_are_400(app: Flask, body: Any) -> None:
    client = app.test_client()
    response = (
        client.delete("/@locks", json=body)
        if body is not None
        else client.delete("/@locks", data="{", content_type="application/json")
    )
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.json["error"]["type"] == "BadRequest"


def test_switched_off_and_moved(make_app: AppFactory) -> None:
    off = make_app(LOCKING_LOCKS_URL=None)
    assert off.test_client().get("/@locks").status_code == 404
    moved = make_app(LOCKING_LOCKS_URL="admin/locks/")
    assert moved.test_client().get("/admin/locks").status_code == 200
    assert moved.test_client().get("/admin/locks/events?prefix=/a/../b").status_code == 400


KEYS = st.lists(
    st.sampled_from(["/a", "/a/b", "/a/b/c", "/a-b", "/a0", "/b", "/b/a", "/c", "/d/e", "/é"]),
    unique=True,
    max_size=10,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    keys=KEYS,
    limit=st.integers(1, 4),
    prefix=st.sampled_from([None, "/a", "/b", "/"]),
    hidden=st.sets(st.sampled_from(["/a/b", "/b", "/é", "/c"])),
)
def test_pages_add_up_to_the_listing(
    make_app: AppFactory,
    keys: list[str],
    limit: int,
    prefix: str | None,
    hidden: set[str],
) -> None:
    """Whatever the locks, page size, prefix and hidden locks: following ``next`` yields
    each visible lock under the prefix exactly once, in resource order."""
    app = make_app()
    locking = locking_of(app)
    locking.authorizer(lambda action, resource, identity: resource not in hidden)
    with app.app_context():
        for key in keys:
            locking.acquire(key, "alice")
    query = f"limit={limit}" + (f"&prefix={prefix}" if prefix else "")
    got = all_pages(app.test_client(), query)

    def under(key: str) -> bool:
        return prefix in (None, "/") or key == prefix or key.startswith(f"{prefix}/")

    expected = sorted((k for k in keys if under(k) and k not in hidden), key=lambda k: k.encode())
    assert got == expected
    app.extensions["locking"].close()


def test_client_lists_releases_and_streams(make_app: AppFactory) -> None:
    httpx = pytest.importorskip("httpx")
    from flask_locking.client import LockingClient, LockingClientError

    app = make_app(LOCKING_EVENTS_HEARTBEAT=0.1, LOCKING_EVENTS_POLL_INTERVAL=0.05)
    transport = httpx.WSGITransport(app=app)
    alice = LockingClient("http://test", transport=transport, headers=ALICE)
    bob = LockingClient("http://test", transport=transport, headers=BOB)
    with app.app_context():
        for n in range(5):
            locking_of(app).acquire(f"/docs/{n}", "alice")
    assert [i["resource"] for i in alice.list_locks(page_size=2)] == [
        f"/docs/{n}" for n in range(5)
    ]
    assert bob.list_locks(owner="me") == []
    assert bob.release_locks(["/docs/0"])["refused"][0]["status"] == 409
    assert bob.release_locks(["/docs/0", "/docs/1"], force=True) == {
        "released": ["/docs/0", "/docs/1"],
        "not_locked": [],
        "refused": [],
    }
    with pytest.raises(LockingClientError):
        alice.list_locks(dialect="nope")
    # the event iterator: replay from the start (WSGITransport buffers a whole response,
    # so read what the stream had by a Last-Event-ID replay of a stream that ends at once)
    from flask_locking.client_events import parse_events

    lines = [
        ": hello",
        "retry: 2000",
        "",
        "id: 7",
        "event: stolen",
        'data: {"event": "stolen", "by": {"id": "bob", "name": "bob"}}',
        "",
        "data: plain",
        "",
    ]
    events = list(parse_events(lines))
    assert [(e.id, e.event) for e in events] == [("7", "stolen"), ("7", "message")]
    assert events[0].data["by"]["id"] == "bob" and events[1].data == "plain"
    alice.close()
    bob.close()
