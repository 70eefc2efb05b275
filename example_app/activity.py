"""An activity log fed by flask-locking's signals, and the "locked since" it makes possible.

A lock's ``created``/``time`` move forward at every refresh (heartbeat), so "since when has
Alice been editing?" comes from the moment the grant (its ``version``) was first acquired,
which the ``lock_acquired`` signal tells us.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask, has_request_context

from flask_locking import AuthenticationRequired, Lock
from flask_locking.signals import lock_acquired, lock_released, lock_stolen, write_refused

from .extensions import db
from .models import Activity

log = logging.getLogger(__name__)


def _caller_name() -> str | None:
    """Who made this request: the bearer JWT's user (the reference-data API), else the
    session's user, as flask-locking's identity loader sees it."""
    from .users import load_identity

    if not has_request_context():
        return None
    try:
        user = load_identity()
    except AuthenticationRequired:  # a bad JWT: nobody we can name
        return None
    return user.name if user is not None else None


def record(event: str, resource: str, who: str | None, version: int | None) -> None:
    """Append one row, in a transaction of its own (never the request's ``db.session``)."""
    try:
        with db.engine.begin() as conn:
            conn.execute(
                Activity.__table__.insert().values(
                    at=time.time(), event=event, resource=resource, who=who, version=version
                )
            )
    except Exception:  # a log line must never break a lock operation
        log.exception("could not record %s on %s", event, resource)


def connect_signals(app: Flask) -> None:
    """Record acquisitions, releases, take-overs and refused writes of ``app``."""

    def acquired(sender: Flask, lock: Lock, **extra: Any) -> None:
        record("acquired", lock.resource, lock.owner.name if lock.owner else None, lock.version)

    def released(sender: Flask, lock: Lock, **extra: Any) -> None:
        record("released", lock.resource, _caller_name() or "(expired)", lock.version)

    def stolen(sender: Flask, lock: Lock, **extra: Any) -> None:
        holder = lock.owner.name if lock.owner else "anonymous"
        record(f"taken from {holder}", lock.resource, _caller_name(), lock.version)

    def refused(sender: Flask, lock: Lock | None, reason: str, path: str, **extra: Any) -> None:
        record(f"write refused ({reason})", path, _caller_name(), lock.version if lock else None)

    lock_acquired.connect(acquired, sender=app, weak=False)
    lock_released.connect(released, sender=app, weak=False)
    lock_stolen.connect(stolen, sender=app, weak=False)
    write_refused.connect(refused, sender=app, weak=False)


def since(lock: Lock) -> float:
    """When this grant of ``lock`` was first acquired (falls back to its last refresh)."""
    row = (
        db.session.query(Activity.at)
        .filter_by(resource=lock.resource, version=lock.version, event="acquired")
        .order_by(Activity.id.desc())
        .first()
    )
    return float(row[0]) if row is not None else lock.time


def lock_json(lock: Lock | None) -> dict[str, Any]:
    """The lock JSON plus ``since``, or the unlocked body. The token is there only when
    ``lock`` carries it: flask-locking reveals it to the lock's owner alone."""
    if lock is None:
        return {"locked": False, "stealable": True}
    data = lock.to_json()
    data["since"] = since(lock)
    return data


def recent(limit: int = 15) -> list[Activity]:
    return db.session.query(Activity).order_by(Activity.id.desc()).limit(limit).all()
