"""Unlock on save asks the authorizer, and never acts on another request's verified lock."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify, request

from flask_locking.unlock_on_save import RESPONSE_HEADER
from tests.conftest import AppFactory


def lock(app: Flask, user: str, path: str = "/docs/1") -> str:
    response = app.test_client().post(f"{path}/@lock", headers={"X-User": user})
    assert response.status_code == 200, response.json
    return str(response.json["token"])


def is_locked(app: Flask, path: str = "/docs/1") -> bool:
    return bool(app.test_client().get(f"{path}/@lock").json["locked"])


def test_lock_release_asks_the_authorizer_for_unlock(make_app: AppFactory) -> None:
    app = make_app()
    locking = app.extensions["locking"].extension
    asked: list[tuple[str, str, Any]] = []

    @locking.authorizer
    def authorize(action: str, resource: str, identity: Any) -> bool:
        asked.append((action, resource, identity.id if identity else None))
        return not (action == "unlock" and identity is not None and identity.id == "mallory")

    token = lock(app, "mallory")
    client = app.test_client()
    # the same caller is refused unlock on the lock endpoint...
    refused = client.delete("/docs/1/@lock", headers={"X-User": "mallory", "Lock-Token": token})
    assert refused.status_code == 403
    # ...so its save goes through but keeps the lock, and says so
    saved = client.patch(
        "/docs/1",
        json={},
        headers={"X-User": "mallory", "Lock-Token": token, "Lock-Release": "true"},
    )
    assert saved.status_code == 200
    assert saved.headers[RESPONSE_HEADER] == "false"
    assert is_locked(app)
    assert ("unlock", "/docs/1", "mallory") in asked[-2:]
    # an allowed caller still releases on save
    app.extensions["locking"].engine.release("/docs/1", token=token)
    token = lock(app, "alice")
    saved = client.patch(
        "/docs/1", json={}, headers={"X-User": "alice", "Lock-Token": token, "Lock-Release": "true"}
    )
    assert saved.headers[RESPONSE_HEADER] == "true" and not is_locked(app)


def test_a_host_answering_first_never_releases_an_earlier_requests_lock(
    make_app: AppFactory,
) -> None:
    """An app context outliving its requests (a fixture, a script) keeps ``g``: when the
    host's own ``before_request`` answers, the guard does not run, and ``g`` still holds the
    lock verified for an earlier request."""
    app = make_app()

    @app.before_request
    def host_shortcut() -> Response | None:
        if request.headers.get("X-Shortcut"):
            return jsonify(answered="by the host")  # 200, before the extension's guard
        return None

    app.before_request_funcs[None].reverse()  # the host's hook runs first
    token = lock(app, "alice")
    with app.app_context():
        client = app.test_client()
        first = client.patch("/docs/1", json={}, headers={"X-User": "alice", "Lock-Token": token})
        assert first.status_code == 200
        second = client.patch(
            "/docs/1", json={}, headers={"X-User": "eve", "X-Shortcut": "1", "Lock-Release": "true"}
        )
        assert second.status_code == 200 and second.json == {"answered": "by the host"}
        assert RESPONSE_HEADER not in second.headers
    assert is_locked(app), "eve's Lock-Release released alice's lock"
