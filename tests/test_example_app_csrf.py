"""The demo's HTML forms carry a CSRF token; a form posted without this session's token (a
cross-site form riding on the user's cookie) is refused before the view runs."""

from __future__ import annotations

from flask import Flask
from test_example_app import demo, form, signed_in

__all__ = ["demo"]  # the fixture, shared with test_example_app


def test_sign_in_without_the_token_is_refused(demo: Flask) -> None:
    client = demo.test_client()
    refused = client.post("/login", data={"user": "alice"})
    assert refused.status_code == 400
    assert "CSRF" in refused.get_data(as_text=True)
    assert 'id="current-user"' not in client.get("/docs").get_data(as_text=True)
    # a token from another session does not do either
    other = demo.test_client()
    assert client.post("/login", data=form(other, user="alice")).status_code == 400
    assert client.post("/login", data=form(client, user="alice")).status_code == 302
    assert 'id="current-user"' in client.get("/docs").get_data(as_text=True)


def test_admin_release_without_the_token_is_refused(demo: Flask) -> None:
    alice, carol = signed_in(demo, "alice"), signed_in(demo, "carol")
    assert alice.post("/docs/welcome/@lock", json={}).status_code == 200
    assert carol.post("/locks/release", data={"resource": "/docs/welcome"}).status_code == 400
    assert alice.get("/docs/welcome/@lock").get_json()["locked"] is True
    released = carol.post("/locks/release", data=form(carol, resource="/docs/welcome"))
    assert released.status_code == 302
    assert alice.get("/docs/welcome/@lock").get_json()["locked"] is False


def test_sign_out_and_new_document_need_the_token(demo: Flask) -> None:
    alice = signed_in(demo, "alice")
    assert alice.post("/docs", data={"title": "Sneaky"}).status_code == 400
    assert alice.post("/logout").status_code == 400
    assert 'id="current-user"' in alice.get("/docs").get_data(as_text=True)
    assert alice.post("/logout", data=form(alice)).status_code == 302


def test_the_pages_json_calls_need_no_form_token(demo: Flask) -> None:
    """The editor's script locks and saves with JSON (same-origin fetch): unchanged."""
    alice = signed_in(demo, "alice")
    lock = alice.post("/docs/welcome/@lock", json={"stealable": True})
    assert lock.status_code == 200
    saved = alice.patch(
        "/docs/welcome",
        json={"title": "Welcome", "body": "Edited."},
        headers={"Lock-Token": lock.get_json()["token"], "Lock-Release": "true"},
    )
    assert saved.status_code == 200 and saved.headers["Lock-Released"] == "true"
