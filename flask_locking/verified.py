"""The lock the guard verified for the current request (``current_lock``'s source).

Kept with the request it was verified for, so that nothing acting after the view (unlock on
save, refresh on write, a hold) can ever read another request's lock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import g, has_request_context, request

if TYPE_CHECKING:
    from .lock import Lock


def verified_lock() -> Lock | None:
    """The lock the guard verified for **this** request, or ``None``.

    ``g`` outlives a request when an app context spans several (a fixture, a script): a
    host ``before_request`` that answers first keeps the guard from running and from
    clearing ``g``, so the lock is stored with the request it was verified for.
    """
    verified: tuple[object, Lock] | None = g.get("_locking_current_lock")
    if verified is None or not has_request_context():
        return None
    verified_for, lock = verified
    return lock if verified_for is request._get_current_object() else None  # type: ignore[attr-defined]


def set_verified_lock(lock: Lock | None) -> None:
    """Keep ``lock`` as this request's verified lock (``None``: forget it)."""
    if lock is None:
        g.pop("_locking_current_lock", None)
    else:
        g._locking_current_lock = (request._get_current_object(), lock)  # type: ignore[attr-defined]
