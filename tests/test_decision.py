"""The one decision point: the lock engine answers a guarded write, on every backend
(docs/guard.rst); the error -> status table and the deprecated names (docs/api.rst)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest

import flask_locking
from flask_locking import errors
from flask_locking.decision import Verdict
from flask_locking.engine import LockEngine
from flask_locking.signals import lock_refreshed
from flask_locking.state import locking_state


@pytest.fixture
def engine(make_app: Any, database_url: str) -> Iterator[LockEngine]:
    """The lock engine of an app on each backend, in its app context."""
    app = make_app(database_url=database_url)
    with app.app_context():
        yield locking_state(app).engine


def test_nothing_covering_lets_the_write_through(engine: LockEngine) -> None:
    decision = engine.check_write("/docs/1", None)
    assert decision.verdict is Verdict.UNLOCKED and decision.allowed
    assert decision.lock is None and not decision.verified


def test_a_token_without_a_lock_is_stale_unless_the_dialect_ignores_it(
    engine: LockEngine,
) -> None:
    assert engine.check_write("/docs/1", "x" * 43).verdict is Verdict.STALE
    ignored = engine.check_write("/docs/1", "x" * 43, ignore_unheld_token=True)
    assert ignored.verdict is Verdict.UNLOCKED


def test_locked_names_the_holder_without_its_token(engine: LockEngine) -> None:
    held = engine.acquire("/docs", "alice", depth="infinity")
    decision = engine.check_write("/docs/1", None)
    assert decision.verdict is Verdict.LOCKED and not decision.allowed
    assert decision.lock is not None
    assert decision.lock.resource == "/docs" and decision.lock.version == held.version
    assert decision.lock.token is None


def test_a_wrong_token_is_stale_and_names_the_holder(engine: LockEngine) -> None:
    engine.acquire("/docs/1", "alice")
    decision = engine.check_write("/docs/1", "x" * 43)
    assert decision.verdict is Verdict.STALE
    assert decision.lock is not None and decision.lock.token is None


def test_the_right_token_is_allowed_with_the_verified_lock(engine: LockEngine) -> None:
    held = engine.acquire("/docs/1", "alice")
    assert held.token is not None
    decision = engine.check_write("/docs/1", held.token)
    assert decision.verdict is Verdict.ALLOWED and decision.verified
    assert decision.lock == held


def test_refresh_restarts_the_verified_lease(engine: LockEngine) -> None:
    held = engine.acquire("/docs/1", "alice", timeout=60)
    assert held.token is not None
    refreshed: list[Any] = []
    with lock_refreshed.connected_to(lambda sender, lock: refreshed.append(lock)):
        assert engine.check_write("/docs/1", held.token).verdict is Verdict.ALLOWED
        assert refreshed == []  # without refresh, the guard's one read only
        decision = engine.check_write("/docs/1", held.token, refresh=True)
    assert decision.verdict is Verdict.ALLOWED
    assert [lock.resource for lock in refreshed] == ["/docs/1"]
    assert decision.lock is not None and decision.lock.expires_at >= held.expires_at
    assert decision.lock.token == held.token


def test_refresh_of_a_grant_that_ended_meanwhile_is_stale(engine: LockEngine) -> None:
    held = engine.acquire("/docs/1", "alice")
    row = engine.store.live("/docs/1")
    assert row is not None
    engine.release("/docs/1", token=held.token)
    # The grant the guard read is gone before the refresh: never revived.
    assert engine._extend(row) is None
    assert engine.check_write("/docs/1", held.token, refresh=True).verdict is Verdict.STALE


def test_lock_is_a_deprecated_alias_of_acquisition(engine: LockEngine) -> None:
    with pytest.warns(DeprecationWarning, match="acquisition"):
        lock, granted = engine.lock("/docs/1", "alice")
    assert granted and lock.token is not None
    again = engine.acquisition("/docs/1", "alice")
    assert again.granted is False and again.lock.token == lock.token


# -- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.InvalidTimeout("t"), 400),
        (errors.BodyTooLarge("b"), 413),  # an InvalidInput too: the most specific wins
        (errors.NotJSON("j"), 415),
        (errors.AuthenticationRequired("a"), 401),
        (errors.LockPermissionDenied("p", "steal", "/x"), 403),
        (errors.NotFoundError("n"), 404),
        (errors.LockLost("l"), 409),
        (errors.StoreUnavailable("s"), 503),
        (errors.LockingError("e"), None),
        (ValueError("v"), None),
    ],
)
def test_http_status_walks_the_class_hierarchy(error: Exception, status: int | None) -> None:
    assert errors.http_status(error) == status


def test_every_error_class_lives_in_errors_and_derives_from_locking_error() -> None:
    from flask_locking.dialects import base, body
    from flask_locking.events import hub

    assert base.NotFoundError is errors.NotFoundError
    assert (body.BodyTooLarge, body.NotJSON) == (errors.BodyTooLarge, errors.NotJSON)
    assert hub.TooManyStreams is errors.TooManyStreams
    for cls in errors.HTTP_STATUS:
        assert issubclass(cls, errors.LockingError)


def test_lock_not_found_is_deprecated() -> None:
    assert "LockNotFound" not in flask_locking.__all__
    with pytest.warns(DeprecationWarning, match="never raised"):
        from_package = flask_locking.LockNotFound
    with pytest.warns(DeprecationWarning):
        from_errors = errors.LockNotFound
    assert from_package is from_errors and issubclass(from_package, errors.LockingError)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AttributeError):
            flask_locking.NoSuchName  # noqa: B018
