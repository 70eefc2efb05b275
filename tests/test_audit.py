"""Defects found by an independent audit, each pinned by a test that failed before its fix."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask, jsonify

ALICE = {"X-User": "alice"}
BOB = {"X-User": "bob"}


def _integer_routes(app: Flask) -> Flask:
    """Host routes with Werkzeug's int converters, as a real jobs / reference API has."""

    @app.route("/api/v1.0/companies/<int:company>/jobs/<int:job>", methods=["PATCH"])
    def job(company: int, job: int) -> Any:
        return jsonify(company=company, job=job)

    @app.route("/api/v2/clients/<int(signed=True):client>/reference", methods=["PATCH"])
    def reference(client: int) -> Any:
        return jsonify(client=client)

    return app


# -- the guard must read an id the way the host's router reads it ------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1.0/companies/1/jobs/%EF%BC%97",  # full-width 7: Werkzeug's int converter says 7
        "/api/v1.0/companies/1/jobs/\u0667",  # Arabic-Indic 7
        "/api/v1.0/companies/%EF%BC%91/jobs/7",  # full-width 1
        "/api/v1.0/companies/1/jobs/" + "0" * 30 + "7",  # zero-padded past 18 digits
    ],
)
def test_guard_reads_job_ids_as_the_host_router_does(make_app: Any, path: str) -> None:
    app = _integer_routes(make_app())
    client = app.test_client()
    assert client.post("/api/v1.0/companies/1/jobs/7/lock/", headers=ALICE).status_code == 201
    assert client.patch("/api/v1.0/companies/1/jobs/7", headers=BOB).status_code == 423
    # The host routes this path to job 7 of company 1: the guard must refuse it too.
    response = client.patch(path, headers=BOB)
    assert response.status_code == 423, response.get_data(as_text=True)


@pytest.mark.parametrize(
    "path", ["/api/v2/clients/%EF%BC%95/reference", "/api/v2/clients/" + "0" * 25 + "5/reference"]
)
def test_guard_reads_client_ids_as_the_host_router_does(make_app: Any, path: str) -> None:
    app = _integer_routes(make_app())
    client = app.test_client()
    assert client.post("/api/v2/clients/5/reference/lock", headers=ALICE).status_code == 201
    response = client.patch(path, headers=BOB)
    assert response.status_code == 409, response.get_data(as_text=True)


# -- content paths: one resource, one key, however the host's router spells it ------------


def _item_routes(app: Flask) -> Flask:
    @app.route("/items/<int:item>", methods=["GET", "PATCH"])
    def item(item: int) -> Any:
        return jsonify(item=item)

    @app.route("/items/<int:item>/parts/<part>", methods=["PATCH"])
    def item_part(item: int, part: str) -> Any:
        return jsonify(item=item, part=part)

    return app


@pytest.mark.parametrize(
    ("path", "status"),
    # "/items/0007/" is routed nowhere (a strict rule without the slash): 404, no view runs.
    [("/items/07", 403), ("/items/%EF%BC%97", 403), ("/items/0007/", 404)],
)
def test_guard_refuses_every_spelling_the_host_routes_to_a_locked_item(
    make_app: Any, path: str, status: int
) -> None:
    app = _item_routes(make_app())
    client = app.test_client()
    assert client.post("/items/7/@lock", headers=ALICE).status_code == 200
    assert client.patch("/items/7", headers=BOB).status_code == 403
    response = client.patch(path, headers=BOB)
    assert response.status_code == status, response.get_data(as_text=True)


def test_lock_taken_through_another_spelling_is_the_same_lock(make_app: Any) -> None:
    app = _item_routes(make_app())
    client = app.test_client()
    body = client.post("/items/007/@lock", headers=ALICE).get_json()
    assert body["resource"] == "/items/7"
    assert client.post("/items/7/@lock", headers=BOB).status_code == 409
    assert client.patch("/items/7", headers={**BOB, "Lock-Token": body["token"]}).status_code == 200


def test_infinite_lock_covers_every_spelling_below_it(make_app: Any) -> None:
    app = _item_routes(make_app())
    with app.app_context():
        app.extensions["locking"].extension.acquire("/items/7", "alice", depth="infinity")
    client = app.test_client()
    assert client.patch("/items/7/parts/a", headers=BOB).status_code == 403
    assert client.patch("/items/%EF%BC%97/parts/a", headers=BOB).status_code == 403


# -- an owner's re-lock refreshes; it never weakens the lock --------------------------------


def test_owner_relock_without_a_body_keeps_a_lock_unstealable(
    make_app: Any, database_url: str
) -> None:
    client = make_app(database_url=database_url).test_client()
    url = "/api/v1.0/companies/1/jobs/2/lock/"
    first = client.post(url, headers=ALICE, json={"stealable": False}).get_json()
    again = client.post(url, headers=ALICE)  # a second tab, or a client refreshing by POST
    assert again.status_code == 200
    assert again.get_json()["stealable"] is False
    assert again.get_json()["token"] == first["token"]
    # So nobody may force it away unless the authorizer grants ``steal``.
    assert client.delete(url, headers=BOB, json={"force": True}).status_code == 403


def test_owner_relock_at_depth_zero_keeps_an_infinite_lock_infinite(
    make_app: Any, database_url: str
) -> None:
    app = make_app(database_url=database_url)
    client = app.test_client()
    api = app.extensions["locking"].extension
    with app.app_context():
        held = api.acquire("/docs", "alice", depth="infinity")
        again = api.acquire("/docs", "alice")
        assert again.depth == "infinity" and again.token == held.token
    assert client.patch("/docs/2", headers=BOB).status_code == 403
    # Widening on re-lock still works, and still conflicts with others' locks below.
    with app.app_context():
        api.release("/docs", owner="alice")
        assert api.acquire("/docs", "bob").depth == 0
        assert api.acquire("/docs", "bob", depth="infinity").depth == "infinity"


# -- per-request state must not outlive its request --------------------------------------


def test_requests_sharing_an_app_context_do_not_share_identity_or_lock(make_app: Any) -> None:
    # Flask reuses an app context that is already pushed (a test fixture, a script driving
    # the app): ``g`` then spans several requests and must not carry one caller into the next.
    app = make_app()
    client = app.test_client()
    with app.app_context():
        token = client.post("/docs/1/@lock", headers=ALICE).get_json()["token"]
        seen = client.get("/docs/1/@lock", headers=BOB).get_json()
        assert "token" not in seen
        assert client.delete("/docs/1/@lock", headers=BOB).status_code == 409
        assert client.patch("/docs/1", headers={**ALICE, "Lock-Token": token}).status_code == 200
        other = client.patch("/docs/2", headers={**BOB, "Lock-Release": "true"})
        assert other.status_code == 200 and other.headers.get("Lock-Released") is None
        assert client.get("/docs/2").get_json()["version"] is None
    with app.app_context():
        assert app.extensions["locking"].extension.get("/docs/1") is not None


# -- a token decides for the grant it opens; a stale one never acts on a newer grant -------


def test_stale_token_never_releases_or_refreshes_the_owners_newer_grant(make_app: Any) -> None:
    client = make_app().test_client()
    old = client.post("/docs/1/@lock", headers=ALICE).get_json()["token"]
    assert client.delete("/docs/1/@lock", headers=ALICE).status_code == 200
    new = client.post("/docs/1/@lock", headers=ALICE).get_json()  # alice's other tab
    stale = {**ALICE, "Lock-Token": old}
    # The first tab retries its DELETE (its answer was lost), or refreshes late: both carry
    # the token of a grant that ended, and must not touch the other tab's lock.
    assert client.delete("/docs/1/@lock", headers=stale).status_code == 409
    assert client.patch("/docs/1/@lock", headers=stale).status_code == 409
    after = client.get("/docs/1/@lock", headers=ALICE).get_json()
    assert after["token"] == new["token"] and after["version"] == new["version"]
    # Without a token, the owner still releases as the owner (docs/locks.rst).
    assert client.delete("/docs/1/@lock", headers=ALICE).get_json() == {
        "locked": False,
        "stealable": True,
    }


