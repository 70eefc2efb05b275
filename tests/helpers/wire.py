"""Wire assertions shared by the dialect tests: the lock JSON field by field, the two error
formats and the guard's refusals (``docs/dialects.rst``); and an app whose store is down."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from flask import Flask

from flask_locking import Locking

#: Every field of the lock JSON (``token`` only for the owner).
LOCK_FIELDS = {
    "locked",
    "stealable",
    "timeout",
    "time",
    "created",
    "expires",
    "creator",
    "creator_name",
    "creator_url",
    "name",
    "resource",
    "depth",
    "version",
}
#: The body showing no lock.
UNLOCKED = {"locked": False, "stealable": True}


def iso(value: str) -> float:
    """An ISO 8601 time with its UTC offset, as epoch seconds."""
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None, f"{value} has no time zone"
    return parsed.timestamp()


def assert_new_lock(
    send: Callable[[], Any],
    *,
    status: int,
    resource: str,
    depth: int | str,
    creator: str | None = "alice",
    creator_name: str | None = "alice",
) -> dict[str, Any]:
    """Send the request that makes a new lock (a default one: stealable, 600 s) and check
    every field of its answer, the token in the body and in the ``Lock-Token`` header."""
    before = time.time()
    response = send()
    after = time.time()
    assert response.status_code == status, response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json()
    assert set(body) == LOCK_FIELDS | {"token"}
    assert body["locked"] is True
    assert body["stealable"] is True
    assert body["timeout"] == 600 and isinstance(body["timeout"], int)
    # The database clock, not ours, but the same machine: a loose sanity bound only.
    assert isinstance(body["time"], float) and before - 60 < body["time"] < after + 60
    assert iso(body["created"]) == pytest.approx(body["time"], abs=0.001)
    assert iso(body["expires"]) - iso(body["created"]) == pytest.approx(600, abs=0.002)
    assert (body["creator"], body["creator_name"]) == (creator, creator_name)
    assert body["creator_url"] is None
    assert body["name"] == "plone.locking.stealable"
    assert body["resource"] == resource
    assert body["depth"] == depth
    assert body["version"] == 1
    assert isinstance(body["token"], str) and len(body["token"]) >= 22  # >= 128 bits, base64
    assert response.headers["Lock-Token"] == body["token"]
    return body


def assert_error(
    response: Any,
    status: int,
    error_type: str,
    message: str | None = None,
) -> dict[str, Any]:
    """The ``{"error": {"type", "message"}}`` format (content and job locks), with the
    holder under ``"lock"`` where there is one, and nothing else."""
    assert response.status_code == status, response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json()
    assert set(body) <= {"error", "lock"}
    assert set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == error_type
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if message is not None:
        assert body["error"]["message"] == message
    return body


def assert_envelope(response: Any, code: int, message: str, details: str | None = None) -> str:
    """The reference envelope: exactly four keys. Returns ``details``."""
    assert response.status_code == code, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"status", "code", "message", "details"}
    assert body["status"] == "error"
    assert body["code"] == code and isinstance(body["code"], int)
    assert body["message"] == message
    assert isinstance(body["details"], str) and body["details"]
    if details is not None:
        assert body["details"] == details
    return str(body["details"])


def assert_refused(response: Any, status: int, reason: str) -> None:
    """A guard refusal: ``status``, and ``Lock-Refused`` naming ``reason`` (``locked`` or
    ``stale``) whatever the body."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.headers.get("Lock-Refused") == reason


def unreachable_store_app(tmp_path: Any, **config: Any) -> Flask:
    """An app whose lock store is a closed loopback port (connection refused at once)."""
    app = Flask(__name__, instance_path=str(tmp_path / "unreachable"))
    app.config.update(
        SECRET_KEY="test-secret",
        LOCKING_STORE_TIMEOUT=1,
        LOCKING_DATABASE_URI="postgresql+psycopg://postgres@127.0.0.1:1/none",
        **config,
    )
    Locking(app)
    return app
