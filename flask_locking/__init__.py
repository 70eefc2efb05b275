"""flask-locking: pessimistic edit locks for Flask REST APIs."""

from __future__ import annotations

from .errors import (
    AuthenticationRequired,
    InvalidInput,
    InvalidResource,
    InvalidTimeout,
    LockConflict,
    LockingError,
    LockLost,
    LockNotFound,
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
    "LockNotFound",
    "LockNotHeld",
    "LockPermissionDenied",
    "Locking",
    "LockingError",
    "Owner",
    "StoreUnavailable",
    "current_lock",
]

__version__ = "0.1.0"
