"""The content ``@lock`` dialect on the wire (docs/dialects.rst), field by field, on every
backend."""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask import Flask, jsonify

from flask_locking import Owner
from tests.helpers.wire import LOCK_FIELDS, UNLOCKED, assert_error, assert_new_lock, iso

ALICE = {"X-User": "alice"}
BOB = {"X-User": "bob"}


@pytest.fixture
def app(make_app: Any, database_url: str) -> Flask:
    """Every test of this module runs on each backend."""
    return make_app(database_url=database_url)


def api(app: Flask) -> Any:
    """The app's :class:`Locking` object (for the Python API)."""
    return app.extensions["locking"].extension


# -- POST ------------------------------------------------------------------------------


def test_post_returns_every_field_of_the_lock_json(client: Any) -> None:
    assert_new_lock(
        lambda: client.post("/docs/1/@lock", headers=ALICE), status=200, resource="/docs/1", depth=0
    )


def test_post_with_body_sets_stealable_and_timeout(client: Any) -> None:
    response = client.post("/docs/1/@lock", json={"stealable": False, "timeout": 30}, headers=ALICE)
    assert response.status_code == 200
    body = response.get_json()
    assert body["stealable"] is False
    assert body["name"] == "plone.locking.unstealable"
    assert body["timeout"] == 30
    assert iso(body["expires"]) - iso(body["created"]) == pytest.approx(30, abs=0.002)


def test_creator_fields_come_from_an_owner_object(app: Flask) -> None:
    @api(app).identity_loader
    def load() -> Owner:
        return Owner(id="u42", name="Ada Lovelace", url="https://example.org/users/u42")

    body = app.test_client().post("/docs/1/@lock").get_json()
    assert body["creator"] == "u42"
    assert body["creator_name"] == "Ada Lovelace"
    assert body["creator_url"] == "https://example.org/users/u42"


def test_anonymous_lock_has_null_creator(client: Any) -> None:
    body = client.post("/docs/1/@lock").get_json()
    assert body["creator"] is None
    assert body["creator_name"] is None
    assert body["creator_url"] is None
    assert "token" in body


def test_conflict_409_carries_the_holder_without_token(client: Any) -> None:
    mine = client.post("/docs/1/@lock", json={"timeout": 120}, headers=ALICE).get_json()
    response = client.post("/docs/1/@lock", headers=BOB)
    body = assert_error(response, 409, "Conflict")
    assert set(body) == {"error", "lock"}
    assert "alice" in body["error"]["message"]
    holder = body["lock"]
    assert set(holder) == LOCK_FIELDS
    assert "token" not in holder
    assert "Lock-Token" not in response.headers
    assert mine["token"] not in response.get_data(as_text=True)
    expected = {k: v for k, v in mine.items() if k != "token"}
    assert holder == expected


def test_owner_relock_keeps_token_and_version(client: Any) -> None:
    first = client.post("/docs/1/@lock", headers=ALICE).get_json()
    time.sleep(0.02)
    second = client.post("/docs/1/@lock", json={"timeout": 900}, headers=ALICE)
    assert second.status_code == 200
    again = second.get_json()
    assert again["token"] == first["token"]
    assert again["version"] == first["version"] == 1
    assert again["timeout"] == 900
    assert again["time"] > first["time"]


def test_anonymous_callers_are_one_identity(client: Any) -> None:
    first = client.post("/docs/1/@lock").get_json()
    # Another anonymous caller: same identity, so a re-lock (same token) and its token shown.
    other = client.application.test_client()
    again = other.post("/docs/1/@lock").get_json()
    assert again["token"] == first["token"]
    assert other.get("/docs/1/@lock").get_json()["token"] == first["token"]
    # A named user is someone else.
    assert client.post("/docs/1/@lock", headers=ALICE).status_code == 409
    # Any anonymous caller releases the anonymous lock without force.
    released = other.delete("/docs/1/@lock")
    assert released.status_code == 200
    assert released.get_json() == UNLOCKED
    assert client.get("/docs/1/@lock").get_json() == UNLOCKED


# -- GET -------------------------------------------------------------------------------


