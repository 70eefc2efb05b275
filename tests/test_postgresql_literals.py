"""PostgreSQL's hot writes send several statements in one driver call
(:meth:`flask_locking.store.driver.Session.together`): any text must come back from the
database exactly as it was given, through the lock row and its event, whatever the way
the values travel (a pipeline today; client-side literals were tried)."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from flask_locking import InvalidInput, Owner
from tests.conftest import AppFactory, backend_url

#: Text an owner field keeps as it is: up to 255 characters, no NUL and no lone surrogate
#: (the engine drops those, as no backend stores them). Quotes, backslashes, ``%``, ``$1``,
#: ``--``, ``;``, newlines and any other Unicode are what the binding must carry through.
TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=255)
#: A path segment: printable text without ``/`` (the key function validates the rest).
SEGMENT = st.text(
    st.characters(exclude_categories=("Cc", "Cs"), exclude_characters="/"), min_size=1,
    max_size=120,
)


@pytest.fixture
def app(make_app: AppFactory, tmp_path: Any) -> Flask:
    return make_app(database_url=backend_url("postgresql", tmp_path))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(segment=SEGMENT, owner_id=TEXT, name=TEXT, url=TEXT, stealable=st.booleans())
@example(segment="o'k\\n %s %(x)s $1 -- /* ; E'", owner_id="'; DROP TABLE x; --",
         name="\\' \\\\ ''", url="a\nb -- c", stealable=False)
@example(segment="李" * 60, owner_id="7", name="\u2603" * 255, url="", stealable=True)
def test_any_text_round_trips_through_a_postgresql_acquisition(
    app: Flask, segment: str, owner_id: str, name: str, url: str, stealable: bool
) -> None:
    locking: Any = app.extensions["locking"].extension
    assume(owner_id.strip() != "")
    with app.app_context():
        try:
            owner = Owner(id=owner_id, name=name or None, url=url or None)
            key = locking._key("/r/" + segment)
        except InvalidInput:
            assume(False)
            return
        events = app.extensions["locking"].engine.events
        start = events.head()
        lock = locking.acquire(key, owner, timeout=60, stealable=stealable)
        # What the RETURNING row gave back is what was sent, and what a later read finds.
        assert (lock.resource, lock.owner, lock.stealable) == (key, owner, stealable)
        again = locking.get(key, owner=owner)
        assert again is not None and (again.resource, again.owner) == (key, owner)
        assert again.token == lock.token
        refreshed = locking.refresh(key, lock.token, timeout=120)
        assert (refreshed.resource, refreshed.owner, refreshed.timeout) == (key, owner, 120)
        assert locking.release(key, token=lock.token) is not None
        assert locking.get(key) is None
        # The events, written in the same transactions, carry the same text.
        written = events.after(start)
        assert [e.event for e in written] == ["acquired", "refreshed", "released"]
        for event in written:
            assert (event.lock.resource, event.lock.owner_id, event.lock.owner_name) == (
                key, owner.id, owner.name
            )
