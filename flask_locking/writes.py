"""Writes atomic with their lock: close the gap between the guard's check and the commit.

The guard verifies a token before the view runs; the view's write commits later. A lease
that ends in between (a slow upload, a paused worker) would let a stale write land after the
next holder began. For hosts whose data lives in the lock store's database,
:func:`hold` re-checks the grant *inside the host's own transaction* and locks its row there
until that transaction ends (see ``docs/writes.rst`` for what each backend guarantees).
``LOCKING_HOLD_ON_FLUSH`` does it on the first ORM flush of a guarded request, and
``LOCKING_REFRESH_ON_WRITE`` restarts the lease of every verified guarded write (in
:meth:`LockEngine.check_write <flask_locking.engine.LockEngine.check_write>`).
"""

from __future__ import annotations

import os
import weakref
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from flask import Flask, Response, current_app, has_request_context, request
from sqlalchemy.engine import URL
from sqlalchemy.orm import scoped_session

from .errors import InvalidResource, LockLost
from .resources import normalize
from .state import EXTENSION_KEY, locking_state
from .store.base import LockRow
from .store.sql import SQLStore
from .verified import verified_lock

if TYPE_CHECKING:
    from .lock import Lock
    from .state import LockingState

#: ``session.info`` key: the transaction in which locks were held, and which grants.
_HELD = "flask_locking.held"

#: Default ports, so ``host`` and ``host:5432`` name one server.
_PORTS = {"postgresql": 5432, "mysql": 3306}

#: Flask-SQLAlchemy instances whose session already has the flush hook.
_HOOKED: weakref.WeakSet[Any] = weakref.WeakSet()


def hold(session: Any, lock: Lock | None = None, *, rollback: bool = True) -> Lock:
    """Hold ``lock`` (default: :data:`~flask_locking.current_lock`) in ``session``'s
    transaction until it commits or rolls back.

    In the host's own transaction, re-read the grant (same resource and ``version``, still
    live on the database clock, the token still opens it) and lock its row: PostgreSQL
    ``FOR SHARE``, MySQL/MariaDB ``LOCK IN SHARE MODE``, SQLite the database's write lock.
    Until the transaction ends, no release, steal, refresh or new grant of that resource can
    commit, so the host's write lands while the lock is still the caller's, or not at all.

    Returns the lock as re-read (token kept). Raises :class:`~flask_locking.LockLost` when
    the grant is gone (the transaction is rolled back first unless ``rollback`` is false);
    in a request that becomes the dialect's *stale* status. Raises :class:`RuntimeError`
    when ``session`` is not on the lock store's database: such a host needs fencing
    (:class:`~flask_locking.fencing.FencedMixin`), not a hold.
    """
    if isinstance(session, scoped_session):  # Flask-SQLAlchemy's db.session
        session = session()
    if lock is None and has_request_context():
        lock = verified_lock()
    if lock is None or lock.token is None:
        if rollback:
            session.rollback()
        raise LockLost("There is no verified lock to hold: send the lock's token with the write.")
    lock_engine = locking_state().engine
    store = lock_engine.store
    if not isinstance(store, SQLStore):
        raise TypeError(
            f"{type(store).__name__} cannot hold a lock in a host transaction (see can_hold); "
            "fence the records instead (flask_locking.fencing.FencedMixin)."
        )
    statement = store.hold_row
    _require_same_database(session.get_bind(clause=statement), store.engine)  # SQLAlchemy's
    params = {"hold_resource": lock.resource, "hold_version": lock.version}
    raw = session.execute(statement, params).first()
    row = None if raw is None else LockRow(*raw)
    if row is None or not lock_engine.token_matches(row, lock.token):
        if rollback:
            session.rollback()
        raise LockLost(
            f"The lock on {lock.resource} ended before this write could be made under it: it "
            "expired, was released or was taken over. Reload before writing."
        )
    _mark_held(session, lock)
    return lock_engine.to_lock(row, token=lock.token)


def can_hold(session: Any) -> bool:
    """True when :func:`hold` can work in ``session``: the app's locks are kept by a SQL
    store on the database ``session`` writes to. Otherwise (``memory://``, a store of the
    host's own, another database) fence the records instead (docs/writes.rst)."""
    if isinstance(session, scoped_session):
        session = session()
    store = locking_state().engine.store
    if not isinstance(store, SQLStore):
        return False
    return same_database(_url_of(session.get_bind(clause=store.hold_row)), store.engine.url)


