"""The Python API on the extension object (docs/locks.rst), on every backend."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask

from flask_locking import (
    InvalidInput,
    InvalidResource,
    InvalidTimeout,
    Lock,
    LockConflict,
    LockingError,
    LockNotHeld,
    LockPermissionDenied,
    Owner,
)


@pytest.fixture
def app(make_app: Any, database_url: str) -> Flask:
    return make_app(database_url=database_url)


@pytest.fixture
def locking(app: Flask) -> Iterator[Any]:
    """The app's :class:`Locking`, inside an app context."""
    with app.app_context():
        yield app.extensions["locking"].extension


# -- acquire ---------------------------------------------------------------------------


def test_acquire_returns_the_lock_with_its_token(locking: Any) -> None:
    lock = locking.acquire("/docs/1", "alice", timeout=30)
    assert isinstance(lock, Lock)
    assert lock.resource == "/docs/1"
    assert lock.owner == Owner(id="alice", name="alice")
    assert lock.stealable is True
    assert lock.timeout == 30
    assert lock.depth == 0
    assert lock.version == 1
    assert isinstance(lock.token, str) and len(lock.token) >= 22
    assert lock.expires - lock.created == timedelta(seconds=30)
    assert lock.expires_at - lock.time == pytest.approx(30)
    # Its repr never shows the token (logs).
    assert lock.token not in repr(lock)


def test_acquire_normalises_the_resource(locking: Any) -> None:
    lock = locking.acquire("docs//1/", "alice")
    assert lock.resource == "/docs/1"
    assert locking.get("/docs/1").version == lock.version


def test_acquire_owner_forms(locking: Any) -> None:
    class User:
        id = 7
        name = "Grace"
        url = "https://example.org/u/7"

    lock = locking.acquire("/a", User())
    assert lock.owner == Owner(id="7", name="Grace", url="https://example.org/u/7")
    assert locking.acquire("/b", Owner(id="x")).owner == Owner(id="x")
    anonymous = locking.acquire("/c")
    assert anonymous.owner is None and anonymous.token


def test_owner_relock_keeps_token_and_version(locking: Any) -> None:
    first = locking.acquire("/docs/1", "alice", timeout=10)
    time.sleep(0.02)
    again = locking.acquire("/docs/1", "alice", timeout=20, stealable=False)
    assert again.token == first.token
    assert again.version == first.version
    assert again.time > first.time
    assert again.timeout == 20
    assert again.stealable is False


def test_conflict_carries_the_holder_without_token(locking: Any) -> None:
    mine = locking.acquire("/docs/1", "alice")
    with pytest.raises(LockConflict) as raised:
        locking.acquire("/docs/1", "bob")
    error = raised.value
    assert isinstance(error, LockingError)
    assert error.lock is not None
    assert error.lock.token is None
    assert error.lock.resource == "/docs/1"
    assert error.lock.owner == mine.owner
    assert error.lock.version == mine.version
    assert "alice" in str(error)
    assert mine.token not in str(error)


def test_anonymous_is_one_identity(locking: Any) -> None:
    first = locking.acquire("/docs/1")
    assert locking.acquire("/docs/1", None).token == first.token
    with pytest.raises(LockConflict):
        locking.acquire("/docs/1", "alice")
    assert locking.release("/docs/1") is not None
    assert locking.get("/docs/1") is None


def test_user_id_cannot_pose_as_the_anonymous_identity(locking: Any) -> None:
    locking.acquire("/docs/1")
    for impostor in ("anonymous", "u:", "None"):
        with pytest.raises(LockConflict):
            locking.acquire("/docs/1", impostor)


# -- fractional timeouts and expiry ------------------------------------------------------


def test_fractional_timeouts_expire(locking: Any) -> None:
    short = locking.acquire("/docs/1", "alice", timeout=0.2)
    assert short.timeout == pytest.approx(0.2)
    assert short.expires_at - short.time == pytest.approx(0.2, abs=0.0011)
    time.sleep(0.4)
    assert locking.get("/docs/1") is None
    assert locking.locks() == []
    taken = locking.acquire("/docs/1", "bob")
    assert taken.version == short.version + 1
    assert taken.token != short.token


def test_smallest_timeout(locking: Any) -> None:
    lock = locking.acquire("/docs/1", "alice", timeout=0.001)
    assert lock.timeout == pytest.approx(0.001)
    time.sleep(0.05)
    assert locking.get("/docs/1") is None


@pytest.mark.parametrize(
    "timeout",
    [
        0,
        0.0,
        -1,
        -0.5,
        0.0005,
        math.nan,
        math.inf,
        -math.inf,
        True,
        False,
        "10",
        b"10",
        [1],
        86400.001,
        86401,
        10**12,
    ],
)
def test_invalid_timeouts(locking: Any, timeout: Any) -> None:
    with pytest.raises(InvalidTimeout) as raised:
        locking.acquire("/docs/1", "alice", timeout=timeout)
    assert isinstance(raised.value, InvalidInput)
    assert isinstance(raised.value, LockingError)
    assert isinstance(raised.value, ValueError)
    assert "timeout" in str(raised.value)
    assert locking.get("/docs/1") is None
    held = locking.acquire("/docs/2", "alice", timeout=5)
    with pytest.raises(InvalidTimeout):
        locking.refresh("/docs/2", held.token, timeout=timeout)
    assert locking.get("/docs/2", owner="alice").timeout == 5


def test_max_timeout_is_allowed_and_configurable(make_app: Any) -> None:
    app = make_app(LOCKING_MAX_TIMEOUT=60, LOCKING_DEFAULT_TIMEOUT=30)
    with app.app_context():
        locking = app.extensions["locking"].extension
        assert locking.acquire("/a", "alice").timeout == 30
        assert locking.acquire("/b", "alice", timeout=60).timeout == 60
        with pytest.raises(InvalidTimeout):
            locking.acquire("/c", "alice", timeout=61)


def test_default_timeout_above_max_is_refused_at_init(make_app: Any) -> None:
    with pytest.raises(ValueError, match="LOCKING_DEFAULT_TIMEOUT"):
        make_app(LOCKING_MAX_TIMEOUT=60, LOCKING_DEFAULT_TIMEOUT=600)


# -- refresh ---------------------------------------------------------------------------


def test_refresh_restarts_the_timeout_and_keeps_the_token(locking: Any) -> None:
    lock = locking.acquire("/docs/1", "alice", timeout=30)
    time.sleep(0.05)
    refreshed = locking.refresh("/docs/1", lock.token)
    assert refreshed.token == lock.token
    assert refreshed.version == lock.version
    assert refreshed.time > lock.time
    assert refreshed.expires_at - refreshed.time == pytest.approx(30)  # restarted, same length
    assert refreshed.timeout == 30
    shorter = locking.refresh("/docs/1", lock.token, timeout=0.5)
    assert shorter.timeout == pytest.approx(0.5)
    assert shorter.expires_at - shorter.time == pytest.approx(0.5)
    longer = locking.refresh("/docs/1", lock.token, timeout=60)
    assert longer.timeout == 60
    assert longer.expires_at - longer.time == pytest.approx(60)


def test_refresh_with_a_wrong_token_is_a_conflict(locking: Any) -> None:
    locking.acquire("/docs/1", "alice")
    with pytest.raises(LockConflict) as raised:
        locking.refresh("/docs/1", "not-the-token")
    assert not isinstance(raised.value, LockNotHeld)
    assert raised.value.lock is not None and raised.value.lock.token is None


def test_refresh_of_a_lost_lock_raises_lock_not_held(locking: Any) -> None:
    with pytest.raises(LockNotHeld):
        locking.refresh("/docs/1", "x")
    lock = locking.acquire("/docs/1", "alice", timeout=0.1)
    time.sleep(0.25)
    with pytest.raises(LockNotHeld) as raised:
        locking.refresh("/docs/1", lock.token)
    assert isinstance(raised.value, LockingError)
    other = locking.acquire("/docs/2", "alice")
    locking.release("/docs/2", owner="alice")
    with pytest.raises(LockNotHeld):
        locking.refresh("/docs/2", other.token)
    assert locking.get("/docs/1") is None and locking.get("/docs/2") is None


def test_refresh_with_the_token_of_an_earlier_grant_fails(locking: Any) -> None:
    old = locking.acquire("/docs/1", "alice", timeout=0.1)
    time.sleep(0.25)
    new = locking.acquire("/docs/1", "alice")
    with pytest.raises(LockConflict):
        locking.refresh("/docs/1", old.token)
    assert locking.refresh("/docs/1", new.token).version == new.version


# -- release ---------------------------------------------------------------------------


def test_release_by_token_and_by_owner(locking: Any) -> None:
    a = locking.acquire("/a", "alice")
    ended = locking.release("/a", token=a.token, owner="bob")
    assert ended is not None and ended.resource == "/a" and ended.token is None
    assert locking.get("/a") is None
    locking.acquire("/b", "alice")
    assert locking.release("/b", owner="alice") is not None
    assert locking.get("/b") is None
    assert locking.release("/b", owner="alice") is None  # nothing left


def test_release_of_someone_elses_lock(locking: Any) -> None:
    locking.acquire("/a", "alice")
    with pytest.raises(LockConflict) as raised:
        locking.release("/a", owner="bob")
    assert raised.value.lock is not None and raised.value.lock.token is None
    with pytest.raises(LockConflict):
        locking.release("/a", token="wrong", owner="bob")
    stolen = locking.release("/a", owner="bob", force=True)
    assert stolen is not None and stolen.owner == Owner(id="alice", name="alice")
    assert locking.get("/a") is None


def test_force_release_of_a_non_stealable_lock(app: Flask, locking: Any) -> None:
    locking.acquire("/a", "alice", stealable=False)
    with pytest.raises(LockPermissionDenied) as raised:
        locking.release("/a", owner="bob", force=True)
    assert isinstance(raised.value, LockingError)
    assert raised.value.action == "steal"
    assert locking.get("/a") is not None

    @locking.authorizer
    def authorize(action: str, resource: str, identity: Owner | None) -> bool:
        return action != "steal" or (identity is not None and identity.id == "admin")

    with pytest.raises(LockPermissionDenied):
        locking.release("/a", owner="bob", force=True)
    assert locking.release("/a", owner="admin", force=True) is not None
    assert locking.get("/a") is None


# -- get / locks -----------------------------------------------------------------------


def test_get_withholds_the_token_unless_asked_as_owner(locking: Any) -> None:
    lock = locking.acquire("/docs/1", "alice")
    assert locking.get("/docs/1").token is None
    assert locking.get("/docs/1", owner="bob").token is None
    assert locking.get("/docs/1", owner="alice").token == lock.token
    assert locking.get("/docs/2") is None


def test_locks_lists_live_locks_by_prefix(locking: Any) -> None:
    for key in ("/docs/a", "/docs/a/b", "/docs/ab", "/docs/a0", "/other", "/docs"):
        locking.acquire(key, "alice")
    locking.acquire("/docs/a/short", "alice", timeout=0.05)
    time.sleep(0.15)
    every = locking.locks()
    assert [lock.resource for lock in every] == sorted(
        ["/docs/a", "/docs/a/b", "/docs/ab", "/docs/a0", "/other", "/docs"]
    )
    assert all(lock.token is None for lock in every)
    assert [lock.resource for lock in locking.locks("/docs/a")] == ["/docs/a", "/docs/a/b"]
    assert [lock.resource for lock in locking.locks("/docs/a/")] == ["/docs/a", "/docs/a/b"]
    assert len(locking.locks("/")) == 6
    assert locking.locks("/nothing") == []


# -- purge_expired ---------------------------------------------------------------------


