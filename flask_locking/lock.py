"""The :class:`Lock` value object and the :class:`Owner` of a lock."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .store.base import LockRow


@dataclass(frozen=True, slots=True)
class Owner:
    """Who holds a lock. ``id`` is the identity compared for ownership."""

    id: str
    name: str | None = None
    url: str | None = None

    @classmethod
    def coerce(cls, value: Any) -> Owner | None:
        """Turn ``None``, a user-id string, or any object with ``id``/``name``/``url``
        attributes (or ``get_id()``, as Flask-Login users have) into an :class:`Owner`.

        ``None``, an empty id and anonymous Flask-Login users become ``None`` (anonymous).
        """
        if value is None or isinstance(value, Owner):
            return value
        if isinstance(value, str):
            return cls(id=value, name=value) if value else None
        if isinstance(value, (int, uuid.UUID)) and not isinstance(value, bool):
            return cls(id=str(value), name=str(value))  # a bare numeric or UUID user id
        if not any(hasattr(value, a) for a in ("id", "get_id", "is_anonymous")):
            # Never guess "anonymous": every such caller would share one identity.
            raise TypeError(
                "An identity must be None, a user id, or an object with an id (or get_id()), "
                f"not {type(value).__name__}."
            )
        if getattr(value, "is_anonymous", False) is True:
            return None
        ident = getattr(value, "id", None)
        if ident is None and callable(getattr(value, "get_id", None)):
            ident = value.get_id()
        if ident is None or str(ident) == "":
            return None
        name = getattr(value, "name", None) or getattr(value, "username", None)
        url = getattr(value, "url", None)
        return cls(
            id=str(ident),
            name=str(name) if name is not None else str(ident),
            url=str(url) if url is not None else None,
        )


#: The ``owner_key`` stored for anonymous locks. User keys are prefixed with ``u:``
#: so that no user id can collide with the anonymous identity.
ANONYMOUS_KEY = "anonymous"


def owner_key(owner: Owner | None) -> str:
    """The string stored and compared to decide whether a caller owns a lock.

    A user's key is ``u:`` + the SHA-256 hex digest of the id: canonical lowercase ASCII,
    so every backend compares it exactly (MySQL/MariaDB's default collations would take
    ``"Alice"``, ``"alice"``, ``"alicé"`` and ``"alice "`` for one owner).
    """
    if owner is None:
        return ANONYMOUS_KEY
    return "u:" + hashlib.sha256(owner.id.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class Lock:
    """A live lock, as read from the store at one instant.

    Times are epoch seconds on the database's clock. ``token`` is only filled in for the
    lock's owner (or a caller that proved it knows the token); it is ``None`` otherwise.
    """

    resource: str
    owner: Owner | None
    stealable: bool
    timeout: float
    time: float
    expires_at: float
    depth: int | str
    version: int
    token: str | None = dataclasses.field(default=None, repr=False)

    @classmethod
    def from_row(cls, row: LockRow, token: str | None = None) -> Lock:
        """The lock a store row describes (times from database milliseconds)."""
        owner = (
            None
            if row.owner_id is None
            else Owner(id=row.owner_id, name=row.owner_name, url=row.owner_url)
        )
        return cls(
            resource=row.resource,
            owner=owner,
            stealable=bool(row.stealable),
            timeout=row.timeout_ms / 1000,
            time=row.locked_at_ms / 1000,
            expires_at=row.expires_ms / 1000,
            depth="infinity" if row.infinite else 0,
            version=int(row.version),
            token=token,
        )

    @property
    def created(self) -> datetime:
        """The instant of the last lock or refresh (the same instant as :attr:`time`)."""
        return datetime.fromtimestamp(self.time, tz=timezone.utc)

    @property
    def expires(self) -> datetime:
        """When the lock stops being live unless refreshed."""
        return datetime.fromtimestamp(self.expires_at, tz=timezone.utc)

    @property
    def infinite(self) -> bool:
        """True when the lock also covers every path below :attr:`resource`."""
        return self.depth == "infinity"

    def hold(self, session: Any) -> Lock:
        """Hold this lock in ``session``'s transaction until it commits or rolls back, after
        checking in that transaction that the grant is still live and this lock's.

        Meant for the verified lock of a guarded write, on a session whose database also
        keeps the locks: ``current_lock.hold(db.session)`` before (or while) writing. Raises
        :class:`~flask_locking.LockLost` (the request then answers the dialect's *stale*
        status) when the lock ended. See :func:`flask_locking.writes.hold`.
        """
        from .writes import hold

        return hold(session, self)

    def without_token(self) -> Lock:
        """The same lock with the token withheld, for anyone but its owner."""
        if self.token is None:
            return self
        # (not dataclasses.replace, which reads the fields anew at every call: twice the cost
        # on every acquisition's signal and event)
        return Lock(self.resource, self.owner, self.stealable, self.timeout, self.time,
                    self.expires_at, self.depth, self.version)

    def to_json(self) -> dict[str, Any]:
        """The lock JSON shared by every dialect (docs/locks.rst)."""
        owner = self.owner
        whole = self.timeout == int(self.timeout)
        timeout: float | int = int(self.timeout) if whole else self.timeout
        data: dict[str, Any] = {
            "locked": True,
            "stealable": self.stealable,
            "timeout": timeout,
            "time": self.time,
            "created": _iso(self.time),
            "expires": _iso(self.expires_at),
            "creator": owner.id if owner else None,
            "creator_name": owner.name if owner else None,
            "creator_url": owner.url if owner else None,
            "name": "plone.locking.stealable" if self.stealable else "plone.locking.unstealable",
            "resource": self.resource,
            "depth": self.depth,
            "version": self.version,
        }
        if self.token is not None:
            data["token"] = self.token
        return data


#: The body every dialect answers for a resource that is not locked.
UNLOCKED_JSON: dict[str, Any] = {"locked": False, "stealable": True}


def _iso(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, tz=timezone.utc).isoformat(timespec="milliseconds")
