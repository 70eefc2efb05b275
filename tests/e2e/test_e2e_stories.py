"""The demo never misleads or loses text: tabs sharing one lock, a failing heartbeat,
expiry, the Jobs and Reference pages across reloads, and the small things a new user
trips over (favicon, URLs, slugs)."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from example_app import db
from example_app.models import Client, Document, Job

try:
    from playwright.sync_api import expect
except ImportError:  # the fixtures skip, or fail under CI, and say why
    expect = None

pytestmark = pytest.mark.timeout(120)


def wait_until(page: Any, check: Any, seconds: float = 15) -> bool:
    """Poll ``check()`` (bounded) while the page's timers run."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        page.wait_for_timeout(100)
    return True


RECORD_STATUS = """() => {
  window.__states = [];
  const status = document.getElementById("status");
  new MutationObserver(() => window.__states.push(
      [status.className, status.textContent])).observe(
      status, {childList: true, subtree: true, characterData: true, attributes: true});
}"""


def test_tabs_of_one_user_share_the_lock_and_only_the_last_close_releases_it(
    live: Any, sign_in: Any, shot: Any
) -> None:
    first = sign_in(live, "alice")
    first.goto("/docs/welcome/edit")
    expect(first.locator("#status")).to_contain_text("You are editing")
    version = live.lock("/docs/welcome").version

    second = first.context.new_page()  # same browser, same user
    second.goto("/docs/welcome/edit")
    expect(second.locator("#status")).to_contain_text("You are editing")
    assert live.lock("/docs/welcome").version == version  # one lock, shared

    second.close(run_before_unload=True)
    # The first tab keeps refreshing the same lock after the second one closed.
    beats = int(first.locator("#editor").get_attribute("data-beats") or 0)
    assert wait_until(
        first, lambda: int(first.locator("#editor").get_attribute("data-beats") or 0) >= beats + 2
    )
    lock = live.lock("/docs/welcome")
    assert lock is not None and lock.version == version
    expect(first.locator("#status")).to_contain_text("You are editing")
    shot(first, "first-tab-still-editing")

    # Alice in a second browser shares the lock too, but that browser's tab registry
    # cannot see the first one's: closing the first browser's last tab releases the lock,
    # and the second browser is told why.
    elsewhere = sign_in(live, "alice")
    elsewhere.goto("/docs/welcome/edit")
    expect(elsewhere.locator("#status")).to_contain_text("You are editing")
    expect(elsewhere.locator("#editor")).to_have_attribute("data-stream", "open")

    first.close(run_before_unload=True)  # the last tab: its keepalive DELETE releases
    status = elsewhere.locator("#status")
    expect(status).to_contain_text("released from another of your tabs or windows")
    expect(elsewhere.locator("#save")).to_be_disabled()
    assert live.lock("/docs/welcome") is None


def test_a_failing_heartbeat_stays_visible_and_expiry_never_shows_green(
    live: Any, sign_in: Any, shot: Any
) -> None:
    alice = sign_in(live, "alice")
    alice.goto("/docs/meeting-notes/edit")
    expect(alice.locator("#status")).to_contain_text("You are editing")
    alice.fill("#body", "Typed while the network was down")
    alice.evaluate(RECORD_STATUS)

    def refuse_refresh(route: Any) -> None:
        if route.request.method == "PATCH":
            route.abort()
        else:
            route.continue_()

    alice.route("**/docs/meeting-notes/@lock", refuse_refresh)
    status = alice.locator("#status")
    expect(status).to_contain_text("Could not refresh the lock")
    shot(alice, "1-refresh-failing", docs="editor-refresh-failing.png")
    # The lock runs out: the banner turns red and says so; it never went back to green.
    expect(status).to_contain_text("Your lock expired", timeout=live.lock_timeout * 1000 + 15_000)
    expect(status).to_have_class(re.compile("banner-lost"))
    expect(alice.locator("#save")).to_be_disabled()
    shot(alice, "2-expired", docs="editor-expired.png")
    states = alice.evaluate("window.__states")
    warned = [i for i, (cls, text) in enumerate(states) if "Could not refresh" in text]
    assert warned
    after = states[warned[0] :]
    assert not any("banner-mine" in cls for cls, _ in after), after
    lost = next(i for i, (cls, _) in enumerate(after) if "banner-lost" in cls)
    assert all("Could not refresh" in text for _, text in after[:lost]), after[:lost]

    # Back online: lock again, and the text is still hers.
    alice.unroute("**/docs/meeting-notes/@lock")
    alice.click("#start")
    expect(status).to_contain_text("You are editing")
    expect(alice.locator("#body")).to_have_value("Typed while the network was down")
    alice.click("#save")
    expect(alice.locator("#saved")).to_be_visible()


