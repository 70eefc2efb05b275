"""example_app without a browser: pages, the lock flows its JavaScript relies on, the JWT
reference page, the admin release, and the database set-up."""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from flask import Flask, request
from flask.testing import FlaskClient

from example_app import create_app, db, locking
from example_app.models import Activity, Client, Document, Job

JWT_SECRET = "example-app-jwt-secret-not-a-secret"


@contextlib.contextmanager
def demo_app(tmp_path: Path, **config: Any) -> Iterator[Flask]:
    """The example app in a fresh instance folder; its store and engines closed after."""
    app = create_app({"TESTING": True, **config}, instance_path=str(tmp_path / "instance"))
    try:
        yield app
    finally:
        app.extensions["locking"].close()
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Flask]:
    with demo_app(tmp_path) as app:
        yield app


def form(client: FlaskClient, **fields: str) -> dict[str, str]:
    """Form fields with the session's CSRF token (as a browser posts the demo's forms)."""
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token is not None
    return {"csrf_token": token.group(1), **fields}


def signed_in(app: Flask, user: str | None) -> FlaskClient:
    client = app.test_client()
    if user is not None:
        response = client.post("/login", data=form(client, user=user))
        assert response.status_code == 302
    return client


def doc(app: Flask, slug: str) -> dict[str, Any]:
    with app.app_context():
        return db.session.query(Document).filter_by(slug=slug).one().to_json()  # type: ignore[no-any-return]


def bearer(user: str, *, lifetime: int = 600, secret: str = JWT_SECRET) -> dict[str, str]:
    now = int(time.time())
    token = jwt.encode({"sub": user, "exp": now + lifetime, "iat": now}, secret, algorithm="HS256")
    return {"Authorization": f"Bearer {token}"}


# -- set-up ------------------------------------------------------------------------------


def test_first_start_creates_and_seeds_one_sqlite_file_with_the_lock_table(demo: Flask) -> None:
    path = Path(demo.instance_path) / "example.sqlite3"
    assert path.exists()
    with sqlite3.connect(path) as conn:
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
    assert {"document", "job", "client", "activity", "locking_locks"} <= tables
    # The lock store really uses that file, not a second one.
    with demo.app_context():
        locking.acquire("/docs/welcome", "alice")
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT owner_id FROM locking_locks").fetchall() == [("alice",)]
    assert not (Path(demo.instance_path) / "locking.sqlite3").exists()
    with demo.app_context():
        assert db.session.query(Document).count() == 3
        assert db.session.query(Job).count() == 3
        assert db.session.query(Client).count() == 2


def test_init_db_command_recreates_or_keeps(demo: Flask) -> None:
    alice = signed_in(demo, "alice")
    alice.post("/docs", data=form(alice, title="Scratch"))
    with demo.app_context():
        assert db.session.query(Document).count() == 4
    runner = demo.test_cli_runner()
    kept = runner.invoke(args=["init-db", "--keep"])
    assert kept.exit_code == 0, kept.output
    with demo.app_context():
        assert db.session.query(Document).count() == 4
    fresh = runner.invoke(args=["init-db"])
    assert fresh.exit_code == 0, fresh.output
    assert "Initialised sqlite:///" in fresh.output
    with demo.app_context():
        assert db.session.query(Document).count() == 3
        assert locking.locks() == []


def test_every_page_renders_signed_in_and_out(demo: Flask) -> None:
    anonymous = signed_in(demo, None)
    carol = signed_in(demo, "carol")
    for path in [
        "/docs",
        "/docs/welcome",
        "/locks",
        "/jobs",
        "/jobs/1/101",
        "/reference",
        "/login",
    ]:
        assert anonymous.get(path).status_code == 200, path
        assert carol.get(path).status_code == 200, path
    assert carol.get("/docs/welcome/edit").status_code == 200
    assert carol.get("/reference/1").status_code == 200
    # The editor and the JWT page need a user: anonymous callers are sent to sign in.
    assert anonymous.get("/docs/welcome/edit").headers["Location"].startswith("/login?next=")
    assert anonymous.get("/reference/1").headers["Location"].startswith("/login?next=")
    assert carol.get("/docs/nope").status_code == 404
    assert carol.get("/jobs/1/999").status_code == 404
    assert anonymous.post("/login", data=form(anonymous, user="mallory")).status_code == 400
    page = anonymous.get("/docs").get_data(as_text=True)
    assert "https://" not in page and "http://" not in page  # nothing from the internet


