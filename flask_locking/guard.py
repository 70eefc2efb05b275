"""The before-request guard: refuse guarded writes to a locked resource without its token.

Requests whose method is not guarded return before any database work. A guarded request
costs one indexed query: the live locks on the path and on each of its ancestors. The path
is the request's own key (:mod:`.keys`): the rule Flask matched for it, built back to its
canonical URL, in the request's namespace.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from flask import Response, current_app, g, request
from werkzeug.local import LocalProxy

from .errors import StoreUnavailable
from .keys import request_key
from .signals import write_refused
from .verified import set_verified_lock, verified_lock
from .writes import verified

if TYPE_CHECKING:
    from .lock import Lock
    from .state import LockingState


def _current_lock() -> Lock | None:
    return verified_lock()


#: The lock verified by the guard for this request (with its ``version`` for fencing), or
#: ``None`` when the request carried no token for a locked resource.
current_lock: Lock | None = LocalProxy(_current_lock)  # type: ignore[assignment]


def before_request() -> Response | None:
    """The extension's one ``before_request`` hook: :func:`dispatch_lock_endpoints`, then
    :func:`guard_request` (one hook instead of two: Flask's per-hook cost is paid by every
    request of the host app)."""
    # ``g`` spans several requests when they run in an app context pushed beforehand (a
    # test fixture, a script): one caller's identity or verified lock must not carry over.
    g.pop("_locking_identity", None)
    g.pop("_locking_current_lock", None)
    state: LockingState = current_app.extensions["locking"]
    content = state.content_dialect
    # The cheap path test first, once: most requests are not for ``@lock`` at all, and a
    # ``@lock`` request is served here (or by its own blueprint), never guarded.
    if content is not None and content.claims_request():
        return None if request.blueprint == content.name else content.dispatch()
    return _guard(state, lock_request=False)


def dispatch_lock_endpoints() -> Response | None:
    """Serve ``<path>/@lock`` (and ``<path>/@lock/events``) even when a host route (a
    catch-all) matched it first."""
    state: LockingState = current_app.extensions["locking"]
    content = state.content_dialect
    # The cheap path test first: most requests are not for ``@lock`` at all.
    if content is not None and content.claims_request() and request.blueprint != content.name:
        return content.dispatch()
    events = state.lock_events
    if events is not None and events.claims_request() and request.blueprint != events.name:
        return events.dispatch()
    return None


def guard_request() -> Response | None:
    """Refuse the request with the owning dialect's status, or let it through."""
    state: LockingState = current_app.extensions["locking"]
    content = state.content_dialect
    return _guard(state, lock_request=content is not None and content.claims_request())


def _guard(state: LockingState, *, lock_request: bool) -> Response | None:
    """:func:`guard_request`, told whether the request is a ``@lock`` request."""
    config = state.config
    if request.method not in config.guarded_methods or not config.guard_enabled:
        return None
    if lock_request or _is_exempt(state):
        return None
    key, dialect = request_key(state)  # e.g. /items/07/ is checked as /items/7
    if dialect is None:
        return None
    token = dialect.request_token()
    try:
        engine = state.engine  # built on first use: creating the table can fail too
        row = engine.covering(key)
    except StoreUnavailable:
        if config.guard_fail_open:
            return None
        return dialect.unavailable()
    if row is None:
        if token is None or dialect.ignores_unheld_token():
            return None
        return _refused(dialect.refuse_stale(None), "stale", None, key)
    lock = engine.to_lock(row)
    if token is None:
        return _refused(dialect.refuse_locked(lock), "locked", lock, key)
    if not engine.token_matches(row, token):
        return _refused(dialect.refuse_stale(lock), "stale", lock, key)
    # The presented token is the grant's token (just compared): no second HMAC and Lock.
    set_verified_lock(dataclasses.replace(lock, token=token))
    return verified(state, dialect, row)  # LOCKING_REFRESH_ON_WRITE


def _refused(response: Response, reason: str, lock: Lock | None, path: str) -> Response:
    if write_refused.receivers:
        write_refused.send(current_app._get_current_object(), lock=lock, reason=reason, path=path)  # type: ignore[attr-defined]
    return response


def _is_exempt(state: LockingState) -> bool:
    if request.blueprint in state.blueprint_names:
        return True
    exempt = state.extension.exempt_blueprints
    if exempt and request.blueprint is not None:
        # By the blueprint object registered under each full name ("api", "api.admin"):
        # exempt(admin) covers admin and the blueprints nested in it, never another
        # blueprint that happens to be called "admin" somewhere else.
        registered = current_app.blueprints
        if any(registered.get(name) in exempt for name in request.blueprints):
            return True
    view: Any = current_app.view_functions.get(request.endpoint or "")
    return view is not None and getattr(view, "_locking_exempt", False)