def test_get_unlocked_is_exactly_the_plone_body(client: Any) -> None:
    response = client.get("/docs/1/@lock")
    assert response.status_code == 200
    assert response.get_json() == UNLOCKED
    assert "Lock-Token" not in response.headers


def test_get_shows_token_to_owner_only(client: Any) -> None:
    token = client.post("/docs/1/@lock", headers=ALICE).get_json()["token"]
    own = client.get("/docs/1/@lock", headers=ALICE)
    assert own.status_code == 200
    assert own.get_json()["token"] == token
    other = client.get("/docs/1/@lock", headers=BOB)
    assert other.status_code == 200
    assert set(other.get_json()) == LOCK_FIELDS
    assert token not in other.get_data(as_text=True)
    assert "Lock-Token" not in other.headers
    anonymous = client.get("/docs/1/@lock")
    assert "token" not in anonymous.get_json()
    # Presenting the token proves possession: it may be shown back.
    assert client.get("/docs/1/@lock", headers={"Lock-Token": token}).get_json()["token"] == token
    # A wrong token shows nothing.
    assert "token" not in client.get("/docs/1/@lock", headers={"Lock-Token": "x" * 43}).get_json()


def test_head_reads_and_never_releases(client: Any) -> None:
    client.post("/docs/1/@lock", headers=ALICE)
    assert client.head("/docs/1/@lock", headers=ALICE).status_code == 200
    assert client.get("/docs/1/@lock", headers=BOB).get_json()["locked"] is True


# -- PATCH (refresh) -------------------------------------------------------------------


def test_patch_refreshes_with_new_time_and_same_token(client: Any) -> None:
    first = client.post("/docs/1/@lock", json={"timeout": 60}, headers=ALICE).get_json()
    time.sleep(0.05)
    response = client.patch("/docs/1/@lock", headers=ALICE)
    assert response.status_code == 200
    refreshed = response.get_json()
    assert refreshed["token"] == first["token"]
    assert refreshed["version"] == first["version"]
    assert refreshed["time"] > first["time"]
    assert iso(refreshed["created"]) > iso(first["created"])
    assert iso(refreshed["expires"]) > iso(first["expires"])
    assert refreshed["timeout"] == 60
    # A new timeout can come with the refresh.
    longer = client.patch("/docs/1/@lock", json={"timeout": 3600}, headers=ALICE).get_json()
    assert longer["timeout"] == 3600
    assert iso(longer["expires"]) - iso(longer["created"]) == pytest.approx(3600, abs=0.002)


def test_patch_with_token_refreshes_for_anyone_holding_it(client: Any) -> None:
    token = client.post("/docs/1/@lock", headers=ALICE).get_json()["token"]
    response = client.patch("/docs/1/@lock", headers={**BOB, "Lock-Token": f"<{token}>"})
    assert response.status_code == 200
    assert response.get_json()["creator"] == "alice"


def test_patch_someone_elses_lock_is_409(client: Any) -> None:
    client.post("/docs/1/@lock", headers=ALICE)
    body = assert_error(client.patch("/docs/1/@lock", headers=BOB), 409, "Conflict")
    assert body["lock"]["creator"] == "alice"
    assert "token" not in body["lock"]


def test_patch_released_lock_is_409(client: Any) -> None:
    client.post("/docs/1/@lock", headers=ALICE)
    client.delete("/docs/1/@lock", headers=ALICE)
    assert_error(client.patch("/docs/1/@lock", headers=ALICE), 409, "Conflict")
    assert client.get("/docs/1/@lock").get_json() == UNLOCKED


def test_patch_never_locked_is_409(client: Any) -> None:
    assert_error(client.patch("/docs/1/@lock", headers=ALICE), 409, "Conflict")
    assert client.get("/docs/1/@lock").get_json() == UNLOCKED


def test_patch_expired_lock_is_409(app: Flask, client: Any) -> None:
    with app.app_context():
        api(app).acquire("/docs/1", "alice", timeout=0.2)
    time.sleep(0.4)
    assert_error(client.patch("/docs/1/@lock", headers=ALICE), 409, "Conflict")
    # The refused refresh did not bring it back.
    assert client.get("/docs/1/@lock").get_json() == UNLOCKED


# -- DELETE ----------------------------------------------------------------------------


