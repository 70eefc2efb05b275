"""The JWT reference-data dialect on the wire (docs/dialects.rst), field by field, and its guard."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from flask import Flask, jsonify

from flask_locking import current_lock
from tests.helpers.wire import (
    LOCK_FIELDS,
    UNLOCKED,
    assert_new_lock,
    assert_refused,
    unreachable_store_app,
)
from tests.helpers.wire import assert_envelope as envelope

SECRET = "reference-tests-secret-" + "s" * 48  # 72 bytes: long enough for HS512 too
LOCK_URL = "/api/v2/clients/5/reference/lock"
KEY = "/api/v2/clients/5/reference"


# Tokens are minted at import (collection) time: valid for a day, so a long CI run is fine.
def mint(
    sub: Any = "alice",
    *,
    secret: str = SECRET,
    expires_in: float = 86400,
    algorithm: str = "HS256",
    **claims: Any,
) -> str:
    payload: dict[str, Any] = {"exp": int(time.time() + expires_in), **claims}
    if sub is not None:
        payload["sub"] = sub
    return jwt.encode(payload, secret, algorithm=algorithm)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ALICE = bearer(mint("alice", name="Alice A."))
BOB = bearer(mint("bob"))


def add_reference_routes(app: Flask, prefix: str = "/api/v2") -> Flask:
    """Host routes for reference data below a client."""

    @app.route(f"{prefix}/clients/<int:client>/reference", methods=["GET", "PATCH"])
    def reference(client: int) -> Any:
        return jsonify(client=client, version=current_lock.version if current_lock else None)

    @app.route(f"{prefix}/clients/<int:client>/reference/items/<int:item>", methods=["PATCH"])
    def item(client: int, item: int) -> Any:
        return jsonify(item=item, version=current_lock.version if current_lock else None)

    return app


@pytest.fixture
def app(make_app: Any) -> Flask:
    return add_reference_routes(make_app(identity=False, LOCKING_JWT_SECRET=SECRET))


@pytest.fixture
def client(app: Flask) -> Any:
    return app.test_client()


def api(app: Flask) -> Any:
    return app.extensions["locking"].extension


def lock(client: Any, headers: dict[str, str]) -> str:
    response = client.post(LOCK_URL, headers=headers)
    assert response.status_code in (200, 201), response.get_data(as_text=True)
    return str(response.get_json()["token"])


# -- authentication --------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic YWxpY2U6cHc="}, {"Authorization": "Bearer "}],
    ids=["none", "basic", "empty-bearer"],
)
def test_missing_jwt_is_401_token_not_found(
    client: Any, method: str, headers: dict[str, str]
) -> None:
    response = client.open(LOCK_URL, method=method, headers=headers)
    envelope(response, 401, "Authentication failed", "JWT token not found")
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("token", "details"),
    [
        ("not-a-jwt", "JWT token is malformed or invalid"),
        ("a.b.c", "JWT token is malformed or invalid"),
        (mint(secret="another-secret-" + "x" * 50), "JWT signature is invalid"),
        (mint(expires_in=-60), "JWT token has expired"),
        (mint(None), "JWT token is missing the 'sub' claim"),
        (
            jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256"),
            "JWT token is missing the 'exp' claim",
        ),
        (mint(algorithm="HS512"), "JWT token is malformed or invalid"),  # not an allowed algorithm
        (
            jwt.encode({"sub": "alice", "exp": int(time.time()) + 300}, None, algorithm="none"),
            "JWT token is malformed or invalid",
        ),
    ],
    ids=[
        "garbage",
        "three-parts",
        "bad-signature",
        "expired",
        "no-sub",
        "no-exp",
        "hs512",
        "alg-none",
    ],
)
def test_invalid_jwt_is_401_with_a_detail(client: Any, token: str, details: str) -> None:
    response = client.post(LOCK_URL, headers=bearer(token))
    envelope(response, 401, "Authentication failed", details)
    assert client.get(LOCK_URL, headers=ALICE).get_json() == UNLOCKED  # nothing was locked


def test_audience_and_issuer_when_configured(make_app: Any) -> None:
    app = make_app(
        identity=False,
        LOCKING_JWT_SECRET=SECRET,
        LOCKING_JWT_AUDIENCE="locks-api",
        LOCKING_JWT_ISSUER="https://auth.example",
    )
    client = app.test_client()
    good = {"aud": "locks-api", "iss": "https://auth.example"}
    envelope(
        client.post(LOCK_URL, headers=bearer(mint(**{**good, "aud": "other-api"}))),
        401,
        "Authentication failed",
        "JWT audience is not accepted",
    )
    envelope(
        client.post(LOCK_URL, headers=bearer(mint(iss="https://auth.example"))),
        401,
        "Authentication failed",
        "JWT token is missing the 'aud' claim",
    )
    envelope(
        client.post(LOCK_URL, headers=bearer(mint(**{**good, "iss": "https://evil.example"}))),
        401,
        "Authentication failed",
        "JWT issuer is not accepted",
    )
    response = client.post(LOCK_URL, headers=bearer(mint(**good)))
    assert response.status_code == 201
    assert response.get_json()["creator"] == "alice"


def test_host_identity_loader_replaces_jwt(make_app: Any) -> None:
    app = make_app()  # the X-User identity loader, no JWT secret
    client = app.test_client()
    envelope(client.post(LOCK_URL), 401, "Authentication failed", "JWT token not found")
    # A bearer token the host's loader does not turn into a user:
    envelope(
        client.post(LOCK_URL, headers=ALICE), 401, "Authentication failed", "No authenticated user"
    )
    response = client.post(LOCK_URL, headers={"X-User": "carol"})
    assert response.status_code == 201
    assert response.get_json()["creator"] == "carol"
    envelope(client.post(LOCK_URL, headers={"X-User": "dave"}), 409, "Conflict", "Locking conflict")


# -- POST / GET / DELETE -------------------------------------------------------------------


def test_post_is_201_with_every_field_of_the_lock_json(client: Any) -> None:
    # The JWT's name claim is the creator's name.
    assert_new_lock(
        lambda: client.post(LOCK_URL, headers=ALICE),
        status=201,
        resource=KEY,
        depth="infinity",
        creator_name="Alice A.",
    )


def test_post_body_and_owner_relock(client: Any) -> None:
    first = client.post(LOCK_URL, headers=ALICE, json={"timeout": 60, "stealable": False})
    assert first.status_code == 201
    assert first.get_json()["timeout"] == 60 and first.get_json()["stealable"] is False
    # The same user with a freshly minted token: same identity, so a refresh (200).
    again = client.post(LOCK_URL, headers=bearer(mint("alice")), json={"timeout": 90})
    assert again.status_code == 200
    assert again.get_json()["token"] == first.get_json()["token"]
    assert again.get_json()["version"] == 1
    assert again.get_json()["timeout"] == 90


def test_post_by_another_user_is_409_locking_conflict(client: Any) -> None:
    lock(client, ALICE)
    response = client.post(LOCK_URL, headers=BOB)
    envelope(response, 409, "Conflict", "Locking conflict")
    assert "Lock-Token" not in response.headers


def test_get_shows_the_token_to_the_owner_only(client: Any) -> None:
    assert client.get(LOCK_URL, headers=ALICE).get_json() == UNLOCKED
    token = lock(client, ALICE)
    mine = client.get(LOCK_URL, headers=ALICE)
    assert mine.status_code == 200
    assert mine.get_json()["token"] == token
    assert set(mine.get_json()) == LOCK_FIELDS | {"token"}
    theirs = client.get(LOCK_URL, headers=BOB)
    assert theirs.status_code == 200
    assert set(theirs.get_json()) == LOCK_FIELDS
    assert theirs.get_json()["creator"] == "alice"
    assert "Lock-Token" not in theirs.headers


def test_delete_is_204_for_the_holder_and_when_unlocked(app: Flask, client: Any) -> None:
    response = client.delete(LOCK_URL, headers=BOB)  # nothing locked
    assert response.status_code == 204 and response.get_data() == b""
    lock(client, ALICE)
    response = client.delete(LOCK_URL, headers=ALICE)
    assert response.status_code == 204 and response.get_data() == b""
    with app.app_context():
        assert api(app).get(KEY) is None


def test_delete_of_another_users_lock_is_409_and_keeps_it(app: Flask, client: Any) -> None:
    lock(client, ALICE)
    envelope(client.delete(LOCK_URL, headers=BOB), 409, "Conflict", "Locking conflict")
    with app.app_context():
        assert api(app).get(KEY) is not None
    # With the token, or forcing a stealable lock, another user may release it.
    token = lock(client, ALICE)
    assert client.delete(LOCK_URL, headers={**BOB, "Lock-Token": token}).status_code == 204
    lock(client, ALICE)
    assert client.delete(LOCK_URL, headers=BOB, json={"force": True}).status_code == 204


@pytest.mark.parametrize("url", [LOCK_URL, LOCK_URL + "/"])
def test_with_and_without_the_trailing_slash(client: Any, url: str) -> None:
    assert client.post(url, headers=ALICE).status_code == 201
    assert client.get(url, headers=ALICE).get_json()["resource"] == KEY
    assert client.delete(url, headers=ALICE).status_code == 204


def test_client_ids_are_integers_written_one_way(client: Any) -> None:
    assert client.post("/api/v2/clients/007/reference/lock", headers=ALICE).get_json()[
        "resource"
    ] == ("/api/v2/clients/7/reference")
    assert client.post("/api/v2/clients/-3/reference/lock", headers=ALICE).status_code == 201
    envelope(client.post("/api/v2/clients/7/reference/lock", headers=BOB), 409, "Conflict")


# -- 403, 404, 405, 400, 413, 500, 503 ----------------------------------------------------


def test_authorizer_refusal_is_403_whatever_the_lock_state(app: Flask, client: Any) -> None:
    lock(client, ALICE)

    @api(app).authorizer
    def authorize(action: str, resource: str, identity: Any) -> bool:
        return identity.id == "alice"

    for method in ("GET", "POST", "DELETE"):
        response = client.open(LOCK_URL, method=method, headers=BOB)
        envelope(response, 403, "Access denied", "Insufficient permissions")
    assert client.delete(LOCK_URL, headers=ALICE).status_code == 204
    envelope(client.post(LOCK_URL, headers=BOB), 403, "Access denied", "Insufficient permissions")


@pytest.mark.parametrize("client_id", ["abc", "1.5", "+1", "%EF%BC%91", "1234567890123456789"])
def test_non_integer_client_id_is_404(client: Any, client_id: str) -> None:
    response = client.post(f"/api/v2/clients/{client_id}/reference/lock", headers=ALICE)
    assert "client_id must be an integer" in envelope(response, 404, "Not found")


def test_non_integer_client_id_without_auth_is_401_first(client: Any) -> None:
    envelope(client.post("/api/v2/clients/abc/reference/lock"), 401, "Authentication failed")


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_other_methods_are_405(client: Any, method: str) -> None:
    response = client.open(LOCK_URL, method=method, headers=ALICE)
    envelope(response, 405, "Method not allowed")
    assert response.headers["Allow"] == "GET, POST, DELETE"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ('{"timeout": ', "not valid JSON"),
        ("[]", "must be a JSON object"),
        ('{"stealable": "yes"}', "stealable must be true or false"),
        ('{"timeout": "abc"}', "timeout must be a whole number"),
        ('{"timeout": true}', "timeout must be a whole number"),
        ('{"timeout": 1.5}', "timeout must be a whole number"),
        ('{"timeout": -1}', "between 1 and"),
        ('{"timeout": 99999999}', "between 1 and"),
        ('{"client": 5}', "Unknown field 'client'"),
    ],
)
def test_bad_bodies_are_400(client: Any, body: str, needle: str) -> None:
    response = client.post(LOCK_URL, headers=ALICE, data=body, content_type="application/json")
    assert needle in envelope(response, 400, "Bad request")
    assert client.get(LOCK_URL, headers=ALICE).get_json() == UNLOCKED


def test_oversized_body_is_413(make_app: Any) -> None:
    app = make_app(identity=False, LOCKING_JWT_SECRET=SECRET, LOCKING_MAX_BODY_BYTES=32)
    response = app.test_client().post(
        LOCK_URL, headers=ALICE, data="{" + " " * 64 + "}", content_type="application/json"
    )
    envelope(response, 413, "Payload too large")


def test_unexpected_error_is_500_with_nothing_internal(app: Flask, client: Any) -> None:
    @api(app).authorizer
    def authorize(action: str, resource: str, identity: Any) -> bool:
        raise RuntimeError("SELECT secret FROM users -- at /srv/app/auth.py line 42")

    response = client.post(LOCK_URL, headers=ALICE)
    envelope(response, 500, "Internal server error")
    text = response.get_data(as_text=True)
    assert "SELECT" not in text and "auth.py" not in text and "Traceback" not in text


def test_unreachable_store_is_503(tmp_path: Any) -> None:
    app = add_reference_routes(unreachable_store_app(tmp_path, LOCKING_JWT_SECRET=SECRET))
    client = app.test_client()
    response = client.post(LOCK_URL, headers=ALICE)
    envelope(response, 503, "Service unavailable")
    assert response.headers["Retry-After"] == "5"
    envelope(client.patch("/api/v2/clients/5/reference"), 503, "Service unavailable")


# -- the guard ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v2/clients/5/reference",
        "/api/v2/clients/5/reference/items/1",
        "/api/v2/clients/05/reference/items/1",
    ],
)
def test_guard_refusals_are_409_locking_conflict(client: Any, path: str) -> None:
    token = lock(client, ALICE)
    envelope(client.patch(path), 409, "Conflict", "Locking conflict")
    envelope(client.patch(path, headers=ALICE), 409, "Conflict", "Locking conflict")  # no token
    envelope(
        client.patch(path, headers={"Lock-Token": "wrong"}), 409, "Conflict", "Locking conflict"
    )
    # One status and body for both refusals; the header tells them apart (docs/dialects.rst).
    assert_refused(client.patch(path), 409, "locked")
    assert_refused(client.patch(path, headers={"Lock-Token": "wrong"}), 409, "stale")
    allowed = client.patch(path, headers={"Lock-Token": token})
    assert allowed.status_code == 200
    assert allowed.get_json()["version"] == 1


def test_guard_stale_token_after_release_is_409(client: Any) -> None:
    token = lock(client, ALICE)
    assert client.delete(LOCK_URL, headers=ALICE).status_code == 204
    stale = client.patch("/api/v2/clients/5/reference/items/1", headers={"Lock-Token": token})
    envelope(stale, 409, "Conflict", "Locking conflict")
    assert_refused(stale, 409, "stale")
    assert client.patch("/api/v2/clients/5/reference/items/1").status_code == 200


def test_guard_leaves_other_clients_alone(client: Any) -> None:
    lock(client, ALICE)
    assert client.patch("/api/v2/clients/6/reference/items/1").status_code == 200


def test_lifecycle_on_every_backend(make_app: Any, database_url: str) -> None:
    app = make_app(identity=False, database_url=database_url, LOCKING_JWT_SECRET=SECRET)
    client = add_reference_routes(app).test_client()
    token = lock(client, ALICE)
    assert client.post(LOCK_URL, headers=BOB).status_code == 409
    assert client.patch("/api/v2/clients/5/reference/items/2").status_code == 409
    assert (
        client.patch(
            "/api/v2/clients/5/reference/items/2", headers={"Lock-Token": token}
        ).status_code
        == 200
    )
    assert client.delete(LOCK_URL, headers=BOB).status_code == 409
    assert client.delete(LOCK_URL, headers=ALICE).status_code == 204
    assert client.get(LOCK_URL, headers=BOB).get_json() == UNLOCKED


# -- configuration -------------------------------------------------------------------------


def test_switched_off(make_app: Any) -> None:
    app = add_reference_routes(
        make_app(identity=False, LOCKING_JWT_SECRET=SECRET, LOCKING_REFERENCE_ENABLED=False)
    )
    client = app.test_client()
    assert client.post(LOCK_URL, headers=ALICE).status_code == 404
    assert "locking_reference" not in app.blueprints
    with app.app_context():
        api(app).acquire(KEY, "alice", depth="infinity")
    response = client.patch("/api/v2/clients/5/reference/items/1")  # the content format now
    assert response.status_code == 403
    assert response.get_json()["error"]["type"] == "Forbidden"


def test_re_prefixed(make_app: Any) -> None:
    app = make_app(identity=False, LOCKING_JWT_SECRET=SECRET, LOCKING_REFERENCE_URL_PREFIX="/ref")
    client = add_reference_routes(app, prefix="/ref").test_client()
    assert client.post(LOCK_URL, headers=ALICE).status_code == 404
    response = client.post("/ref/clients/5/reference/lock", headers=ALICE)
    assert response.status_code == 201
    assert response.get_json()["resource"] == "/ref/clients/5/reference"
    envelope(client.patch("/ref/clients/5/reference/items/1"), 409, "Conflict", "Locking conflict")
    assert client.delete("/ref/clients/5/reference/lock", headers=ALICE).status_code == 204


def test_identity_is_not_leaked_across_requests(client: Any) -> None:
    # The identity is per request: alice's request must not make the next anonymous one alice.
    lock(client, ALICE)
    envelope(client.delete(LOCK_URL), 401, "Authentication failed", "JWT token not found")


def test_content_lock_on_reference_paths_needs_a_caller_too(make_app: Any) -> None:
    # @lock is served on any routed path; on reference data it must not be a way around the
    # reference dialect's authentication.
    app = add_reference_routes(make_app(identity=False, LOCKING_JWT_SECRET=SECRET))
    client = app.test_client()
    response = client.post("/api/v2/clients/5/reference/@lock")
    assert response.status_code == 401
    assert response.get_json()["error"]["type"] == "Unauthorized"
    assert client.get(LOCK_URL, headers=ALICE).get_json() == UNLOCKED
    assert client.post("/api/v2/clients/05/reference/@lock", headers=BOB).status_code == 200
    assert client.get(LOCK_URL, headers=ALICE).get_json()["creator"] == "bob"  # same key
