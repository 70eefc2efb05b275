"""The jobs page (job-lock dialect) and the reference-data page (JWT reference-lock
dialect) in a real browser."""

from __future__ import annotations

from typing import Any

import pytest

from example_app import db
from example_app.models import Client, Job

try:
    from playwright.sync_api import expect
except ImportError:  # the fixtures skip, or fail under CI, and say why
    expect = None

pytestmark = pytest.mark.timeout(120)


def last_request(page: Any) -> Any:
    """The newest entry of the page's request log."""
    return page.locator("#log li").first


def test_jobs_page_locks_saves_and_unlocks(serve: Any, sign_in: Any, shot: Any) -> None:
    live = serve(LOCKING_DEFAULT_TIMEOUT=60)
    alice = sign_in(live, "alice")
    bob = sign_in(live, "bob")
    lock_url = "/api/v1.0/companies/1/jobs/101/lock/"
    job_url = "/api/v1.0/companies/1/jobs/101"

    alice.goto("/jobs/1/101")
    expect(alice.locator("#status")).to_contain_text("Not locked")
    alice.click("#lock")
    expect(last_request(alice)).to_have_text(f"POST {lock_url} → 201")
    expect(alice.locator("#status")).to_contain_text("You hold the lock")
    lock = live.lock("/api/v1.0/companies/1/jobs/101")
    assert lock.owner.name == "Alice" and lock.depth == "infinity"

    bob.goto("/jobs/1/101")
    expect(bob.locator("#status")).to_contain_text("Locked by Alice since")
    bob.select_option("#f-status", "blocked")
    bob.click("#save")
    expect(last_request(bob)).to_have_text(f"PATCH {job_url} → 423 Resource is locked.")
    bob.click("#lock")
    expect(last_request(bob)).to_contain_text(f"POST {lock_url} → 409")
    bob.click("#unlock")
    expect(last_request(bob)).to_contain_text(f"DELETE {lock_url} → 409")
    shot(bob, "1-bob-refused")

    alice.select_option("#f-status", "done")
    alice.fill("#f-notes", "Boiler replaced on Tuesday.")
    alice.click("#save")
    expect(last_request(alice)).to_have_text(f"PATCH {job_url} → 200")
    alice.click("#unlock")
    expect(last_request(alice)).to_have_text(f"DELETE {lock_url} → 204")
    expect(alice.locator("#status")).to_contain_text("Not locked")
    shot(alice, "2-alice-saved-and-unlocked")

    job = live.query(lambda: db.session.get(Job, (1, 101)).to_json())
    assert job["status"] == "done" and job["notes"] == "Boiler replaced on Tuesday."
    assert job["updated_by"] == "Alice"

    bob.click("#lock")
    expect(last_request(bob)).to_have_text(f"POST {lock_url} → 201")
    alice.goto("/jobs")
    expect(alice.locator("table.grid")).to_contain_text("locked by Bob")
    shot(alice, "3-jobs-list")


def test_reference_page_uses_the_bearer_jwt(serve: Any, sign_in: Any, shot: Any) -> None:
    live = serve(LOCKING_DEFAULT_TIMEOUT=60)
    alice = sign_in(live, "alice")
    bob = sign_in(live, "bob")
    lock_url = "/api/v2/clients/1/reference/lock"
    data_url = "/api/v2/clients/1/reference"

    alice.goto("/reference/1")
    expect(alice.locator("#status")).to_contain_text("Not locked")
    alice.click("#lock")
    expect(last_request(alice)).to_have_text(f"POST {lock_url} → 201")
    # The page sends no cookie to the API: the owner comes from the JWT's sub claim.
    lock = live.lock("/api/v2/clients/1/reference")
    assert lock.owner.id == "alice" and lock.owner.name == "Alice"

    bob.goto("/reference/1")
    expect(bob.locator("#status")).to_contain_text("Locked by Alice since")
    bob.fill("#f-reference", "currency: GBP")
    bob.click("#save")
    expect(last_request(bob)).to_contain_text(f"PATCH {data_url} → 409 Conflict")
    shot(bob, "1-bob-conflict")
    anonymous = bob.request.post(live(lock_url), headers={"Cookie": ""})
    assert anonymous.status == 401
    assert anonymous.json()["message"] == "Authentication failed"

    alice.fill("#f-reference", "currency: EUR\npayment terms: 60 days")
    alice.click("#save")
    expect(last_request(alice)).to_have_text(f"PATCH {data_url} → 200")
    alice.click("#unlock")
    expect(last_request(alice)).to_have_text(f"DELETE {lock_url} → 204")
    shot(alice, "2-alice-saved")
    client = live.query(lambda: db.session.get(Client, 1).to_json())
    assert client["reference"] == "currency: EUR\npayment terms: 60 days"
    assert client["updated_by"] == "Alice"
    assert live.lock("/api/v2/clients/1/reference") is None