def is_held(session: Any, lock: Lock) -> bool:
    """True when ``lock`` is already held in ``session``'s current transaction."""
    if isinstance(session, scoped_session):
        session = session()
    mark = session.info.get(_HELD)
    return (
        mark is not None
        and mark[0] is session.get_transaction()
        and (lock.resource, lock.version) in mark[1]
    )


def _mark_held(session: Any, lock: Lock) -> None:
    transaction = session.get_transaction()
    mark = session.info.get(_HELD)
    if mark is None or mark[0] is not transaction:
        mark = session.info[_HELD] = (transaction, set())
    mark[1].add((lock.resource, lock.version))


def _url_of(bind: Any) -> URL:
    """The URL of a session's bind (an engine or a connection)."""
    return bind.engine.url if hasattr(bind, "engine") else bind.url  # type: ignore[no-any-return]


def _require_same_database(host_bind: Any, store_bind: sa.Engine) -> None:
    host_url = _url_of(host_bind)
    if not same_database(host_url, store_bind.url):
        raise RuntimeError(
            "hold() needs the session to be on the lock store's database (Locking(app, db=db), "
            f"or LOCKING_DATABASE_URI naming the same database); the session is on "
            f"{host_url.render_as_string()}, the locks on {store_bind.url.render_as_string()}. "
            "Fence the records instead (flask_locking.fencing.FencedMixin)."
        )


def same_database(a: URL, b: URL) -> bool:
    """True when two URLs name one database (drivers, users and passwords aside)."""
    backend = _backend(a)
    if backend != _backend(b):
        return False
    if backend == "sqlite":
        # Every connection to an in-memory database has its own: never the same.
        files = [u.database or "" for u in (a, b)]
        if any(f in ("", ":memory:") or f.startswith("file:") for f in files):
            return files[0] == files[1] and files[0] not in ("", ":memory:")
        return os.path.realpath(files[0]) == os.path.realpath(files[1])

    def where(url: URL) -> tuple[Any, ...]:
        return (url.host or "localhost", url.port or _PORTS.get(backend), url.database)

    return where(a) == where(b)


def _backend(url: URL) -> str:
    name = url.get_backend_name()
    return "mysql" if name == "mariadb" else name


# -- automatic hold: LOCKING_HOLD_ON_FLUSH ----------------------------------------------


def _hold_on_flush(session: Any, _flush_context: Any, _instances: Any) -> None:
    """``before_flush``: hold the request's verified lock before the first write reaches
    the database (once per transaction)."""
    if not has_request_context():
        return
    lock: Lock | None = verified_lock()
    if lock is None:
        return
    state = locking_state(current_app) if EXTENSION_KEY in current_app.extensions else None
    if state is None or not state.config.hold_on_flush or is_held(session, lock):
        return
    # No rollback inside a flush: the failed flush leaves the transaction to be rolled
    # back (Flask-SQLAlchemy does so at the end of the request), and any later flush of
    # the same session runs this check again and fails again.
    hold(session, lock, rollback=False)


# -- wiring ------------------------------------------------------------------------------


def init_app(app: Flask, state: LockingState) -> None:
    """Answer :class:`~flask_locking.LockLost` with the dialect's stale status, and hook
    ``LOCKING_HOLD_ON_FLUSH`` into the host's Flask-SQLAlchemy session."""
    # Only this exception type: the host's own error pages are left as they are.
    app.register_error_handler(LockLost, stale_response)
    if not state.config.hold_on_flush:
        return
    if state.db is None:
        raise RuntimeError(
            "LOCKING_HOLD_ON_FLUSH needs the host's Flask-SQLAlchemy instance: Locking(app, db=db)."
        )
    if state.db not in _HOOKED:
        sa.event.listen(state.db.session, "before_flush", _hold_on_flush)
        _HOOKED.add(state.db)


def stale_response(error: LockLost) -> Response:
    """The dialect's *stale* refusal for a write whose lock was lost mid-request."""
    from .guard import _refused

    state = locking_state()
    try:
        key = normalize(request.path, strict=False)
    except InvalidResource:
        key = None
    dialect = (state.dialect_for(key) if key is not None else None) or state.fallback_dialect
    assert dialect is not None  # init_app always sets a fallback
    lock: Lock | None = verified_lock()
    resource = lock.resource if lock is not None else request.path
    return _refused(dialect.refuse_stale(None), "stale", None, resource)