def test_jobs_page_keeps_typed_text_finds_its_lock_after_reload_and_releases_on_close(
    serve: Any, sign_in: Any, shot: Any
) -> None:
    live = serve(LOCKING_DEFAULT_TIMEOUT=60)
    alice = sign_in(live, "alice")
    alice.goto("/jobs/1/101")
    expect(alice.locator("#status")).to_contain_text("Not locked")
    alice.fill("#f-notes", "Typed before locking")
    alice.click("#lock")
    expect(alice.locator("#status")).to_contain_text("You hold the lock")
    expect(alice.locator("#f-notes")).to_have_value("Typed before locking")

    alice.reload()
    expect(alice.locator("#status")).to_contain_text("You hold the lock")
    alice.fill("#f-notes", "Saved after a reload")
    alice.click("#save")
    expect(alice.locator("#log li").first).to_have_text(
        "PATCH /api/v1.0/companies/1/jobs/101 → 200"
    )
    shot(alice, "job-after-reload", docs="job-after-reload.png")
    job = live.query(lambda: db.session.get(Job, (1, 101)).to_json())
    assert job["notes"] == "Saved after a reload"

    alice.close(run_before_unload=True)
    deadline = time.monotonic() + 10
    while live.lock("/api/v1.0/companies/1/jobs/101") is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert live.lock("/api/v1.0/companies/1/jobs/101") is None


def test_reference_page_keeps_typed_text_and_names_who_was_refused(
    serve: Any, sign_in: Any
) -> None:
    live = serve(LOCKING_DEFAULT_TIMEOUT=60)
    alice = sign_in(live, "alice")
    bob = sign_in(live, "bob")
    alice.goto("/reference/2")
    expect(alice.locator("#status")).to_contain_text("Not locked")
    alice.fill("#f-reference", "currency: CHF")
    alice.click("#lock")
    expect(alice.locator("#status")).to_contain_text("You hold the lock")
    expect(alice.locator("#f-reference")).to_have_value("currency: CHF")
    alice.reload()
    expect(alice.locator("#status")).to_contain_text("You hold the lock")

    bob.goto("/reference/2")
    expect(bob.locator("#status")).to_contain_text("Locked by Alice")
    bob.click("#save")
    expect(bob.locator("#log li").first).to_contain_text("409")
    bob.goto("/locks")
    # The refused JWT write names its author (the bearer token's user), not "—".
    expect(bob.locator("#activity li").first).to_contain_text("Bob write refused")
    alice.fill("#f-reference", "currency: CHF")
    alice.click("#save")
    expect(alice.locator("#log li").first).to_contain_text("→ 200")
    client = live.query(lambda: db.session.get(Client, 2).to_json())
    assert client["reference"] == "currency: CHF"


def test_no_favicon_404_clean_editor_urls_and_tidy_slugs(live: Any, sign_in: Any) -> None:
    alice = sign_in(live, "alice")
    missing: list[str] = []
    alice.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    for path in ["/docs", "/docs/welcome", "/jobs", "/reference", "/locks"]:
        alice.goto(path)
        alice.wait_for_load_state("networkidle")
    alice.goto("/docs/welcome")
    alice.click("#edit")
    expect(alice).to_have_url(live("/docs/welcome/edit"))  # no bare "edit?"
    expect(alice.locator("#status")).to_contain_text("You are editing")
    alice.click("#cancel")
    expect(alice).to_have_url(live("/docs/welcome"))
    alice.goto("/docs/meeting-notes")
    alice.check("#no-takeover")
    alice.click("#edit")
    expect(alice).to_have_url(live("/docs/meeting-notes/edit?stealable=0"))
    expect(alice.locator("#status")).to_contain_text("Others cannot take it over")
    alice.click("#cancel")
    expect(alice).to_have_url(live("/docs/meeting-notes"))

    alice.goto("/docs")
    alice.fill("input[name=title]", "  Q3 -- plans / draft!!  ")
    alice.click("text=Create and edit")
    expect(alice).to_have_url(live("/docs/q3-plans-draft/edit"))
    assert missing == [], missing
    slug = live.query(
        lambda: db.session.query(Document).filter_by(title="Q3 -- plans / draft!!").one().slug
    )
    assert slug == "q3-plans-draft"


def test_locks_page_reads_the_listing_api_and_follows_the_event_stream(
    live: Any, sign_in: Any, shot: Any
) -> None:
    bob = sign_in(live, "bob")
    with bob.expect_response(lambda r: "/@locks?" in r.url and r.status == 200):
        bob.goto("/locks")
    expect(bob.locator("#no-locks")).to_be_visible()
    expect(bob.locator("#live-locks")).to_have_attribute("data-stream", "open")

    alice = sign_in(live, "alice")
    alice.goto("/docs/welcome/edit")
    expect(alice.locator("#status")).to_contain_text("You are editing")
    row = bob.locator("tr[data-resource='/docs/welcome']")  # no reload
    expect(row).to_contain_text("Alice")
    expect(row).to_contain_text("allowed")
    alice.goto("/jobs/1/102")
    alice.click("#lock")
    expect(bob.locator("tr[data-resource='/api/v1.0/companies/1/jobs/102']")).to_contain_text(
        "Alice"
    )
    expect(row).to_have_count(0)  # leaving the editor released the document
    shot(bob, "locks-live", docs="locks-live.png")
    alice.click("#unlock")
    expect(bob.locator("#no-locks")).to_be_visible()
