"""flask-locking: pessimistic edit locks for Flask REST APIs."""

from __future__ import annotations

from typing import Any

from .errors import (
    AuthenticationRequired,
    InvalidInput,
    InvalidResource,
    InvalidTimeout,
    LockConflict,
    LockingError,
    LockLost,
    LockNotHeld,
    LockPermissionDenied,
    StoreUnavailable,
)
from .extension import Locking
from .guard import current_lock
from .lock import Lock, Owner

__all__ = [
    "AuthenticationRequired",
    "InvalidInput",
    "InvalidResource",
    "InvalidTimeout",
    "Lock",
    "LockConflict",
    "LockLost",
    "LockNotHeld",
    "LockPermissionDenied",
    "Locking",
    "LockingError",
    "Owner",
    "StoreUnavailable",
    "current_lock",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Deprecated names still import (with a DeprecationWarning): see errors.LockNotFound.
    if name == "LockNotFound":
        from .errors import deprecated_lock_not_found

        return deprecated_lock_not_found(stacklevel=2)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