def test_login_redirect_stays_on_this_site(demo: Flask) -> None:
    client = demo.test_client()
    assert (
        client.post("/login", data=form(client, user="bob", next="//evil.example/")).headers[
            "Location"
        ]
        == "/docs"
    )
    assert (
        client.post("/login", data=form(client, user="bob", next="/\\evil.example")).headers[
            "Location"
        ]
        == "/docs"
    )
    assert (
        client.post("/login", data=form(client, user="bob", next="/jobs")).headers["Location"]
        == "/jobs"
    )


# -- documents and the content @lock -----------------------------------------------------


def test_lock_save_with_token_releases_and_records_the_lock_version(demo: Flask) -> None:
    alice = signed_in(demo, "alice")
    bob = signed_in(demo, "bob")
    lock = alice.post("/docs/welcome/@lock", json={"stealable": True}).get_json()
    assert lock["creator_name"] == "Alice" and lock["token"]

    seen = bob.get("/docs/welcome", headers={"Accept": "application/json"}).get_json()
    assert seen["lock"]["creator_name"] == "Alice" and "token" not in seen["lock"]
    assert lock["time"] - 1 <= seen["lock"]["since"] <= lock["time"] + 5
    assert bob.post("/docs/welcome/@lock").status_code == 409
    refused = bob.patch("/docs/welcome", json={"body": "Bob"})
    assert refused.status_code == 403
    assert (
        bob.patch(
            "/docs/welcome", json={"body": "Bob"}, headers={"Lock-Token": "x" * 43}
        ).status_code
        == 412
    )

    saved = alice.patch(
        "/docs/welcome",
        json={"title": "Welcome!", "body": "Hello"},
        headers={"Lock-Token": lock["token"], "Lock-Release": "true"},
    )
    assert saved.status_code == 200, saved.get_json()
    assert saved.headers["Lock-Released"] == "true"
    assert saved.get_json()["document"] == doc(demo, "welcome")
    assert doc(demo, "welcome") | {"updated_at": None} == {
        "slug": "welcome",
        "title": "Welcome!",
        "body": "Hello",
        "revision": 2,
        "updated_at": None,
        "updated_by": "Alice",
        "lock_version": lock["version"],
    }
    assert alice.get("/docs/welcome/@lock").get_json() == {"locked": False, "stealable": True}


def test_a_save_whose_lock_ends_after_the_guard_is_refused_and_writes_nothing(
    tmp_path: Path,
) -> None:
    """The document save holds its lock in its own transaction (issue 16): a lock taken
    over between the guard's check and the save answers 412 and changes nothing."""
    with demo_app(tmp_path) as app:

        @app.before_request  # runs after the guard: the take-over lands inside the gap
        def take_over_in_the_gap() -> None:
            if request.headers.get("X-Take-Over"):
                locking.release("/docs/welcome", owner="bob", force=True)
                locking.acquire("/docs/welcome", "bob")

        alice = signed_in(app, "alice")
        before = doc(app, "welcome")
        token = alice.post("/docs/welcome/@lock").get_json()["token"]
        lost = alice.patch(
            "/docs/welcome",
            json={"body": "stale"},
            headers={"Lock-Token": token, "X-Take-Over": "1"},
        )
        assert lost.status_code == 412
        assert lost.get_json()["error"]["type"] == "PreconditionFailed"
        assert doc(app, "welcome") == before


def test_a_save_needs_a_lock_and_a_valid_body(demo: Flask) -> None:
    alice = signed_in(demo, "alice")
    unlocked = alice.patch("/docs/welcome", json={"body": "no lock"})
    assert unlocked.status_code == 428
    assert "POST /docs/welcome/@lock" in unlocked.get_json()["error"]["message"]
    assert signed_in(demo, None).patch("/docs/welcome", json={"body": "x"}).status_code == 401
    token = alice.post("/docs/welcome/@lock").get_json()["token"]
    headers = {"Lock-Token": token}
    for body, message in [
        ([1, 2], "JSON object"),
        ({"body": 3}, "body must be a str"),
        ({"colour": "red"}, "Unknown fields: colour"),
        ({"title": "  "}, "title must not be empty"),
        ({"body": "x" * 20_001}, "longer than"),
    ]:
        response = alice.patch("/docs/welcome", json=body, headers=headers)
        assert response.status_code == 400, body
        assert message in response.get_json()["error"]["message"]
    assert alice.patch("/docs/missing", json={}).status_code == 404
    assert (
        alice.patch("/docs/missing", json={}, headers=headers).status_code == 412
    )  # not its token
    assert doc(demo, "welcome")["revision"] == 1


def test_take_over_a_stealable_lock_and_the_old_token_is_refused(demo: Flask) -> None:
    alice = signed_in(demo, "alice")
    bob = signed_in(demo, "bob")
    old = alice.post("/docs/welcome/@lock").get_json()["token"]
    assert bob.delete("/docs/welcome/@lock").status_code == 409  # not without force
    assert bob.delete("/docs/welcome/@lock", json={"force": True}).status_code == 200
    new = bob.post("/docs/welcome/@lock").get_json()["token"]
    assert (
        alice.patch("/docs/welcome", json={"body": "A"}, headers={"Lock-Token": old}).status_code
        == 412
    )
    assert (
        alice.patch("/docs/welcome/@lock", headers={"Lock-Token": old}).status_code == 409
    )  # heartbeat
    assert (
        alice.delete("/docs/welcome/@lock", headers={"Lock-Token": old}).status_code == 409
    )  # pagehide
    assert (
        bob.patch("/docs/welcome", json={"body": "B"}, headers={"Lock-Token": new}).status_code
        == 200
    )
    assert doc(demo, "welcome")["body"] == "B"
    with demo.app_context():
        events = [a.event for a in db.session.query(Activity).order_by(Activity.id)]
    assert events == ["acquired", "taken from Alice", "acquired", "write refused (stale)"]


def test_non_stealable_lock_only_the_admin_takes_over(demo: Flask) -> None:
    alice = signed_in(demo, "alice")
    alice.post("/docs/welcome/@lock", json={"stealable": False})
    bob = signed_in(demo, "bob")
    assert bob.delete("/docs/welcome/@lock", json={"force": True}).status_code == 403
    carol = signed_in(demo, "carol")
    assert carol.delete("/docs/welcome/@lock", json={"force": True}).status_code == 200
    # Anonymous visitors may look but not lock.
    anonymous = signed_in(demo, None)
    assert anonymous.get("/docs/welcome/@lock").status_code == 200
    assert anonymous.post("/docs/welcome/@lock").status_code == 403


def test_locks_page_lists_live_locks_and_only_admins_release(demo: Flask) -> None:
    alice = signed_in(demo, "alice")
    alice.post("/docs/welcome/@lock", json={"stealable": False})
    alice.post("/api/v1.0/companies/1/jobs/101/lock/")
    bob, carol = signed_in(demo, "bob"), signed_in(demo, "carol")
    page = bob.get("/locks").get_data(as_text=True)
    assert 'data-resource="/docs/welcome"' in page
    assert 'data-resource="/api/v1.0/companies/1/jobs/101"' in page
    assert "Release</button>" not in page
    assert "Release</button>" in carol.get("/locks").get_data(as_text=True)
    assert bob.post("/locks/release", data=form(bob, resource="/docs/welcome")).status_code == 403
    done = carol.post(
        "/locks/release", data=form(carol, resource="/docs/welcome"), follow_redirects=True
    )
    assert "Released Alice&#39;s lock on /docs/welcome." in done.get_data(as_text=True)
    again = carol.post(
        "/locks/release", data=form(carol, resource="/docs/welcome"), follow_redirects=True
    )
    assert "was not locked any more" in again.get_data(as_text=True)
    bad = carol.post(
        "/locks/release", data=form(carol, resource="no/../good"), follow_redirects=True
    )
    assert bad.status_code == 200 and "Could not release" in bad.get_data(as_text=True)
    with demo.app_context():
        assert [lock.resource for lock in locking.locks()] == ["/api/v1.0/companies/1/jobs/101"]


