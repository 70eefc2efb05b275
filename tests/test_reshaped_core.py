"""Promises of the reshaped core that no older test pinned down (each kills a mutant of
``python -m tests.mutation``; see docs/contributing.rst).

* ``current_lock`` belongs to the request the guard verified it for, even when one app
  context spans several requests and a host hook reads it before the guard has run;
* ``locking.exempt(parent)`` exempts the blueprints nested in ``parent`` too;
* ``purge_expired`` sends ``lock_expired`` for each grant it ends when the event log is off;
* a write that Flask redirects (strict slashes) is checked against the key it redirects to.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Flask, jsonify, request

from flask_locking import current_lock
from flask_locking.signals import lock_expired

ALICE = {"X-User": "alice"}
BOB = {"X-User": "bob"}


def test_current_lock_is_never_an_earlier_requests_lock(make_app: Any) -> None:
    """One app context around two requests (a fixture, a script): a host ``before_request``
    that runs ahead of the guard sees no lock in the second request, not the first's."""
    app: Flask = make_app()

    def peek() -> Any:
        if request.headers.get("X-Peek"):
            return jsonify(version=current_lock.version if current_lock else None)
        return None

    # Ahead of the extension's own hook, as a host hook registered before Locking(app) is.
    app.before_request_funcs.setdefault(None, []).insert(0, peek)
    with app.app_context():
        held = app.extensions["locking"].extension.acquire("/docs/1", "alice")
        client = app.test_client()
        written = client.patch("/docs/1", headers={**ALICE, "Lock-Token": held.token})
        assert written.status_code == 200
        assert written.get_json()["version"] == held.version  # verified for that request
        peeked = client.get("/docs/1", headers={"X-Peek": "1"})
        assert peeked.status_code == 200
        assert peeked.get_json() == {"version": None}


def test_exempting_a_parent_blueprint_exempts_its_nested_blueprints(make_app: Any) -> None:
    app = make_app()
    parent, child = Blueprint("parent", __name__), Blueprint("child", __name__)

    @child.route("/docs/<doc_id>/notes", methods=["PATCH"])
    def notes(doc_id: str) -> Any:
        return jsonify(ok=True)

    parent.register_blueprint(child)
    app.extensions["locking"].extension.exempt(parent)
    app.register_blueprint(parent)
    with app.app_context():
        app.extensions["locking"].extension.acquire("/docs/1", "alice", depth="infinity")
    assert app.test_client().patch("/docs/1/notes", headers=BOB).status_code == 200
    assert app.test_client().patch("/docs/1", headers=BOB).status_code == 403


def test_purge_reports_expiries_when_the_event_log_is_off(make_app: Any, database_url: str) -> None:
    app = make_app(database_url=database_url, LOCKING_EVENTS_ENABLED=False)
    locking = app.extensions["locking"].extension
    with app.app_context():
        locking.acquire("/docs/short", "alice", timeout=0.05)
        locking.acquire("/docs/long", "bob", timeout=600)
    time.sleep(0.2)
    expired: list[Any] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        expired.append(kwargs["lock"])

    with app.app_context(), lock_expired.connected_to(receiver, sender=app):
        assert locking.purge_expired() == 1
        assert locking.purge_expired() == 0
    assert [lock.resource for lock in expired] == ["/docs/short"]


def test_a_redirected_write_is_checked_against_the_key_it_redirects_to(make_app: Any) -> None:
    """``PATCH /notes/007`` redirects (strict slashes) to the rule of ``/notes/7/``: the
    guard refuses it as a write to the locked ``/notes/7``, not as one to ``/notes/007``."""
    app = make_app()

    @app.route("/notes/<int:n>/", methods=["PATCH"])
    def note(n: int) -> Any:
        return jsonify(n=n)

    with app.app_context():
        held = app.extensions["locking"].extension.acquire("/notes/7", "alice")
    assert held.resource == "/notes/7"
    assert app.test_client().patch("/notes/007", headers=BOB).status_code in (403, 423)