def test_delete_by_owner(client: Any) -> None:
    client.post("/docs/1/@lock", headers=ALICE)
    response = client.delete("/docs/1/@lock", headers=ALICE)
    assert response.status_code == 200
    assert response.get_json() == UNLOCKED
    assert client.get("/docs/1/@lock").get_json() == UNLOCKED
    assert client.post("/docs/1/@lock", headers=BOB).status_code == 200


def test_delete_with_token_by_another_identity(client: Any) -> None:
    token = client.post("/docs/1/@lock", headers=ALICE).get_json()["token"]
    response = client.delete("/docs/1/@lock", headers={**BOB, "Lock-Token": token})
    assert response.status_code == 200
    assert client.get("/docs/1/@lock").get_json() == UNLOCKED


def test_delete_by_non_owner_without_force_is_409(client: Any) -> None:
    token = client.post("/docs/1/@lock", headers=ALICE).get_json()["token"]
    for body in (None, {"force": False}):
        response = client.delete("/docs/1/@lock", json=body, headers=BOB)
        error = assert_error(response, 409, "Conflict")
        assert error["lock"]["creator"] == "alice"
        assert token not in response.get_data(as_text=True)
    assert client.get("/docs/1/@lock", headers=ALICE).get_json()["token"] == token


def test_force_delete_steals_a_stealable_lock(client: Any) -> None:
    token = client.post("/docs/1/@lock", headers=ALICE).get_json()["token"]
    response = client.delete("/docs/1/@lock", json={"force": True}, headers=BOB)
    assert response.status_code == 200
    assert response.get_json() == UNLOCKED
    assert client.get("/docs/1/@lock").get_json() == UNLOCKED
    # The old token opens nothing any more.
    assert client.patch("/docs/1", headers={"Lock-Token": token}).status_code == 412


def test_force_on_non_stealable_lock_is_403_by_default(client: Any) -> None:
    client.post("/docs/1/@lock", json={"stealable": False}, headers=ALICE)
    assert_error(
        client.delete("/docs/1/@lock", json={"force": True}, headers=BOB), 403, "Forbidden"
    )
    assert client.get("/docs/1/@lock").get_json()["creator"] == "alice"


def test_force_on_non_stealable_lock_when_authorizer_grants_steal(app: Flask, client: Any) -> None:
    asked: list[tuple[str, str, str | None]] = []

    @api(app).authorizer
    def authorize(action: str, resource: str, identity: Owner | None) -> bool:
        asked.append((action, resource, identity.id if identity else None))
        return action != "steal" or (identity is not None and identity.id == "admin")

    client.post("/docs/1/@lock", json={"stealable": False}, headers=ALICE)
    assert client.delete("/docs/1/@lock", json={"force": True}, headers=BOB).status_code == 403
    response = client.delete("/docs/1/@lock", json={"force": True}, headers={"X-User": "admin"})
    assert response.status_code == 200
    assert response.get_json() == UNLOCKED
    assert ("steal", "/docs/1", "admin") in asked
    assert client.get("/docs/1/@lock").get_json() == UNLOCKED


def test_delete_when_unlocked_is_200(client: Any) -> None:
    for body in (None, {"force": True}):
        response = client.delete("/docs/1/@lock", json=body, headers=ALICE)
        assert response.status_code == 200
        assert response.get_json() == UNLOCKED


# -- authorization before state --------------------------------------------------------


@pytest.mark.parametrize("locked_by", [None, "alice", "bob"])
def test_denied_caller_gets_403_whatever_the_lock_state(
    app: Flask, client: Any, locked_by: str | None
) -> None:
    denied: set[str] = set()

    @api(app).authorizer
    def authorize(action: str, resource: str, identity: Owner | None) -> bool:
        if identity is not None and identity.id == "bob":
            return action not in denied
        return action != "steal"

    token = None
    if locked_by is not None:
        token = client.post("/docs/1/@lock", headers={"X-User": locked_by}).get_json()["token"]
    before = client.get("/docs/1/@lock", headers=ALICE).get_json()

    denied.update({"view", "lock", "unlock"})
    headers = {**BOB, "Lock-Token": token} if token else BOB
    assert_error(client.get("/docs/1/@lock", headers=headers), 403, "Forbidden")
    assert_error(client.post("/docs/1/@lock", headers=headers), 403, "Forbidden")
    assert_error(client.patch("/docs/1/@lock", headers=headers), 403, "Forbidden")
    for body in (None, {"force": True}):
        response = client.delete("/docs/1/@lock", json=body, headers=headers)
        error = assert_error(response, 403, "Forbidden")
        assert "lock" not in error  # a refusal tells nothing about the lock
    # Nothing changed.
    assert client.get("/docs/1/@lock", headers=ALICE).get_json() == before


