"""Volto's lock flow, replayed over HTTP as Volto makes it, in both modes of
``LOCKING_CONTENT_COMPAT`` and on every backend.

What Volto does (repository plone/volto, ``packages/volto/src``):

* ``components/manage/Edit/Edit.jsx``: the edit page's loader GETs the content and, when
  ``content.lock`` exists, dispatches ``lockContent`` (``POST <url>/@lock``, no body). Save
  (``onSubmit``) PATCHes the content with ``Lock-Token: content.lock.token`` when it has a
  token, and never refreshes the lock. Leaving (``componentWillUnmount``) dispatches
  ``unlockContent`` when ``content.lock.locked``: ``DELETE <url>/@lock`` with the body ``{}``.
* ``actions/content/content.js``: those requests; Volto's API middleware turns a response
  it rejects (any non-2xx) into the ``<TYPE>_FAIL`` action, a 2xx into ``<TYPE>_SUCCESS``.
* ``reducers/content/content.js``: ``LOCK_CONTENT_SUCCESS`` / ``UNLOCK_CONTENT_SUCCESS``
  replace ``data.lock`` with the answer; ``GET``/``LOCK``/``UNLOCK`` ``_FAIL`` set
  ``data: null`` (the edit form loses its content); ``UPDATE_CONTENT_FAIL`` keeps ``data``
  and records the error.
* ``@plone/types`` ``services/lock.d.ts``: the lock answer's fields and types.

:class:`Volto` models one browser session by those rules; the tests assert that in plone
mode no step yields a failure action, and which steps fail in strict mode (the differences
``docs/dialects.rst`` documents).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from helpers.plone_host import create_plone_host

MODES = ["strict", "plone"]
DOC = "/plone/doc1"
#: @plone/types CreateLockResponse: each field and its TypeScript type.
CREATE_LOCK_RESPONSE = {
    "created": str,
    "creator": str,
    "creator_name": str,
    "creator_url": str,
    "locked": bool,
    "name": str,
    "stealable": bool,
    "time": (int, float),
    "timeout": int,
    "token": str,
}
#: @plone/types LockInfo.
LOCK_INFO = {"locked": bool, "stealable": bool}


@dataclass
class Volto:
    """One user's Volto session on one content item: the requests Volto's actions make and
    the content reducer's state after each."""

    client: Any
    user: str
    url: str = DOC
    data: dict[str, Any] | None = None
    update_error: int | None = None
    #: Every dispatched request action: (user, action type, HTTP status, "SUCCESS" | "FAIL").
    actions: list[tuple[str, str, int, str]] = field(default_factory=list)

    def _request(self, action: str, method: str, path: str, **kwargs: Any) -> Any:
        response = self.client.open(
            path,
            method=method,
            headers={"X-User": self.user, **kwargs.pop("headers", {})},
            **kwargs,
        )
        outcome = (
            "SUCCESS" if 200 <= response.status_code < 300 else "FAIL"
        )  # superagent rejects the rest
        self.actions.append((self.user, action, response.status_code, outcome))
        result = response.get_json(silent=True)
        # The content reducer.
        if outcome == "FAIL":
            if action == "UPDATE_CONTENT":
                self.update_error = response.status_code
            else:
                self.data = None
        elif action == "GET_CONTENT":
            self.data = result
        elif action in ("LOCK_CONTENT", "UNLOCK_CONTENT"):
            self.data = {**(self.data or {}), "lock": {**(result or {})}}
        return response

    def open_edit(self) -> None:
        """Edit.jsx asyncConnect ``content``: getContent, then lockContent if ``content.lock``."""
        response = self._request("GET_CONTENT", "GET", self.url)
        content = response.get_json(silent=True) if response.status_code == 200 else None
        if content is not None and content.get("lock") is not None:
            self._request("LOCK_CONTENT", "POST", f"{self.url}/@lock")

    def save(self, title: str) -> None:
        """Edit.jsx ``onSubmit``: updateContent with the lock token Volto holds, if any."""
        token = ((self.data or {}).get("lock") or {}).get("token")
        headers = {"Lock-Token": token} if token else {}
        self._request("UPDATE_CONTENT", "PATCH", self.url, json={"title": title}, headers=headers)

    def leave(self) -> None:
        """Edit.jsx ``componentWillUnmount``: unlockContent when ``content.lock.locked``."""
        if ((self.data or {}).get("lock") or {}).get("locked"):
            self._request("UNLOCK_CONTENT", "DELETE", f"{self.url}/@lock", json={})

    @property
    def lock(self) -> dict[str, Any]:
        return dict(((self.data or {}).get("lock")) or {})


