"""The lock engine: one per app, shared by the Python API, the guard and every dialect.

It validates input, derives and checks tokens, decides ownership and permission to steal,
and leaves atomicity to the store. It knows nothing about HTTP.
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from collections.abc import Callable
from typing import Any, Final, NamedTuple

from .decision import Verdict, WriteDecision
from .errors import (
    HeldElsewhere,
    InvalidInput,
    InvalidTimeout,
    LockConflict,
    LockNotHeld,
    LockPermissionDenied,
    StoreUnavailable,
)
from .events.model import EVENTS, new_event, row_event
from .lock import Lock, Owner, owner_key
from .resources import MAX_RESOURCE_LENGTH, ancestors, is_lockable, normalize
from .store.base import AcquireRequest, EventFor, LockRow, LockStore
from .store.eventlog import GrantEvent
from .store.events import EventLog, NewEvent
from .tokens import TokenKey, derive_token, new_secret, tokens_equal

log = logging.getLogger("flask_locking")

#: Shortest lease the Python API accepts (seconds).
MIN_TIMEOUT: Final = 0.001


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


#: Marks "no owner given" where ``None`` already means "the anonymous identity".
UNSET: Final = _Unset()

#: Called as ``notify(event, lock)`` for acquired, refreshed, released, stolen, conflict,
#: expired. ``listening(event)`` (optional) says whether anyone wants an event at all.
Notifier = Callable[[str, Lock], None]


class Acquired(NamedTuple):
    """What :meth:`LockEngine.acquisition` returns."""

    #: The lock, with its token.
    lock: Lock
    #: ``False`` when the owner already held the lock (and this refreshed it).
    granted: bool


class LockEngine:
    """Acquire, refresh, release, force-release, inspect and expire locks on one store."""

    def __init__(
        self,
        store: LockStore,
        *,
        secret_key: str | bytes | None,
        default_timeout: float = 600,
        max_timeout: float = 86400,
        notify: Notifier | None = None,
        listening: Callable[[str], bool] | None = None,
        events: EventLog | None = None,
    ) -> None:
        self.store = store
        #: Where acquired/refreshed/released/stolen/expired events are recorded for other
        #: processes (``None``: signals only).
        self.events = events
        #: The store writes each event in its operation's own transaction (one commit, and
        #: an event exists iff its change committed); otherwise the engine appends it after.
        self.events_in_store = events is not None and store.record_events(events)
        self._listening = listening
        self.default_timeout = default_timeout
        self.max_timeout = max_timeout
        self._notify = notify
        self._token_key = TokenKey(secret_key, store.shared_secret)

    # -- tokens --------------------------------------------------------------------------

    @property
    def key(self) -> bytes:
        """The HMAC key tokens are derived with (never the raw ``SECRET_KEY``; see
        :class:`~flask_locking.tokens.TokenKey`)."""
        return self._token_key.value

    def token_for(self, row: LockRow) -> str:
        """The token of the grant stored in ``row``."""
        return derive_token(self.key, row.resource, row.version, row.secret)

    def token_matches(self, row: LockRow, token: str) -> bool:
        """Constant-time check that ``token`` opens exactly this grant."""
        return tokens_equal(token, self.token_for(row))

    # -- the operations ------------------------------------------------------------------

    def acquisition(
        self,
        resource: str,
        owner: Any = None,
        *,
        timeout: Any = None,
        stealable: bool = True,
        depth: int | str = 0,
    ) -> Acquired:
        """:meth:`acquire`, also telling whether the grant is new: ``(lock, granted)``,
        ``granted`` false when the owner already held the lock and this refreshed it."""
        key = normalize(resource)
        who = _storable(Owner.coerce(owner))
        infinite = _parse_depth(depth)
        if not isinstance(stealable, bool):
            raise InvalidInput("stealable must be true or false.")
        request = AcquireRequest.of(LockRow(
            resource=key,
            secret=new_secret(),
            owner_key=owner_key(who),
            owner_id=who.id if who else None,
            owner_name=who.name if who else None,
            owner_url=who.url if who else None,
            stealable=stealable,
            infinite=infinite,
            timeout_ms=self._timeout_ms(timeout),
            locked_at_ms=0,  # the store's clock sets these
            version=0,
        ))

        # "acquired" for a new grant (the row holds this request's secret), else "refreshed"
        event = GrantEvent(request.row.secret)
        try:
            result = self.store.acquire(request, **self._recording(event))
        except HeldElsewhere as held:
            holder = self.to_lock(held.row) if held.row is not None else None
            if holder is not None:
                self._emit("conflict", holder)
            raise LockConflict(_held_message(key, holder), holder) from None
        lock = self.to_lock(result.row, reveal=True)
        self._emit("acquired" if result.granted else "refreshed", lock.without_token())
        return Acquired(lock, result.granted)

    def acquire(self, resource: str, owner: Any = None, **options: Any) -> Lock:
        """Acquire the lock on ``resource`` for ``owner`` (``None``: anonymous).

        ``options`` are those of :meth:`acquisition`: ``timeout`` (seconds), ``stealable``
        and ``depth`` (``0`` or ``"infinity"``). Returns the lock with its token. The holder
        acquiring again refreshes its lock and keeps token and version. Raises
        :class:`~flask_locking.LockConflict` (carrying the holder, token withheld) when
        another identity holds it or an overlapping lock.
        """
        return self.acquisition(resource, owner, **options).lock

    def lock(self, resource: str, owner: Any = None, **options: Any) -> Acquired:
        """Deprecated alias of :meth:`acquisition` (one name per operation: acquire).

        .. deprecated:: unreleased
        """
        warnings.warn(
            "LockEngine.lock() is deprecated; use acquisition() (or acquire() for the lock "
            "alone).",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.acquisition(resource, owner, **options)

    def refresh(
        self,
        resource: str,
        token: str | None = None,
        *,
        owner: Any = UNSET,
        timeout: Any = None,
    ) -> Lock:
        """Restart the lock's timeout (optionally with a new ``timeout``), keeping its token.

        The caller proves it holds the lock with ``token``, or with ``owner``. Raises
        :class:`~flask_locking.LockNotHeld` when no live lock is left and
        :class:`~flask_locking.LockConflict` when the lock is someone else's.
        """
        key = normalize(resource)
        timeout_ms = self._timeout_ms(timeout) if timeout is not None else None
        row = self.store.live(key)
        if row is None:
            raise LockNotHeld(
                f"There is no live lock on {key} to refresh: it expired or was released."
            )
        if not self._holds(row, token, UNSET if token is not None else owner):
            holder = self.to_lock(row)
            raise LockConflict(_held_message(key, holder), holder)
        refreshed = self.store.refresh(
            row, timeout_ms if timeout_ms is not None else row.timeout_ms,
            **self._recording(self._refreshed_event),
        )
        if refreshed is None:
            raise LockNotHeld(f"The lock on {key} ended before it could be refreshed.")
        lock = self.to_lock(refreshed, reveal=True)
        self._emit("refreshed", lock.without_token())
        return lock

    def extend(self, row: LockRow) -> Lock | None:
        """Restart the lease of exactly the grant in ``row`` (with its own timeout) while it
        is still live; the extended lock (token withheld), or ``None`` when it had ended.

        For ``LOCKING_REFRESH_ON_WRITE``: :meth:`check_write` has just verified the token
        against ``row``, and the store's statement compares the grant again, so a lease
        that ended in between is never revived.
        """
        extended = self._extend(row)
        return None if extended is None else self.to_lock(extended)

    def _extend(self, row: LockRow) -> LockRow | None:
        extended = self.store.extend(row, **self._recording(self._refreshed_event))
        if extended is not None:
            self._emit("refreshed", self.to_lock(extended))
        return extended

    def check_write(
        self,
        key: str,
        token: str | None,
        *,
        ignore_unheld_token: bool = False,
        refresh: bool = False,
        above: tuple[str, ...] = (),
    ) -> WriteDecision:
        """Decide a guarded write to the normalised path ``key`` carrying ``token``.

        The covering lock (:meth:`covering`; a depth-infinity lock on one of the keys
        ``above`` covers the write too) decides: none lets the write through (a token
        with it is stale unless ``ignore_unheld_token``), a lock without a token refuses it
        as *locked*, a token that does not open it as *stale*. With ``refresh``
        (``LOCKING_REFRESH_ON_WRITE``) a verified grant's lease restarts, in a statement
        that compares the grant again (*stale* when it ended in between). A store that
        cannot answer is *unavailable*; after a verified token the decision keeps it, for
        a guard that fails open. Never raises :class:`~flask_locking.StoreUnavailable`.
        """
        try:
            rows = self._covering_rows(key, above)
        except StoreUnavailable:
            return WriteDecision(Verdict.UNAVAILABLE, self)
        if not rows:
            if token is None or ignore_unheld_token:
                return WriteDecision(Verdict.UNLOCKED, self)
            return WriteDecision(Verdict.STALE, self)
        row = rows[0]
        if token is None:
            return WriteDecision(Verdict.LOCKED, self, row)
        # Every covering lock must open (one, unless two spellings of a resource got
        # overlapping grants: then no single token writes it).
        unopened = next((r for r in rows if not self.token_matches(r, token)), None)
        if unopened is not None:
            return WriteDecision(Verdict.STALE, self, unopened)
        if refresh:
            try:
                extended = self._extend(row)
            except StoreUnavailable:
                return WriteDecision(Verdict.UNAVAILABLE, self, row, token)
            if extended is None:  # ended between the read and this statement
                return WriteDecision(Verdict.STALE, self)
            row = extended
        return WriteDecision(Verdict.ALLOWED, self, row, token)

    def release(
        self,
        resource: str,
        *,
        token: str | None = None,
        owner: Any = UNSET,
        force: bool = False,
        may_steal: Callable[[Lock], bool] | None = None,
    ) -> Lock | None:
        """Release the lock; return the lock that ended, or ``None`` if nothing was locked.

        Allowed with the lock's ``token`` or as its ``owner``. ``force=True`` steals another
        identity's lock: a stealable one always (the caller checked ``unlock`` permission),
        a non-stealable one only when ``may_steal(lock)`` says so (default: never).
        Raises :class:`~flask_locking.LockConflict` for someone else's lock without force,
        :class:`~flask_locking.LockPermissionDenied` for a refused steal.
        """
        key = normalize(resource)
        # A grant can end or change between the read and the conditional release; the
        # release compares this grant's secret and version, so re-read and decide again.
        for _ in range(5):
            row = self.store.live(key)
            if row is None:
                return None
            lock = self.to_lock(row)
            stolen = False
            # A presented token decides alone (unless stealing anyway): a stale token must
            # never fall back to the owner and end the owner's newer grant (another tab).
            claim = UNSET if token is not None and not force else owner
            if not self._holds(row, token, claim):
                if not force:
                    raise LockConflict(_held_message(key, lock), lock)
                if not row.stealable and not (may_steal is not None and may_steal(lock)):
                    raise LockPermissionDenied(
                        f"The lock on {key} is not stealable and you may not steal it.",
                        "steal",
                        key,
                    )
                stolen = True
            by = Owner.coerce(owner) if owner is not UNSET else None
            kind = "stolen" if stolen else "released"
            if self.store.release(row, **self._recording(_ended_event(kind, by))):
                self._emit(kind, lock, by)
                return lock
        return None

    def get(
        self, resource: str, *, owner: Any = UNSET, token: str | None = None,
        covering: bool = False,
    ) -> Lock | None:
        """The live lock on ``resource``, or ``None``. The token is included only when
        ``owner`` is the lock's owner or ``token`` is its token. With ``covering``, an
        infinite-depth lock on an ancestor counts too (its ``resource`` says where it is)."""
        key = normalize(resource)
        row = self.covering(key) if covering else self.store.live(key)
        if row is None:
            return None
        return self.to_lock(row, reveal=self._holds(row, token, owner))

    def covering(self, key: str, above: tuple[str, ...] = ()) -> LockRow | None:
        """The live row whose lock covers the normalised path ``key`` (the lock on it, or an
        infinite-depth lock on an ancestor or on one of the keys ``above``), in one indexed
        query."""
        rows = self._covering_rows(key, above)
        return rows[0] if rows else None

    def _covering_rows(self, key: str, above: tuple[str, ...] = ()) -> list[LockRow]:
        """The live rows whose lock covers ``key`` (see :meth:`covering`), the deciding one
        first: the lock on ``key``, else the deepest infinite-depth lock. Several only where
        overlapping locks were granted on two spellings of one resource (an endpoint's
        rules under two locked paths; see :class:`~flask_locking.keys.RequestKey`)."""
        lookup = _lookup_keys(key)
        if above:
            lookup += tuple(k for k in above if is_lockable(k))
        rows = [row for row in self.store.live_among(lookup) if row.resource == key or row.infinite]
        if len(rows) > 1:
            rows.sort(key=lambda row: (row.resource != key, -len(row.resource)))
        return rows

    def locks(self, prefix: str | None = None) -> list[Lock]:
        """Every live lock (on ``prefix`` and below it in its namespace, when given: ``/``
        is the default namespace), tokens withheld."""
        key = normalize(prefix) if prefix is not None else None
        return [self.to_lock(row) for row in self.store.live_rows(key)]

    def purge_expired(self) -> int:
        """Wipe the secrets of expired locks; return how many were wiped.

        When someone listens for ``expired`` events, each wiped grant is reported (one
        statement per grant); otherwise one statement wipes them all.
        """
        wanted = self._notify is not None and (
            self._listening is None or self._listening("expired")
        )
        if wanted or self.events is not None:
            rows = self.store.purge_expired_rows(**self._recording(self._expired_event))
            if rows is not None:
                for row in rows:
                    self._emit("expired", self.to_lock(row))
                return len(rows)
        return self.store.purge_expired()

    # -- helpers -------------------------------------------------------------------------

    def to_lock(self, row: LockRow, *, reveal: bool = False, token: str | None = None) -> Lock:
        """The public :class:`Lock` for a row: with its token when ``reveal``, or with
        ``token`` when the caller has just verified that it is the grant's token."""
        return Lock.from_row(row, self.token_for(row) if reveal else token)

    def _holds(self, row: LockRow, token: str | None, owner: Any) -> bool:
        if token is not None and self.token_matches(row, token):
            return True
        if owner is UNSET:
            return False
        return owner_key(Owner.coerce(owner)) == row.owner_key

    def _timeout_ms(self, timeout: Any) -> int:
        if timeout is None:
            timeout = self.default_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise InvalidTimeout(f"timeout must be a number of seconds, not {timeout!r}.")
        # (range first: math.isfinite() cannot convert an int beyond float's range)
        if not MIN_TIMEOUT <= timeout <= self.max_timeout or not math.isfinite(timeout):
            raise InvalidTimeout(
                f"timeout must be between {MIN_TIMEOUT} and {self.max_timeout:g} seconds, "
                f"not {timeout!r}."
            )
        return max(1, round(timeout * 1000))

    def _recording(self, event: EventFor) -> dict[str, EventFor]:
        """``event=`` for a store that writes events in its operations' transactions;
        nothing for any other store (called exactly as before the capability existed)."""
        return {"event": event} if self.events_in_store else {}

    def _refreshed_event(self, row: LockRow) -> NewEvent:
        return row_event("refreshed", row)

    def _expired_event(self, row: LockRow) -> NewEvent:
        return row_event("expired", row)

    def _emit(self, event: str, lock: Lock, by: Owner | None = None) -> None:
        """After the operation committed: record the event (unless the store wrote it in
        the operation's transaction), then send the signal."""
        if self.events is not None and not self.events_in_store and event in EVENTS:
            try:
                self.events.append(new_event(event, lock, by))
            except Exception:
                # The lock operation has committed: losing its event is logged, never a
                # failed request (the holder must still get its token).
                log.exception("flask-locking: could not record a %s event", event)
        if self._notify is not None:
            self._notify(event, lock)


