"""example_app without a browser: what the live pages rely on (the holder's GET names
their token, the activity log names a JWT writer), slugs, the favicon and the edit link."""

from __future__ import annotations

import re

from flask import Flask
from hypothesis import given
from hypothesis import strategies as st

from example_app import db
from example_app.models import Activity
from example_app.views import slugify
from tests.test_example_app import bearer, demo, signed_in

__all__ = ["demo"]  # the fixture, shared with test_example_app

SLUG = re.compile(r"^[^\W_]+(-[^\W_]+)*$")


@given(st.text(max_size=300))
def test_a_slug_is_words_joined_by_single_dashes(title: str) -> None:
    slug = slugify(title)
    assert slug == "doc" or SLUG.match(slug), slug
    assert len(slug) <= 60 and "--" not in slug
    assert slug == slug.lower()


def test_slug_examples() -> None:
    assert slugify("  Q3 -- plans / draft!!  ") == "q3-plans-draft"
    assert slugify("a_b__c") == "a-b-c"
    assert slugify("---") == slugify("") == "doc"
    assert slugify("x" * 59 + " y") == "x" * 59  # no dash left at the cut


def test_only_the_holders_get_shows_the_token(demo: Flask) -> None:
    alice, bob = signed_in(demo, "alice"), signed_in(demo, "bob")
    job = "/api/v1.0/companies/1/jobs/101"
    token = alice.post(f"{job}/lock/").get_json()["token"]
    assert alice.get(job).get_json()["lock"]["token"] == token
    assert "token" not in bob.get(job).get_json()["lock"]
    assert "token" not in demo.test_client().get(job).get_json()["lock"]

    ref = "/api/v2/clients/1/reference"
    anonymous = demo.test_client()
    token = anonymous.post(f"{ref}/lock", headers=bearer("alice")).get_json()["token"]
    assert anonymous.get(ref, headers=bearer("alice")).get_json()["lock"]["token"] == token
    assert "token" not in anonymous.get(ref, headers=bearer("bob")).get_json()["lock"]


def test_a_refused_jwt_write_is_logged_with_its_author(demo: Flask) -> None:
    client = demo.test_client()
    ref = "/api/v2/clients/1/reference"
    assert client.post(f"{ref}/lock", headers=bearer("alice")).status_code == 201
    refused = client.patch(ref, json={"reference": "x"}, headers=bearer("bob"))
    assert refused.status_code == 409
    with demo.app_context():
        row = db.session.query(Activity).order_by(Activity.id.desc()).first()
        assert row is not None and row.event.startswith("write refused") and row.who == "Bob"


def test_favicon_and_a_clean_edit_link(demo: Flask) -> None:
    alice = signed_in(demo, "alice")
    page = alice.get("/docs/welcome").get_data(as_text=True)
    icon = re.search(r'<link rel="icon" href="([^"]+)"', page)
    assert icon is not None
    with alice.get(icon.group(1)) as served:
        assert served.status_code == 200
    assert 'href="/docs/welcome/edit"' in page and "edit?" not in page.replace(
        "edit?stealable=0", ""
    )
