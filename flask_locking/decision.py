"""The lock engine's answer to a guarded write: :class:`WriteDecision`.

The lock engine decides (:meth:`LockEngine.check_write
<flask_locking.engine.LockEngine.check_write>`); the guard only maps the decision onto the
owning dialect's response (see ``docs/guard.rst``).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .engine import LockEngine
    from .lock import Lock
    from .store.base import LockRow


class Verdict(enum.Enum):
    """What the lock engine says about a guarded write."""

    #: A live lock covers the resource and the presented token opens it.
    ALLOWED = "allowed"
    #: No live lock covers the resource (and no token, or a token the dialect ignores).
    UNLOCKED = "unlocked"
    #: A live lock covers the resource and the write carries no token.
    LOCKED = "locked"
    #: The token opens no live lock covering the resource (expired, released, taken over).
    STALE = "stale"
    #: The lock store could not answer.
    UNAVAILABLE = "unavailable"


class WriteDecision:
    """A :class:`Verdict` with the lock it is about, built only when someone reads it.

    :attr:`row` is the covering grant (``None`` when none was read); :attr:`token` is set
    only when the presented token was verified against it. ``lock_engine`` builds the lock
    (``None`` only when the lock engine itself could not be built: no row then).
    """

    __slots__ = ("_lock", "_lock_engine", "row", "token", "verdict")

    def __init__(
        self,
        verdict: Verdict,
        lock_engine: LockEngine | None,
        row: LockRow | None = None,
        token: str | None = None,
    ) -> None:
        self.verdict = verdict
        self.row = row
        self.token = token
        self._lock_engine = lock_engine
        self._lock: Lock | None = None

    @property
    def verified(self) -> bool:
        """True when the write's token was verified against a live grant."""
        return self.token is not None

    @property
    def allowed(self) -> bool:
        """True when the write may go on (verified, or nothing covers the resource)."""
        return self.verdict is Verdict.ALLOWED or self.verdict is Verdict.UNLOCKED

    @property
    def lock(self) -> Lock | None:
        """The covering lock: with its token when verified (the request's ``current_lock``),
        else the holder with the token withheld; ``None`` when no grant was read."""
        engine = self._lock_engine
        if self._lock is None and self.row is not None and engine is not None:
            # The presented token is the grant's token (just compared): no second HMAC.
            self._lock = engine.to_lock(self.row, token=self.token)
        return self._lock

    def __repr__(self) -> str:
        where = self.row.resource if self.row is not None else None
        return f"<WriteDecision {self.verdict.value} {where}>"