def test_purge_expired_keeps_live_locks_and_versions(locking: Any) -> None:
    live = locking.acquire("/live", "alice")
    for key in ("/a", "/b"):
        locking.acquire(key, "alice", timeout=0.05)
    locking.acquire("/released", "alice")
    locking.release("/released", owner="alice")
    time.sleep(0.2)
    purged = locking.purge_expired()
    assert purged == 2  # the two that expired (release already wiped the third's secret)
    assert locking.purge_expired() == 0
    assert [lock.resource for lock in locking.locks()] == ["/live"]
    assert locking.get("/live", owner="alice").token == live.token
    # Versions never go back.
    assert locking.acquire("/a", "bob").version == 2
    assert locking.acquire("/released", "bob").version == 2


# -- depth -----------------------------------------------------------------------------


def test_depth_infinity_conflicts_below_and_above(locking: Any) -> None:
    top = locking.acquire("/docs/1", "alice", depth="infinity")
    assert top.depth == "infinity" and top.infinite
    # Below it: any lock, even depth 0, and for another owner.
    with pytest.raises(LockConflict) as raised:
        locking.acquire("/docs/1/parts/a", "bob")
    assert raised.value.lock is not None and raised.value.lock.resource == "/docs/1"
    assert raised.value.lock.token is None
    # Above it: an infinite lock that would cover it.
    with pytest.raises(LockConflict) as raised:
        locking.acquire("/docs", "bob", depth="infinity")
    assert raised.value.lock is not None and raised.value.lock.resource == "/docs/1"
    with pytest.raises(LockConflict):
        locking.acquire("/", "bob", depth="infinity")
    # A depth-0 lock on an ancestor covers only that ancestor: no overlap.
    assert locking.acquire("/docs", "bob").depth == 0
    # Siblings and look-alikes are not below it.
    assert locking.acquire("/docs/10", "bob")
    assert locking.acquire("/docs/1x/y", "bob")


def test_infinite_request_conflicts_with_a_lock_below(locking: Any) -> None:
    below = locking.acquire("/docs/1/parts/a", "alice")
    with pytest.raises(LockConflict) as raised:
        locking.acquire("/docs/1", "bob", depth="infinity")
    assert raised.value.lock is not None and raised.value.lock.resource == below.resource
    # Nothing was stored by the refused request.
    assert locking.get("/docs/1") is None
    assert locking.acquire("/docs/1", "bob").depth == 0
    # Once the lock below ends, the infinite lock can be taken.
    locking.release("/docs/1/parts/a", owner="alice")
    locking.release("/docs/1", owner="bob")
    assert locking.acquire("/docs/1", "bob", depth="infinity").version == 2


def test_expired_infinite_lock_covers_nothing(locking: Any) -> None:
    locking.acquire("/docs/1", "alice", depth="infinity", timeout=0.05)
    time.sleep(0.2)
    assert locking.acquire("/docs/1/parts/a", "bob")


@pytest.mark.parametrize("depth", [1, -1, "1", "Infinity", None, True, False, "0"])
def test_invalid_depth(locking: Any, depth: Any) -> None:
    with pytest.raises(InvalidInput):
        locking.acquire("/docs/1", "alice", depth=depth)
    assert locking.get("/docs/1") is None


# -- resources -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "resource", ["/a/../b", "/a/./b", "..", "/" + "x" * 600, "/a\x00b", "/a\nb", "/a\x7f", None, 5]
)
def test_invalid_resources(locking: Any, resource: Any) -> None:
    with pytest.raises(InvalidResource) as raised:
        locking.acquire(resource, "alice")
    assert isinstance(raised.value, LockingError)
    assert locking.locks() == []


def test_stealable_must_be_a_bool(locking: Any) -> None:
    with pytest.raises(InvalidInput):
        locking.acquire("/a", "alice", stealable="yes")
    assert locking.get("/a") is None


def test_every_error_is_a_locking_error() -> None:
    import flask_locking

    for name in flask_locking.__all__:
        obj = getattr(flask_locking, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, LockingError), name


