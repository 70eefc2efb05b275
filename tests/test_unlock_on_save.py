"""Unlock on save: ``Lock-Release: true`` on a guarded write releases only after a 2xx."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask, abort, jsonify, request

from flask_locking.signals import lock_released
from tests.conftest import AppFactory


def build(make_app: AppFactory, **config: Any) -> Flask:
    app = make_app(**config)

    @app.route("/things/<thing>", methods=["GET", "PATCH"])
    def thing(thing: str) -> Any:
        outcome = request.args.get("outcome", "ok")
        if outcome == "raise":
            raise RuntimeError("the save failed")
        if outcome == "steal":
            # someone else takes the lock over while this request is running
            locking = app.extensions["locking"].extension
            locking.release(f"/things/{thing}", owner="bob", force=True)
            locking.acquire(f"/things/{thing}", "bob")
        if outcome.isdigit():
            abort(int(outcome))
        return jsonify(saved=thing)

    return app


def lock(app: Flask, path: str = "/things/1", user: str = "alice", **body: Any) -> str:
    response = app.test_client().post(f"{path}/@lock", json=body, headers={"X-User": user})
    assert response.status_code == 200, response.json
    return str(response.json["token"])


def locked(app: Flask, path: str = "/things/1") -> Any:
    return app.test_client().get(f"{path}/@lock").json


def save(
    app: Flask,
    token: str | None,
    *,
    release: str | None = "true",
    outcome: str = "ok",
    path: str = "/things/1",
) -> Any:
    headers = {}
    if token is not None:
        headers["Lock-Token"] = token
    if release is not None:
        headers["Lock-Release"] = release
    return app.test_client().patch(f"{path}?outcome={outcome}", json={}, headers=headers)


def test_2xx_save_releases(make_app: AppFactory) -> None:
    app = build(make_app)
    token = lock(app)
    events: list[Any] = []
    with lock_released.connected_to(lambda sender, **kw: events.append(kw["lock"]), sender=app):
        response = save(app, token)
    assert response.status_code == 200 and response.json == {"saved": "1"}
    assert response.headers["Lock-Released"] == "true"
    assert locked(app) == {"locked": False, "stealable": True}
    assert [event.resource for event in events] == ["/things/1"]
    # the token opens nothing any more: a second save with it is stale
    assert save(app, token).status_code == 412


def test_header_is_case_insensitive_and_webdav_token_form_works(make_app: AppFactory) -> None:
    app = build(make_app)
    token = lock(app)
    response = save(app, f"<{token}>", release="TRUE")
    assert response.status_code == 200 and response.headers["Lock-Released"] == "true"
    assert locked(app)["locked"] is False


@pytest.mark.parametrize("release", [None, "false", "1", "yes", ""])
def test_without_the_header_the_lock_is_kept(make_app: AppFactory, release: str | None) -> None:
    app = build(make_app)
    token = lock(app)
    response = save(app, token, release=release)
    assert response.status_code == 200
    assert "Lock-Released" not in response.headers
    assert locked(app)["locked"] is True
    assert save(app, token, release=None).status_code == 200


@pytest.mark.parametrize("outcome", ["400", "409", "422", "500"])
def test_failed_save_keeps_the_lock(make_app: AppFactory, outcome: str) -> None:
    app = build(make_app)
    token = lock(app)
    response = save(app, token, outcome=outcome)
    assert response.status_code == int(outcome)
    assert response.headers["Lock-Released"] == "false"
    assert locked(app)["locked"] is True
    # still the same lock: the token still opens it
    assert save(app, token, release=None).status_code == 200


def test_exception_in_the_view_keeps_the_lock(make_app: AppFactory) -> None:
    app = build(make_app, PROPAGATE_EXCEPTIONS=False)
    token = lock(app)
    response = save(app, token, outcome="raise")
    assert response.status_code == 500
    assert locked(app)["locked"] is True
    assert save(app, token).headers["Lock-Released"] == "true"


def test_exception_propagated_in_testing_keeps_the_lock(make_app: AppFactory) -> None:
    app = build(make_app)  # TESTING: the exception reaches the caller
    token = lock(app)
    with pytest.raises(RuntimeError):
        save(app, token, outcome="raise")
    assert locked(app)["locked"] is True


def test_no_or_wrong_token_is_refused_and_keeps_the_lock(make_app: AppFactory) -> None:
    app = build(make_app)
    lock(app)
    assert save(app, None).status_code == 403
    assert save(app, "not-the-token").status_code == 412
    assert locked(app)["locked"] is True


def test_unlocked_resource_is_untouched(make_app: AppFactory) -> None:
    app = build(make_app)
    response = save(app, None)
    assert response.status_code == 200 and "Lock-Released" not in response.headers


def test_depth_infinity_lock_is_the_one_released(make_app: AppFactory) -> None:
    app = build(make_app)
    with app.app_context():
        token = (
            app.extensions["locking"].extension.acquire("/things", "alice", depth="infinity").token
        )
    response = save(app, token, path="/things/7")
    assert response.status_code == 200 and response.headers["Lock-Released"] == "true"
    with app.app_context():
        assert app.extensions["locking"].extension.get("/things") is None


def test_lock_taken_over_during_the_save_is_not_released(make_app: AppFactory) -> None:
    app = build(make_app)
    token = lock(app)
    response = save(app, token, outcome="steal")
    assert response.status_code == 200
    assert response.headers["Lock-Released"] == "false"
    holder = locked(app)
    assert holder["locked"] is True and holder["creator"] == "bob"


def test_can_be_switched_off(make_app: AppFactory) -> None:
    app = build(make_app, LOCKING_UNLOCK_ON_SAVE=False)
    token = lock(app)
    response = save(app, token)
    assert response.status_code == 200 and "Lock-Released" not in response.headers
    assert locked(app)["locked"] is True
