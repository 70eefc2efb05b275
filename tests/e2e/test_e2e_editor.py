"""The document editor in a real browser: two (or three) users, one lock."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from example_app.models import Document

try:
    from playwright.sync_api import expect
except ImportError:  # the fixtures skip, or fail under CI, and say why
    expect = None

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(120)

LOCKED_BY_ALICE = re.compile(r"Locked by Alice since \d\d:\d\d \(expires in \d+ (s|min)\)")


def document(live: Any, slug: str) -> Document:
    def load() -> Document:
        from example_app import db

        doc = db.session.query(Document).filter_by(slug=slug).one()
        db.session.expunge(doc)
        return doc

    return live.query(load)  # type: ignore[no-any-return]


def test_lock_heartbeat_save_then_the_other_user_edits(live: Any, sign_in: Any, shot: Any) -> None:
    alice = sign_in(live, "alice")
    bob = sign_in(live, "bob")

    alice.goto("/docs/welcome/edit")
    expect(alice.locator("#status")).to_contain_text("You are editing")
    expect(alice.locator("#body")).to_be_editable()
    lock = live.lock("/docs/welcome")
    assert lock is not None and lock.owner.name == "Alice"
    shot(alice, "1-alice-editing")

    bob.goto("/docs/welcome/edit")
    expect(bob.locator("#status")).to_have_text(re.compile(LOCKED_BY_ALICE.pattern))
    expect(bob.locator("#editor")).to_have_attribute("data-stream", "open")  # not polling
    expect(bob.locator("#save")).to_be_disabled()
    expect(bob.locator("#body")).not_to_be_editable()
    expect(bob.locator("#takeover")).to_be_visible()  # stealable by default
    shot(bob, "2-bob-sees-locked")
    # Bob cannot save behind the page's back either: the guard refuses the write.
    bob.goto("/docs/welcome")
    expect(bob.locator("#lock-banner")).to_contain_text("Being edited by Alice since")
    shot(bob, "2b-bob-document-page")
    bob.goto("/docs/welcome/edit")
    expect(bob.locator("#status")).to_contain_text("Locked by Alice")
    refused = bob.request.patch(live("/docs/welcome"), data={"body": "Bob was here"})
    assert refused.status == 403
    assert refused.json()["error"]["message"] == "Resource is locked."

    # The heartbeat keeps Alice's lock alive well past its first timeout: the same grant
    # (version), still live after the instant it would have expired without refreshes.
    alice.wait_for_timeout((live.lock_timeout + 2 * live.heartbeat) * 1000)
    assert time.time() > lock.expires_at
    still = live.lock("/docs/welcome")
    assert still is not None and still.version == lock.version
    assert still.expires_at > lock.expires_at
    assert int(alice.locator("#editor").get_attribute("data-beats") or 0) >= 2
    expect(alice.locator("#status")).to_contain_text("You are editing")
    expect(bob.locator("#status")).to_have_text(re.compile(LOCKED_BY_ALICE.pattern))
    shot(alice, "3-alice-still-editing-after-first-timeout")

    alice.fill("#body", "Alice rewrote the welcome page.")
    alice.click("#save")
    expect(alice).to_have_url(re.compile(r"/docs/welcome\?saved=2$"))
    expect(alice.locator("#saved")).to_be_visible()
    expect(alice.locator("#doc-body")).to_have_text("Alice rewrote the welcome page.")
    assert live.lock("/docs/welcome") is None  # released on save
    shot(alice, "4-alice-saved")

    # Bob's page notices the document is free, shows Alice's text, and lets him edit.
    expect(bob.locator("#status")).to_contain_text("Free — edit now")
    expect(bob.locator("#body")).to_have_value("Alice rewrote the welcome page.")
    shot(bob, "5-bob-sees-free", docs="editor-free.png")
    bob.click("#start")
    expect(bob.locator("#status")).to_contain_text("You are editing")
    bob.fill("#body", "Alice rewrote the welcome page.\n\nBob added a line.")
    bob.click("#save")
    expect(bob).to_have_url(re.compile(r"/docs/welcome\?saved=3$"))
    doc = document(live, "welcome")
    assert doc.body == "Alice rewrote the welcome page.\n\nBob added a line."
    assert doc.updated_by == "Bob" and doc.revision == 3
    assert live.lock("/docs/welcome") is None
    shot(bob, "6-bob-saved")


def test_take_over_is_confirmed_told_at_once_and_the_loser_relocks_keeping_her_text(
    live: Any, sign_in: Any, shot: Any
) -> None:
    alice = sign_in(live, "alice")
    bob = sign_in(live, "bob")

    alice.goto("/docs/release-checklist/edit")
    expect(alice.locator("#status")).to_contain_text("You are editing")
    alice.fill("#body", "Alice's unsaved draft")

    bob.goto("/docs/release-checklist/edit")
    expect(bob.locator("#takeover")).to_be_visible()
    bob.click("#takeover")  # asks first
    expect(bob.locator("#confirm")).to_contain_text("Take over Alice's lock?")
    shot(bob, "0-bob-confirms", docs="editor-confirm-takeover.png")
    bob.click("#takeover-no")
    expect(bob.locator("#confirm")).to_be_hidden()
    assert live.lock("/docs/release-checklist").owner.name == "Alice"
    bob.click("#takeover")
    bob.click("#takeover-yes")
    expect(bob.locator("#status")).to_contain_text("You are editing")
    expect(bob.locator("#message")).to_contain_text("You took over the lock")
    assert live.lock("/docs/release-checklist").owner.name == "Bob"
    shot(bob, "1-bob-took-over")

    # Alice is told at once, with the true reason; Save is off, her text stays.
    status = alice.locator("#status")
    expect(status).to_contain_text("Bob took over your lock")
    expect(status).to_have_class(re.compile("banner-lost"))
    expect(alice.locator("#save")).to_be_disabled()
    expect(alice.locator("#body")).to_have_value("Alice's unsaved draft")
    shot(alice, "2-alice-told-at-once", docs="editor-taken-over.png")

    bob.fill("#body", "Bob's text")
    bob.click("#save")
    expect(bob.locator("#saved")).to_be_visible()
    assert document(live, "release-checklist").body == "Bob's text"

    # The document is free again: Alice locks again and keeps her text, with Bob's
    # saved text shown beside it.
    expect(status).to_contain_text("press Lock again")
    alice.click("#start")
    expect(status).to_contain_text("You are editing")
    expect(alice.locator("#body")).to_have_value("Alice's unsaved draft")
    expect(alice.locator("#theirs")).to_have_value("Bob's text")
    expect(alice.locator("#theirs-label")).to_contain_text("revision 2 by Bob")
    expect(alice.locator("#save")).to_be_enabled()
    shot(alice, "3-alice-relocked-sees-both", docs="editor-relocked.png")
    alice.click("#save")
    expect(alice.locator("#saved")).to_be_visible()
    doc = document(live, "release-checklist")
    assert doc.body == "Alice's unsaved draft" and doc.revision == 3

    # The activity log (fed by the signals) tells the story.
    admin = sign_in(live, "carol")
    admin.goto("/locks")
    expect(admin.locator("#activity")).to_contain_text("taken from Alice")
    shot(admin, "4-activity")


def test_non_stealable_lock_only_an_admin_takes_over_or_releases(
    live: Any, sign_in: Any, shot: Any
) -> None:
    alice = sign_in(live, "alice")
    alice.goto("/docs/meeting-notes")
    alice.check("#no-takeover")
    alice.click("#edit")
    expect(alice.locator("#status")).to_contain_text("Others cannot take it over")
    assert live.lock("/docs/meeting-notes").stealable is False

    bob = sign_in(live, "bob")
    bob.goto("/docs/meeting-notes/edit")
    expect(bob.locator("#status")).to_contain_text("The holder did not allow take-over.")
    expect(bob.locator("#takeover")).to_be_hidden()
    forced = bob.request.delete(live("/docs/meeting-notes/@lock"), data={"force": True})
    assert forced.status == 403
    shot(bob, "1-bob-no-take-over")

    bob.goto("/locks")
    row = bob.locator("tr[data-resource='/docs/meeting-notes']")
    expect(row).to_contain_text("Alice")
    expect(row).to_contain_text("admins only")
    expect(row.locator("button")).to_have_count(0)

    carol = sign_in(live, "carol")
    carol.goto("/docs/meeting-notes/edit")
    expect(carol.locator("#takeover")).to_have_text("Take over (admin)")
    carol.goto("/locks")
    row = carol.locator("tr[data-resource='/docs/meeting-notes']")
    shot(carol, "2-admin-locks-page")
    row.locator("button", has_text="Release").click()
    expect(carol.locator("#locks-message")).to_contain_text(
        "Released Alice's lock on /docs/meeting-notes"
    )
    expect(carol.locator("#no-locks")).to_be_visible()
    assert live.lock("/docs/meeting-notes") is None

    # Alice is told who released her lock.
    expect(alice.locator("#status")).to_contain_text("Carol (admin) released your lock")
    shot(alice, "3-alice-lost-lock")


def test_cancel_and_leaving_the_page_release_the_lock(live: Any, sign_in: Any) -> None:
    alice = sign_in(live, "alice")
    alice.goto("/docs/welcome/edit")
    expect(alice.locator("#status")).to_contain_text("You are editing")
    alice.click("#cancel")
    expect(alice).to_have_url(live("/docs/welcome"))
    assert live.lock("/docs/welcome") is None

    alice.goto("/docs/welcome/edit")
    expect(alice.locator("#status")).to_contain_text("You are editing")
    assert live.lock("/docs/welcome") is not None
    alice.goto("/jobs")  # leaving the page: pagehide sends a keepalive DELETE
    deadline = time.monotonic() + 10
    while live.lock("/docs/welcome") is not None and time.monotonic() < deadline:
        alice.wait_for_timeout(100)
    assert live.lock("/docs/welcome") is None


def test_readme_screenshot(serve: Any, sign_in: Any, shot: Any) -> None:
    """Bob's view of a document Alice is editing, with the default 10-minute lock.

    With ``UPDATE_DOCS_SCREENSHOTS=1`` it also refreshes docs/_static/editor-locked.png.
    """
    live = serve(LOCKING_DEFAULT_TIMEOUT=600, EXAMPLE_HEARTBEAT_SECONDS=60)
    alice = sign_in(live, "alice")
    alice.goto("/docs/welcome/edit")
    expect(alice.locator("#status")).to_contain_text("You are editing")
    bob = sign_in(live, "bob")
    bob.goto("/docs/welcome/edit")
    expect(bob.locator("#status")).to_have_text(
        re.compile(r"Locked by Alice since \d\d:\d\d \(expires in 10 min\)")
    )
    path = shot(bob, "editor-locked")
    if os.environ.get("UPDATE_DOCS_SCREENSHOTS"):
        shutil.copyfile(path, ROOT / "docs" / "_static" / "editor-locked.png")


def test_save_releases_with_delete_when_the_server_does_not_unlock_on_save(
    serve: Any, sign_in: Any
) -> None:
    live = serve(LOCKING_UNLOCK_ON_SAVE=False)
    alice = sign_in(live, "alice")
    alice.goto("/docs/welcome/edit")
    expect(alice.locator("#status")).to_contain_text("You are editing")
    alice.fill("#body", "Saved, then released with DELETE @lock.")
    with alice.expect_request(
        lambda r: r.method == "DELETE" and r.url.endswith("/docs/welcome/@lock")
    ):
        alice.click("#save")
    expect(alice.locator("#saved")).to_be_visible()
    assert live.lock("/docs/welcome") is None
    assert document(live, "welcome").body == "Saved, then released with DELETE @lock."