# -- jobs ------------------------------------------------------------------------------


def test_job_lock_guard_and_save(demo: Flask) -> None:
    alice, bob = signed_in(demo, "alice"), signed_in(demo, "bob")
    url = "/api/v1.0/companies/1/jobs/101"
    created = alice.post(url + "/lock/")
    assert created.status_code == 201
    token = created.headers["Lock-Token"]
    assert alice.post(url + "/lock/").status_code == 200  # the owner again
    assert bob.patch(url, json={"status": "done"}).status_code == 423
    assert (
        bob.patch(url, json={"status": "done"}, headers={"Lock-Token": "nope"}).status_code == 412
    )
    bad = alice.patch(url, json={"status": "finished"}, headers={"Lock-Token": token})
    assert bad.status_code == 400 and "status must be one of" in bad.get_json()["error"]["message"]
    ok = alice.patch(url, json={"status": "done", "notes": "n"}, headers={"Lock-Token": token})
    assert ok.status_code == 200 and ok.get_json()["job"]["status"] == "done"
    assert alice.delete(url + "/lock/").status_code == 204
    assert alice.delete(url + "/lock/").status_code == 404
    assert alice.patch(url, json={"status": "open"}).status_code == 428
    # The app tells the dialect which jobs exist.
    assert alice.post("/api/v1.0/companies/1/jobs/999/lock/").status_code == 404
    assert alice.get("/api/v1.0/companies/1/jobs/999").status_code == 404


# -- reference data (JWT) ---------------------------------------------------------------


def test_reference_lock_with_the_pages_jwt(demo: Flask) -> None:
    carol = signed_in(demo, "carol")
    page = carol.get("/reference/1").get_data(as_text=True)
    minted = page.split('data-jwt="', 1)[1].split('"', 1)[0]
    claims = jwt.decode(minted, JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "carol" and claims["exp"] > time.time()

    api = demo.test_client()  # no session cookie: the JWT alone says who is calling
    url = "/api/v2/clients/1/reference"
    missing = api.post(url + "/lock")
    assert missing.status_code == 401
    body = missing.get_json()
    assert (body["status"], body["code"], body["message"]) == (
        "error",
        401,
        "Authentication failed",
    )
    expired = api.post(url + "/lock", headers=bearer("alice", lifetime=-60))
    assert expired.status_code == 401 and "expired" in expired.get_json()["details"]
    forged = api.post(url + "/lock", headers=bearer("alice", secret="x" * 32))
    assert forged.status_code == 401

    created = api.post(url + "/lock", headers={"Authorization": f"Bearer {minted}"})
    assert created.status_code == 201
    assert created.get_json()["creator"] == "carol"
    token = created.get_json()["token"]
    conflict = api.patch(url, json={"reference": "x"}, headers=bearer("bob"))
    assert conflict.status_code == 409 and conflict.get_json()["message"] == "Conflict"
    assert api.get(url, headers=bearer("bob")).get_json()["lock"]["creator_name"] == "Carol"
    assert api.get(url).status_code == 401  # the host's own API checks the JWT too
    saved = api.patch(
        url, json={"reference": "vat: 9%"}, headers={**bearer("carol"), "Lock-Token": token}
    )
    assert saved.status_code == 200 and saved.get_json()["client"]["updated_by"] == "Carol"
    assert api.delete(url + "/lock", headers=bearer("carol")).status_code == 204
    assert api.patch(url, json={"reference": "y"}, headers=bearer("carol")).status_code == 428