def failures(*sessions: Volto) -> list[tuple[str, str, int]]:
    return [
        (u, a, s)
        for session in sessions
        for (u, a, s, outcome) in session.actions
        if outcome == "FAIL"
    ]


@pytest.fixture
def hosts(tmp_path: Path, table_name: str, database_url: str) -> Iterator[Any]:
    """Build host apps on this backend; apps built in one test share its lock store and its
    content, like the processes of one site."""
    apps: list[Flask] = []
    titles = {"doc1": "My Document"}

    def factory(mode: str, **config: Any) -> Flask:
        app = create_plone_host(
            str(tmp_path / f"instance{len(apps)}"),
            mode,
            titles=titles,
            LOCKING_TABLE_NAME=table_name,
            LOCKING_DATABASE_URI=database_url,
            **config,
        )
        apps.append(app)
        return app

    factory.titles = titles  # type: ignore[attr-defined]
    yield factory
    for app in apps:
        app.extensions["locking"].close()
    if not database_url.startswith("sqlite"):
        from conftest import drop_tables

        drop_tables(database_url, table_name)


def wait_until_unlocked(client: Any) -> None:
    """Poll until the lock has expired on the database's clock (bounded)."""
    for _ in range(400):
        if not client.get(f"{DOC}/@lock").get_json()["locked"]:
            return
        time.sleep(0.025)
    pytest.fail("the short lock never expired")


def assert_types(body: dict[str, Any], declared: dict[str, Any]) -> None:
    for key, kind in declared.items():
        assert isinstance(body[key], kind) and not (kind is int and isinstance(body[key], bool)), (
            key,
            body[key],
        )


@pytest.mark.parametrize("mode", MODES)
def test_open_edit_save_leave(hosts: Any, mode: str) -> None:
    """The everyday flow: no failure in either mode; the lock answer has @plone/types'
    types in plone mode (creator_url a string even for a bare id)."""
    client = hosts(mode).test_client()
    carol = Volto(client, "carol")  # a bare id: creator_url has no URL to show
    carol.open_edit()
    assert carol.lock["locked"] is True and carol.lock["token"]
    if mode == "plone":
        assert_types(carol.lock, CREATE_LOCK_RESPONSE)
    carol.save("Edited")
    carol.leave()
    assert failures(carol) == []
    assert [a for _, a, _, _ in carol.actions] == [
        "GET_CONTENT",
        "LOCK_CONTENT",
        "UPDATE_CONTENT",
        "UNLOCK_CONTENT",
    ]
    assert hosts.titles["doc1"] == "Edited"
    assert client.get(f"{DOC}/@lock").get_json() == {"locked": False, "stealable": True}
    assert_types(carol.lock, LOCK_INFO)