def test_each_action_is_checked_separately(app: Flask, client: Any) -> None:
    @api(app).authorizer
    def authorize(action: str, resource: str, identity: Owner | None) -> bool:
        return action == "view"  # read-only user

    assert client.get("/docs/1/@lock", headers=ALICE).status_code == 200
    assert client.post("/docs/1/@lock", headers=ALICE).status_code == 403
    assert client.delete("/docs/1/@lock", headers=ALICE).status_code == 403
    assert client.get("/docs/1/@lock").get_json() == UNLOCKED


# -- routing ---------------------------------------------------------------------------


def test_unrouted_path_is_404(client: Any) -> None:
    for method in ("get", "post", "patch", "delete"):
        response = getattr(client, method)("/nowhere/1/@lock", headers=ALICE)
        assert_error(response, 404, "NotFound")
    assert client.get("/docs/1/@lock").get_json() == UNLOCKED
    with client.application.app_context():
        assert api(client.application).locks() == []


def test_lock_served_past_a_host_catch_all_route(make_app: Any, database_url: str) -> None:
    app = make_app(database_url=database_url)

    @app.route("/<path:anything>", methods=["GET", "POST", "PATCH", "DELETE"])
    def catch_all(anything: str) -> Any:
        return jsonify(caught=anything)

    client = app.test_client()
    response = client.post("/pages/about/@lock", headers=ALICE)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["resource"] == "/pages/about"
    assert "caught" not in body
    assert client.get("/pages/about/@lock", headers=BOB).get_json()["creator"] == "alice"
    assert client.head("/pages/about/@lock", headers=ALICE).status_code == 200
    assert client.put("/pages/about/@lock", headers=ALICE).status_code == 405
    assert client.post("/pages/about/@lock", headers=BOB).status_code == 409
    # The host's catch-all still serves the page itself, and the guard protects it.
    assert client.get("/pages/about").get_json() == {"caught": "pages/about"}
    assert client.patch("/pages/about", headers=BOB).status_code == 403
    ok = client.patch("/pages/about", headers={"Lock-Token": body["token"]})
    assert ok.get_json() == {"caught": "pages/about"}
    assert client.delete("/pages/about/@lock", headers=ALICE).get_json() == UNLOCKED


def test_trailing_slash_and_double_slash_name_the_same_resource(client: Any) -> None:
    token = client.post("/docs/1/@lock", headers=ALICE).get_json()["token"]
    body = client.get("/docs//1/@lock", headers=ALICE).get_json()
    assert body["resource"] == "/docs/1"
    assert body["token"] == token


# -- version ---------------------------------------------------------------------------


def test_version_grows_at_every_new_grant_and_survives_release(app: Flask, client: Any) -> None:
    versions = []
    versions.append(client.post("/docs/1/@lock", headers=ALICE).get_json()["version"])
    # Re-lock and refresh: same grant.
    assert client.post("/docs/1/@lock", headers=ALICE).get_json()["version"] == versions[-1]
    assert client.patch("/docs/1/@lock", headers=ALICE).get_json()["version"] == versions[-1]
    client.delete("/docs/1/@lock", headers=ALICE)
    versions.append(client.post("/docs/1/@lock", headers=BOB).get_json()["version"])
    client.delete("/docs/1/@lock", json={"force": True}, headers=ALICE)  # stolen
    versions.append(client.post("/docs/1/@lock", headers=ALICE).get_json()["version"])
    client.delete("/docs/1/@lock", headers=ALICE)
    with app.app_context():
        versions.append(api(app).acquire("/docs/1", "carol", timeout=0.15).version)
    time.sleep(0.3)  # expired
    versions.append(client.post("/docs/1/@lock", headers=BOB).get_json()["version"])
    assert versions == [1, 2, 3, 4, 5]
    # Another resource counts on its own.
    assert client.post("/docs/2/@lock", headers=BOB).get_json()["version"] == 1


