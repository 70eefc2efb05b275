"""The exceptions raised by flask-locking.

Every error derives from :class:`LockingError`; each leaf also inherits the builtin it
resembles, so ``except ValueError`` or ``except PermissionError`` keep working in host code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .lock import Lock


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


class LockNotFound(LockingError, LookupError):
    """There is no live lock on the resource at all."""


class LockPermissionDenied(LockingError, PermissionError):
    """The authorizer refused the action (``view``, ``lock``, ``unlock`` or ``steal``)."""

    def __init__(self, message: str, action: str, resource: str) -> None:
        super().__init__(message)
        self.action = action
        self.resource = resource


class StoreUnavailable(LockingError, ConnectionError):
    """The lock store could not be reached or did not answer in time."""


class AuthenticationRequired(LockingError, PermissionError):
    """No identity could be established where one is required (or a bearer token was bad).

    :attr:`detail` says what was wrong, for the client (``"JWT token not found"``, ...).
    """

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail
