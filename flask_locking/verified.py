"""The lock the guard verified for the current request (``current_lock``'s source).

Kept on the request object it was verified for, so that nothing acting after the view
(unlock on save, a hold, the ``LockLost`` handler) can ever read another request's lock,
even when one app context spans several requests (a test fixture, a script). The
:class:`~flask_locking.decision.WriteDecision` is kept; its lock is built only when read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import has_request_context, request

if TYPE_CHECKING:
    from .decision import WriteDecision
    from .lock import Lock

#: The request attribute the guard's verified decision is kept in.
_VERIFIED = "_locking_verified"


def verified_lock() -> Lock | None:
    """The lock the guard verified for **this** request (with its token), or ``None``."""
    if not has_request_context():
        return None
    decision: WriteDecision | None = _holder().__dict__.get(_VERIFIED)
    return decision.lock if decision is not None else None


def remember_verified(decision: WriteDecision) -> None:
    """Keep ``decision`` (a verified token) as this request's verified lock."""
    setattr(_holder(), _VERIFIED, decision)


def _holder() -> Any:
    """What the verified decision is kept on: the request object itself."""
    return request._get_current_object()  # type: ignore[attr-defined]