def test_python_api_release_with_a_stale_token_keeps_the_newer_anonymous_grant(
    app: Flask,
) -> None:
    api = app.extensions["locking"].extension
    with app.app_context():
        old = api.acquire("/docs/1")
        api.release("/docs/1", token=old.token)
        new = api.acquire("/docs/1")  # anonymous callers are one identity: a new grant
        assert new.token != old.token
        from flask_locking import LockConflict

        with pytest.raises(LockConflict):
            api.release("/docs/1", token=old.token)  # a retry with the old grant's token
        assert api.get("/docs/1") is not None
        assert api.release("/docs/1") is not None  # no token: as the anonymous owner


@pytest.mark.parametrize("timeout", [10**400, -(10**400)])
def test_python_api_huge_integer_timeout_is_an_invalid_timeout(app: Flask, timeout: int) -> None:
    from flask_locking import InvalidTimeout

    with app.app_context(), pytest.raises(InvalidTimeout):
        app.extensions["locking"].extension.acquire("/docs/1", "alice", timeout=timeout)


# -- found by the audit, fixed by the lead --------------------------------------------------


def test_cors_preflight_on_lock_passes_a_host_catch_all(make_app: Any) -> None:
    """OPTIONS on ``P/@lock`` answers 200 with ``Allow`` even when a host catch-all route
    takes every method (a 405 there would fail every CORS preflight)."""
    app = make_app()

    @app.route("/<path:anything>", methods=["GET", "POST", "PATCH", "DELETE", "PUT"])
    def catch_all(anything: str) -> Any:
        return jsonify(anything=anything)

    response = app.test_client().options("/docs/1/@lock")
    assert response.status_code == 200
    assert {"POST", "PATCH", "DELETE"} <= {m.strip() for m in response.headers["Allow"].split(",")}


def test_a_failing_signal_receiver_does_not_hide_a_committed_grant(make_app: Any) -> None:
    """The grant is committed before signals go out: a receiver that raises is logged, and
    the new owner still gets its token."""
    from flask_locking.signals import lock_acquired

    app = make_app()

    def broken(sender: Any, **extra: Any) -> None:
        raise RuntimeError("audit log is down")

    with lock_acquired.connected_to(broken, sender=app):
        response = app.test_client().post("/docs/1/@lock", headers=ALICE)
    assert response.status_code == 200 and response.get_json()["token"]


def test_exempting_a_nested_blueprint_by_its_object(make_app: Any) -> None:
    """``locking.exempt(child)`` exempts a child blueprint registered under a parent (whose
    request blueprint name is ``parent.child``)."""
    from flask import Blueprint

    app = make_app()
    parent, child = Blueprint("parent", __name__), Blueprint("child", __name__)

    @child.route("/docs/<doc_id>/notes", methods=["PATCH"])
    def notes(doc_id: str) -> Any:
        return jsonify(ok=True)

    app.extensions["locking"].extension.exempt(child)
    parent.register_blueprint(child)
    app.register_blueprint(parent)
    with app.app_context():
        app.extensions["locking"].extension.acquire("/docs/1", "alice", depth="infinity")
    assert app.test_client().patch("/docs/1/notes", headers=BOB).status_code == 200
    assert app.test_client().patch("/docs/1", headers=BOB).status_code == 403


def test_a_released_lock_leaves_no_owner_data_behind(make_app: Any) -> None:
    """Release keeps a tombstone (key and version, so versions never go back) but no
    secret and no owner's id, name or URL."""
    import sqlalchemy as sa

    app = make_app()
    with app.app_context():
        locking = app.extensions["locking"].extension
        held = locking.acquire("/docs/1", "alice")
        locking.release("/docs/1", token=held.token)
        store = app.extensions["locking"].engine.store
        with store.engine.connect() as conn:
            row = conn.execute(sa.select(store.table)).one()
    assert row.version == 1 and row.secret == ""
    assert (row.owner_id, row.owner_name, row.owner_url) == (None, None, None)