@pytest.mark.parametrize("mode", MODES)
def test_a_second_user_opens_a_locked_item(hosts: Any, mode: str) -> None:
    """Bob opens and leaves the editor while Alice edits. Plone mode: no failure, Bob's form
    keeps its content, Alice's lock survives his leaving and her save goes through. Strict:
    Bob's POST is a 409, which Volto's reducer turns into ``data: null``."""
    client = hosts(mode).test_client()
    alice, bob = Volto(client, "admin"), Volto(client, "bob")
    alice.open_edit()
    bob.open_edit()
    if mode == "plone":
        assert bob.data is not None and bob.data["title"] == "My Document"
        assert bob.lock["locked"] is True and bob.lock["creator"] == "admin"
        assert "token" not in bob.lock  # never shown to a non-owner
    else:
        assert bob.data is None  # the edit form lost its content
    bob.leave()
    assert client.get(f"{DOC}/@lock").get_json()["creator"] == "admin"  # still Alice's
    alice.save("Alice's text")
    alice.leave()
    assert hosts.titles["doc1"] == "Alice's text"
    expected = [] if mode == "plone" else [("bob", "LOCK_CONTENT", 409)]
    assert failures(alice, bob) == expected
    if mode == "plone":  # Bob's leaving was a DELETE that answered the lock still held
        assert ("bob", "UNLOCK_CONTENT", 200, "SUCCESS") in bob.actions


@pytest.mark.parametrize("mode", MODES)
def test_a_second_users_save_is_refused_in_both_modes(hosts: Any, mode: str) -> None:
    """Volto would send Bob's save with ``content.lock.token``; he never gets one, so the
    guard refuses it (403) in both modes. (Plone shows the token to every viewer, so there
    Bob's save would overwrite Alice's work: the documented token-secrecy difference.)"""
    client = hosts(mode).test_client()
    alice, bob = Volto(client, "admin"), Volto(client, "bob")
    alice.open_edit()
    bob.open_edit()
    bob.data = bob.data or {"lock": {}}  # strict: Volto would show no form at all; try anyway
    bob.save("Bob's text")
    assert bob.actions[-1][1:] == ("UPDATE_CONTENT", 403, "FAIL")
    assert hosts.titles["doc1"] == "My Document"


@pytest.mark.parametrize("mode", MODES)
def test_an_edit_that_outlasts_the_timeout(hosts: Any, mode: str) -> None:
    """Volto never refreshes: the lock expires while Alice types, and she saves with her old
    token. Nobody holds the item, so nobody's work can be lost: plone mode lets the save
    through; strict refuses it (412), which Volto shows as a failed save."""
    client = hosts(mode, LOCKING_DEFAULT_TIMEOUT=0.5).test_client()
    alice = Volto(client, "admin")
    alice.open_edit()
    assert alice.lock["token"]
    wait_until_unlocked(client)
    alice.save("Late text")
    alice.leave()
    if mode == "plone":
        assert failures(alice) == []
        assert hosts.titles["doc1"] == "Late text"
    else:
        assert failures(alice) == [("admin", "UPDATE_CONTENT", 412)]
        assert hosts.titles["doc1"] == "My Document"


@pytest.mark.parametrize("mode", MODES)
def test_an_outlasting_edit_never_overwrites_the_next_holder(hosts: Any, mode: str) -> None:
    """Alice's lock expires and Bob opens the editor and locks the item: her old token is
    refused in both modes (412), so Bob's work is never overwritten by a stale copy."""
    short = hosts(mode, LOCKING_DEFAULT_TIMEOUT=0.5).test_client()
    regular = hosts(mode).test_client()  # same store: another process of the same site
    alice, bob = Volto(short, "admin"), Volto(regular, "bob")
    alice.open_edit()
    wait_until_unlocked(short)
    bob.open_edit()
    assert bob.lock["creator"] == "bob" and bob.lock["token"]
    alice.save("Alice's stale text")
    alice.leave()  # Volto still thinks it holds a lock: an unlock by a non-owner, no force
    assert bob.lock["locked"] and client_lock(regular)["creator"] == "bob"  # Bob's, still
    bob.save("Bob's text")
    bob.leave()
    assert hosts.titles["doc1"] == "Bob's text"
    expected = [("admin", "UPDATE_CONTENT", 412)]
    if mode == "strict":
        expected.append(("admin", "UNLOCK_CONTENT", 409))
    assert failures(alice, bob) == expected


def client_lock(client: Any) -> dict[str, Any]:
    return client.get(f"{DOC}/@lock").get_json()  # type: ignore[no-any-return]