def test_owner_fields_that_do_not_fit_the_table(locking: Any) -> None:
    # Every backend behaves the same: ids are never cut (they decide ownership) ...
    for bad in ("x" * 256, "a\x00b"):
        with pytest.raises(InvalidInput, match="identity"):
            locking.acquire("/a", bad)
    assert locking.locks() == []
    longest = "i" * 255
    assert locking.acquire("/a", longest).owner.id == longest
    # ... display fields are cut or dropped rather than failing the lock.
    lock = locking.acquire("/b", Owner(id="u1", name="李" * 300, url="https://x/" + "u" * 2000))
    assert lock.owner == Owner(id="u1", name="李" * 255, url=None)
    assert locking.get("/b").owner == lock.owner
    emoji = Owner(id="😀", name="Zoë 😀", url="https://example.org/😀")
    assert locking.acquire("/c", emoji).owner == emoji
    assert locking.get("/c", owner="😀").token is not None


def test_numeric_and_uuid_owner_ids(locking: Any) -> None:
    import uuid

    assert locking.acquire("/a", 7).owner == Owner(id="7", name="7")
    assert locking.acquire("/a", "7").version == 1  # the same identity as the string id
    with pytest.raises(LockConflict):
        locking.acquire("/a", 8)
    with pytest.raises(LockConflict):
        locking.acquire("/a")  # nor anonymous
    user = uuid.UUID(int=5)
    assert locking.acquire("/b", user).owner.id == str(user)


@pytest.mark.parametrize("owner", [{"id": "a"}, True, 1.5, object()])
def test_unusable_owner_is_a_type_error_not_anonymous(locking: Any, owner: Any) -> None:
    with pytest.raises(TypeError, match="identity"):
        locking.acquire("/a", owner)
    assert locking.locks() == []


def test_keys_differing_by_trailing_spaces_never_collide(app: Flask, locking: Any) -> None:
    # MySQL/MariaDB compare "/docs/1 " equal to "/docs/1"; such keys are refused everywhere,
    # and the guard never looks them up, so every backend answers the same.
    mine = locking.acquire("/docs/1", "alice", depth="infinity", timeout=60)
    for key in ("/docs/1 ", "/docs/1 /parts/a", "/docs /1"):
        with pytest.raises(InvalidResource, match="space"):
            locking.acquire(key, "bob")
    assert [lock.resource for lock in locking.locks()] == ["/docs/1"]
    client = app.test_client()
    assert client.patch("/docs/1%20").status_code == 200  # another path, not locked
    assert client.patch("/docs/1%20/parts/a").status_code == 200
    assert client.patch("/docs/1/parts/a").status_code == 403
    assert client.post("/docs/1%20/@lock").status_code == 400
    assert locking.get("/docs/1", owner="alice").token == mine.token


@pytest.mark.parametrize("other", ["ALICE", "Alice", "alicé", "alice ", " alice", "alice\t"])
def test_owner_ids_are_compared_exactly_on_every_backend(locking: Any, other: str) -> None:
    # MySQL/MariaDB's default collations are case-, accent- and pad-insensitive: a
    # look-alike id must neither take over the lock nor be shown its token.
    mine = locking.acquire("/docs/1", "alice")
    with pytest.raises(LockConflict):
        locking.acquire("/docs/1", other)
    with pytest.raises(LockConflict):
        locking.release("/docs/1", owner=other)
    assert locking.get("/docs/1", owner=other).token is None
    held = locking.get("/docs/1", owner="alice")
    assert held.token == mine.token and held.owner.id == "alice"


def test_text_no_backend_can_store(locking: Any) -> None:
    for resource in ("/a\ud800", "/\udcff/b"):
        with pytest.raises(InvalidResource, match="Unicode"):
            locking.acquire(resource, "alice")
    with pytest.raises(InvalidInput, match="identity"):
        locking.acquire("/a", "\ud800")
    odd = Owner(id="u1", name="n\udcff\x00", url="https://x/\ud800")
    lock = locking.acquire("/b", odd)
    assert lock.owner == Owner(id="u1", name="n?", url="https://x/?")
    # Reading as such an owner is merely "not the owner", never a crash.
    assert locking.get("/b", owner="\ud800").token is None
    assert locking.locks() == [locking.get("/b")]
