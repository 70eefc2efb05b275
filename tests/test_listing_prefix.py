"""The ``prefix`` of ``GET /@locks`` and ``GET /@locks/events``: the listing accepts exactly
the prefixes a resource key can lie within, answers 400 to the rest, and lists exactly the
locks within an accepted prefix. A request sees its own namespace only (the app here has
none: a prefix naming another namespace, ``[h]/...``, is a 400 too; see
tests/test_listing_tenants.py).

A segment ending in a dot (``/docs/a.``) is a valid key segment: only ``.`` and ``..``
segments are refused, so the lock endpoints lock ``/docs/a.`` and the listing filters by it.
"""

from __future__ import annotations

import re

from flask import Flask
from helpers.sse import TestStream
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from flask_locking import Locking
from flask_locking.openapi import build_spec
from tests.conftest import AppFactory

#: Keys held in the property test: dotted and spaced segments, neighbours in byte order,
#: a namespace, and a key of the longest length a key may have.
KEYS = [
    "/",
    "/docs",
    "/docs/a",
    "/docs/a.",
    "/docs/a./b",
    "/docs/a.b",
    "/docs/a..",
    "/docs/a b",
    "/docs/ab",
    "/docs/a0",
    "/[h",
    "[h]/",
    "[h]/docs/a",
    "[h]/docs/a.",
    "/" + "l" * 511,
]

PREFIXES = st.one_of(
    st.text(alphabet="/.a b[]hl0\x00\x7f%é", max_size=16),
    st.sampled_from(KEYS).flatmap(
        lambda key: st.sampled_from(
            [key, key + "/", "/" + key, key + "/.", key + "/..", key + " ", key + ".", key + "/x"]
        )
    ),
    st.sampled_from(["/" + "l" * 512, "//" + "l" * 511, "l" * 511, "l" * 512, "/a/" * 300]),
)


def _oracle(text: str) -> tuple[str, list[str]] | None:
    """``(namespace, segments)`` of the key ``text`` names, or ``None`` when no lockable key
    can lie within it (written from the contract, not from the code under test)."""
    space, path = "", text
    if text.startswith("[") and "]" in text:
        end = text.index("]") + 1
        space, path = text[:end], text[end:]
    segments = [s for s in path.split("/") if s]
    key = space + "/" + "/".join(segments)
    if (
        any(s in (".", "..") or s.endswith(" ") for s in segments)
        or len(key) > 512
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in key)
    ):
        return None
    return space, segments


def _within(key: str, prefix: tuple[str, list[str]]) -> bool:
    space, segments = _oracle(key) or ("?", [])
    return space == prefix[0] and segments[: len(prefix[1])] == prefix[1]


def _hold_keys(app: Flask) -> None:
    locking: Locking = app.extensions["locking"].extension
    with app.app_context():
        if not locking.locks():
            for key in KEYS:
                locking.acquire(key, "alice")


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(prefix=PREFIXES)
@example(prefix="/")  # the root of the default namespace: no "[h]/..." key below it
@example(prefix="/docs/a.")
@example(prefix="[].")  # namespace-shaped, with a "." segment: refused
@example(prefix="/" + "l" * 511)  # a prefix as long as a key may be
def test_listing_prefix_lists_exactly_the_locks_within_it(app: Flask, prefix: str) -> None:
    _hold_keys(app)
    response = app.test_client().get("/@locks", query_string={"prefix": prefix, "limit": 100})
    wanted = _oracle(prefix) if prefix else ("", [])
    foreign = wanted is not None and wanted[0] != ""  # another namespace than the request's
    schema = next(
        p["schema"] for p in build_spec(app)["paths"]["/@locks"]["get"]["parameters"]
        if p["name"] == "prefix"
    )
    allowed = re.search(schema["pattern"], prefix) and len(prefix) <= schema["maxLength"]
    if allowed and wanted is not None and not foreign:
        # What the document allows is accepted (its pattern is looser than the contract for
        # namespace-shaped texts such as "[].", which the server refuses: a 400 below).
        assert response.status_code == 200, prefix
    if wanted is None or foreign:
        assert response.status_code == 400, (prefix, response.json)
        message = response.json["error"]["message"]
        assert "prefix" in message, message  # says which argument to fix
        return
    assert response.status_code == 200, (prefix, response.json)
    listed = [item["resource"] for item in response.json["items"]]
    own = [key for key in KEYS if not key.startswith("[")]  # the default namespace's
    expected = own if not prefix else [k for k in own if _within(k, wanted)]
    assert sorted(listed) == sorted(expected), prefix


def test_the_events_stream_parses_the_prefix_as_the_listing(app: Flask) -> None:
    client = app.test_client()
    for prefix in ("/docs/.", "/docs/a ", "/" + "l" * 512, "/a\x00"):
        listed = client.get("/@locks", query_string={"prefix": prefix})
        streamed = client.get("/@locks/events", query_string={"prefix": prefix})
        assert listed.status_code == streamed.status_code == 400
        assert streamed.json == listed.json
    assert client.get("/@locks/events", query_string={"prefix": "/" + "l" * 511}).status_code == 200


def test_a_segment_ending_in_a_dot_is_a_key_everywhere(make_app: AppFactory) -> None:
    """``/docs/a.`` is locked by the lock endpoint, listed and streamed under its own prefix,
    and not under ``/docs/a`` (another key)."""
    app = make_app(LOCKING_EVENTS_HEARTBEAT=0.1, LOCKING_EVENTS_POLL_INTERVAL=0.05)
    client = app.test_client()
    stream = TestStream(client, "/@locks/events?prefix=/docs/a.")
    assert stream.status == 200
    locked = client.post("/docs/a./@lock", headers={"X-User": "alice"})
    assert locked.status_code == 200 and locked.json["resource"] == "/docs/a."
    client.post("/docs/a/@lock", headers={"X-User": "alice"})  # not within /docs/a.
    listed = client.get("/@locks", query_string={"prefix": "/docs/a."}).json["items"]
    assert [item["resource"] for item in listed] == ["/docs/a."]
    assert [item["resource"] for item in client.get("/@locks?prefix=/docs/a").json["items"]] == [
        "/docs/a"
    ]
    events = stream.read(1)
    stream.close()
    assert [event.data["resource"] for event in events] == ["/docs/a."]
    path = build_spec(app)["paths"]["/{path}/@lock"]["parameters"][0]["schema"]["pattern"]
    assert re.search(path, "docs/a.") and not re.search(path, "docs/.")  # the document agrees
    refused = client.post("/docs/./@lock", headers={"X-User": "alice"})
    assert refused.status_code == 400  # only "." and ".." segments are refused


def test_root_prefix_is_the_default_namespace_in_the_listing_and_the_stream(app: Flask) -> None:
    """``prefix=/`` selects the default namespace, as a depth-infinity lock on ``/`` covers
    it: the listing and the event stream agree."""
    app.config.update(LOCKING_EVENTS_HEARTBEAT=0.1)
    locking: Locking = app.extensions["locking"].extension
    client = app.test_client()
    stream = TestStream(client, "/@locks/events?prefix=/")
    with app.app_context():
        locking.acquire("[tenant]/docs/1", "alice")
        locking.acquire("/docs/1", "alice")
        assert [lock.resource for lock in locking.locks("/")] == ["/docs/1"]
    events = stream.read(2, timeout=2)
    stream.close()
    assert [event.data["resource"] for event in events] == ["/docs/1"]
    listed = client.get("/@locks?prefix=/").json["items"]
    assert [item["resource"] for item in listed] == ["/docs/1"]
