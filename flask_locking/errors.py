"""The exceptions raised by flask-locking.

Every error derives from :class:`LockingError`; each leaf also inherits the builtin it
resembles, so ``except ValueError`` or ``except PermissionError`` keep working in host code.
:func:`http_status` gives the status an error is answered with on the wire (the dialects'
error bodies, the lock listing): one table, read along the exception's class hierarchy.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .lock import Lock
    from .store.base import LockRow


class LockingError(Exception):
    """Root of every flask-locking error."""


class InvalidInput(LockingError, ValueError):
    """A value given to the API (timeout, resource, body field) is not acceptable."""


class InvalidTimeout(InvalidInput):
    """A timeout outside the allowed range, or not a number at all."""


class InvalidResource(InvalidInput):
    """A resource key that cannot be normalised (dot segments, too long, not a path)."""


class LockConflict(LockingError):
    """The resource is locked by someone else.

    :attr:`lock` is the lock that holds the resource (or a lock above/below it that
    overlaps), with its token withheld.
    """

    def __init__(self, message: str, lock: Lock | None = None) -> None:
        super().__init__(message)
        self.lock = lock


class LockNotHeld(LockConflict, LookupError):
    """There is no live lock the caller could refresh: it expired, was released or stolen."""


class LockLost(LockNotHeld):
    """The verified lock ended before the host's write could be made under it: it expired,
    was released, stolen or taken over, or a fenced record was already written under a
    newer grant (a higher ``version``).

    Raised by :meth:`Lock.hold <flask_locking.lock.Lock.hold>` and the fencing helpers. In a
    request, flask-locking answers it with the dialect's *stale* status (412 for content and
    job locks, 409 for reference-data locks), as the guard does for a stale token.
    """


class LockPermissionDenied(LockingError, PermissionError):
    """The authorizer refused the action (``view``, ``lock``, ``unlock`` or ``steal``)."""

    def __init__(self, message: str, action: str, resource: str) -> None:
        super().__init__(message)
        self.action = action
        self.resource = resource


class StoreUnavailable(LockingError, ConnectionError):
    """The lock store could not be reached or did not answer in time."""


class BodyTooLarge(InvalidInput):
    """The request body is larger than ``LOCKING_MAX_BODY_BYTES`` (413)."""


class NotJSON(InvalidInput):
    """The request body is not declared as JSON (415)."""


class NotFoundError(LockingError, LookupError):
    """A dialect-level 404: no such routed resource, job, or lock endpoint."""


class HeldElsewhere(Exception):
    """Raised by a store's :meth:`~flask_locking.store.LockStore.acquire` when a live lock of
    another owner overlaps (``row``: that lock, when the store can name it). The lock engine
    turns it into :class:`LockConflict`; it is part of the store API (docs/stores.rst), not
    an error callers of the extension see."""

    def __init__(self, row: LockRow | None) -> None:
        super().__init__("resource is locked")
        self.row = row


class TooManyStreams(LockingError):
    """The process already holds ``LOCKING_EVENTS_MAX_STREAMS`` event streams."""


class AuthenticationRequired(LockingError, PermissionError):
    """No identity could be established where one is required (or a bearer token was bad).

    :attr:`detail` says what was wrong, for the client (``"JWT token not found"``, ...).
    """

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


#: The HTTP status each error is answered with. :func:`http_status` walks the exception's
#: method resolution order, so the most specific class listed wins whatever the order here
#: (``BodyTooLarge`` is 413 although it is also an ``InvalidInput``).
HTTP_STATUS: dict[type[Exception], int] = {
    InvalidInput: 400,
    BodyTooLarge: 413,
    NotJSON: 415,
    AuthenticationRequired: 401,
    LockPermissionDenied: 403,
    NotFoundError: 404,
    LockConflict: 409,
    StoreUnavailable: 503,
}


def http_status(error: BaseException) -> int | None:
    """The status :data:`HTTP_STATUS` gives ``error`` (by its most specific listed class),
    or ``None`` for an error it does not list."""
    for cls in type(error).__mro__:
        status = HTTP_STATUS.get(cls)
        if status is not None:
            return status
    return None


class _LockNotFound(LockingError, LookupError):
    """Deprecated, never raised: a missing lock is ``None`` from ``get``/``release`` and
    :class:`LockNotHeld` from ``refresh``."""


_LockNotFound.__name__ = _LockNotFound.__qualname__ = "LockNotFound"


def deprecated_lock_not_found(stacklevel: int = 2) -> type[LockingError]:
    """``LockNotFound``, with a :class:`DeprecationWarning` pointing at the importer."""
    warnings.warn(
        "flask_locking.LockNotFound is deprecated and was never raised: a missing lock is "
        "None from get()/release() and LockNotHeld from refresh(). It will be removed.",
        DeprecationWarning,
        stacklevel=stacklevel + 1,
    )
    return _LockNotFound


def __getattr__(name: str) -> Any:
    """``LockNotFound`` still imports, with a :class:`DeprecationWarning`."""
    if name == "LockNotFound":
        return deprecated_lock_not_found(stacklevel=2)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