def _ended_event(kind: str, by: Owner | None) -> EventFor:
    """The event of a release or steal: about the lock that ended (the row the store ends,
    that grant as read before), and who ended it."""
    return lambda row: row_event(kind, row, by)


def _lookup_keys(key: str) -> tuple[str, ...]:
    """The keys whose lock would cover ``key`` (itself and its ancestors) that could hold a
    lock at all. Cached for keys short enough to be locked (the guard asks for the same
    paths again and again; an endless path must not be kept)."""
    if len(key) <= MAX_RESOURCE_LENGTH:
        return _cached_lookup_keys(key)
    return _covering_keys(key)


def _covering_keys(key: str) -> tuple[str, ...]:
    candidates = [key, *ancestors(key)]
    return tuple(c for c in candidates if is_lockable(c))


_cached_lookup_keys = functools.lru_cache(maxsize=4096)(_covering_keys)


def _storable(owner: Owner | None) -> Owner | None:
    """The owner as every backend's lock table can hold it. An id decides ownership, so it
    is never cut: one longer than 255 characters or holding a NUL byte is refused. The
    display name is cut to 255 characters; a URL too long (> 1024) to store is dropped."""
    if owner is None:
        return None
    if len(owner.id) > 255 or _text(owner.id) != owner.id:
        raise InvalidInput(
            "The caller's identity id must be at most 255 characters of valid Unicode, "
            "without NUL bytes."
        )
    name = _text(owner.name)[:255] if owner.name is not None else None
    url = _text(owner.url) if owner.url is not None and len(owner.url) <= 1024 else None
    if (name, url) == (owner.name, owner.url):
        return owner
    return Owner(id=owner.id, name=name, url=url)


def _text(value: str) -> str:
    """``value`` without NUL bytes and lone surrogates, which no backend stores."""
    return value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def _parse_depth(depth: Any) -> bool:
    if depth == 0 and not isinstance(depth, bool):
        return False
    if depth == "infinity":
        return True
    raise InvalidInput(f"depth must be 0 or 'infinity', not {depth!r}.")


def _held_message(key: str, holder: Lock | None) -> str:
    if holder is None:
        return f"{key} is locked by someone else."
    who = holder.owner.name or holder.owner.id if holder.owner else "an anonymous user"
    where = "" if holder.resource == key else f" (through the lock on {holder.resource})"
    return f"{key} is locked by {who}{where}."