def test_identity_that_cannot_be_stored_is_400_on_every_backend(app: Flask, client: Any) -> None:
    @api(app).identity_loader
    def load() -> Owner:
        return Owner(id="x" * 300, name="X")

    response = client.post("/docs/1/@lock")
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["error"]["type"] == "BadRequest"
    assert "identity" in response.get_json()["error"]["message"]
    with app.app_context():
        assert api(app).locks() == []


def test_numeric_user_ids_are_distinct_identities(app: Flask, client: Any) -> None:
    @api(app).identity_loader
    def load() -> int | None:
        user = client_user.get("id")
        return int(user) if user is not None else None

    client_user: dict[str, str] = {"id": "1"}
    body = client.post("/docs/1/@lock").get_json()
    assert body["creator"] == "1"
    client_user["id"] = "2"
    assert client.post("/docs/1/@lock").status_code == 409  # not "the same anonymous user"
    assert client.delete("/docs/1/@lock").status_code == 409
    client_user.pop("id")
    assert client.delete("/docs/1/@lock").status_code == 409  # nor the anonymous one


def test_url_prefix_puts_lock_endpoints_and_keys_under_it(make_app: Any) -> None:
    app = make_app(LOCKING_CONTENT_URL_PREFIX="/api/")

    @app.route("/api/docs/<doc_id>", methods=["GET", "PATCH"])
    def api_doc(doc_id: str) -> Any:
        return jsonify(id=doc_id)

    client = app.test_client()
    body = client.post("/api/docs/1/@lock", headers=ALICE).get_json()
    assert body["resource"] == "/api/docs/1"
    assert client.patch("/api/docs/1").status_code == 403
    assert client.patch("/api/docs/1", headers={"Lock-Token": body["token"]}).status_code == 200
    # Outside the prefix there is no @lock endpoint.
    assert client.post("/docs/1/@lock", headers=ALICE).status_code == 404


def test_content_dialect_switched_off_keeps_the_guard(make_app: Any) -> None:
    app = make_app(LOCKING_CONTENT_ENABLED=False)
    client = app.test_client()
    assert client.post("/docs/1/@lock", headers=ALICE).status_code == 404
    with app.app_context():
        held = api(app).acquire("/docs/1", "alice")
    response = client.patch("/docs/1")
    assert response.status_code == 403
    assert response.get_json() == {"error": {"type": "Forbidden", "message": "Resource is locked."}}
    assert client.patch("/docs/1", headers={"Lock-Token": held.token}).status_code == 200


def test_conflict_through_an_infinite_lock_above_names_the_holder(app: Flask, client: Any) -> None:
    with app.app_context():
        api(app).acquire("/docs/1", "alice", depth="infinity")
    response = client.post("/docs/1/parts/a/@lock", headers=BOB)
    body = assert_error(response, 409, "Conflict")
    assert body["lock"]["resource"] == "/docs/1"
    assert body["lock"]["depth"] == "infinity"
    assert "token" not in body["lock"]
    assert "/docs/1" in body["error"]["message"]


def test_get_shows_an_infinite_lock_held_above_the_path(make_app: Any) -> None:
    """GET answers as the guard decides: a path under an infinite lock reads as locked,
    with ``resource`` naming where the lock is held, and the token only for its owner."""
    app = make_app()
    client = app.test_client()
    with app.app_context():
        held = api(app).acquire("/docs", "alice", depth="infinity")
    mine = client.get("/docs/1/@lock", headers={"X-User": "alice"}).get_json()
    theirs = client.get("/docs/1/@lock", headers={"X-User": "bob"}).get_json()
    assert mine["locked"] is True and mine["resource"] == "/docs"
    assert mine["token"] == held.token
    assert theirs["locked"] is True and theirs["resource"] == "/docs" and "token" not in theirs
    assert client.patch("/docs/1", headers={"X-User": "bob"}).status_code == 403
