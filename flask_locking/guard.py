"""The before-request guard: refuse guarded writes to a locked resource without its token.

The lock engine decides a guarded write (:meth:`LockEngine.check_write
<flask_locking.engine.LockEngine.check_write>`); the guard only maps its decision onto the
owning dialect's response. Requests whose method is not guarded return before any database
work. A guarded request costs one indexed query: the live locks on the path and on each of
its ancestors. The path is the request's own key (:mod:`.keys`): the rule Flask matched for
it, built back to its canonical URL, in the request's namespace. See ``docs/guard.rst``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Response, after_this_request, current_app, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.local import LocalProxy

from .decision import Verdict, WriteDecision
from .errors import StoreUnavailable
from .events.endpoints import SUFFIX as EVENTS_SUFFIX
from .keys import request_key
from .resources import split_namespace
from .signals import write_refused
from .state import locking_state
from .unlock_on_save import release_after_save, wants_release
from .verified import remember_verified, verified_lock

if TYPE_CHECKING:
    from flask import Flask, Request

    from .dialects.base import Dialect
    from .lock import Lock
    from .state import LockingState


def _current_lock() -> Lock | None:
    return verified_lock()


#: The lock verified by the guard for this request (with its ``version`` for fencing), or
#: ``None`` when the request carried no token for a locked resource.
current_lock: Lock | None = LocalProxy(_current_lock)  # type: ignore[assignment]


def before_request() -> Response | None:
    """The extension's one ``before_request`` hook: serve ``<path>/@lock`` (and its
    ``/events``) even when a host route (a catch-all) matched it first, else guard the
    request (one hook: Flask's per-hook cost is paid by every request of the host app)."""
    # The request and the app are read through Flask's proxies once (each read through a
    # proxy costs about half a microsecond, and every request of the host app pays it).
    current = request._get_current_object()  # type: ignore[attr-defined]
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    state = locking_state(app)
    content = state.content_dialect
    # The cheap path test first, once: most requests are not for ``@lock`` at all, and a
    # ``@lock`` request is served here (or by its own blueprint), never guarded.
    if content is not None:
        if content.claims_request():
            return None if current.blueprint == content.name else content.dispatch()
        events = state.lock_events  # <path>/@lock/events: past a host route too
        if events is not None and current.path.endswith(EVENTS_SUFFIX) and events.claims_request():
            return None if current.blueprint == events.name else events.dispatch()
    if current.routing_exception is not None:
        refused = refuse_method(state, app, current)
        if refused is not None:
            return refused
    config = state.config
    if current.method not in config.guarded_methods or not config.guard_enabled:
        return None
    return _guard(state, app, current)


def refuse_method(state: LockingState, app: Flask, current: Request) -> Response | None:
    """Answer a method that no rule of an extension endpoint routes (TRACE, QUERY, ...) in
    the endpoint's own format, instead of Werkzeug's HTML 405 page: every endpoint of the
    extension routes PUT and answers the methods it does not serve with its dialect's 405,
    so the request goes to the view PUT would reach. ``None`` for anything else. (Werkzeug
    answers such a method with 404, not 405, on the spelling without the last ``/`` of a
    rule that ends with one and has ``strict_slashes=False``, as the path dialects do.)"""
    if not isinstance(current.routing_exception, (MethodNotAllowed, NotFound)):
        return None
    try:
        rule, values = app.create_url_adapter(current).match(  # type: ignore[union-attr]
            method="PUT", return_rule=True
        )
    except HTTPException:
        return None
    if rule.endpoint.rpartition(".")[0] not in state.blueprint_names:
        return None
    answered: Any = app.view_functions[rule.endpoint](**values)  # the extension's own view
    return app.make_response(answered)


def _guard(state: LockingState, app: Flask, current: Request) -> Response | None:
    """Ask the lock engine about a guarded write and answer its decision."""
    if _is_exempt(state, app, current):
        return None
    key, dialect, above = request_key(state)  # e.g. /items/07/ is checked as /items/7
    if dialect is None:
        return None
    try:
        lock_engine = state.engine  # built on first use: creating the table can fail too
    except StoreUnavailable:
        return answer(state, dialect, WriteDecision(Verdict.UNAVAILABLE, None), key)
    decision = lock_engine.check_write(
        key,
        dialect.request_token(),
        ignore_unheld_token=dialect.ignores_unheld_token(),
        refresh=state.config.refresh_on_write,
        above=above,
    )
    row = decision.row
    if row is not None and row.resource in above:
        # Covered through the request's own spelling (a job below its URL): the refusal is
        # the locked path's dialect's, as for every write below that lock.
        dialect = state.dialect_for(split_namespace(row.resource)[1]) or dialect
    return answer(state, dialect, decision, key)


def answer(
    state: LockingState, dialect: Dialect, decision: WriteDecision, key: str
) -> Response | None:
    """Map the lock engine's ``decision`` on a write to ``key`` onto ``dialect``'s response
    (``None``: let the write through)."""
    verdict = decision.verdict
    if verdict is Verdict.UNLOCKED:
        return None
    if verdict is Verdict.ALLOWED:
        _verified(state, decision)
        return None
    if verdict is Verdict.LOCKED:
        lock = decision.lock
        assert lock is not None  # a locked decision names its holder
        return _refused(dialect.refuse_locked(lock), "locked", lock, key)
    if verdict is Verdict.STALE:
        holder = decision.lock
        return _refused(dialect.refuse_stale(holder), "stale", holder, key)
    # Verdict.UNAVAILABLE
    if not state.config.guard_fail_open:
        return dialect.unavailable()
    if decision.verified:  # the token was verified before the store failed
        _verified(state, decision)
    return None


def _verified(state: LockingState, decision: WriteDecision) -> None:
    """Keep the verified lock with the request (``current_lock``) and, when the request
    asks for it, release the lock after a successful save (``Lock-Release: true``)."""
    remember_verified(decision)
    if state.config.unlock_on_save and wants_release():
        after_this_request(release_after_save)


def _refused(response: Response, reason: str, lock: Lock | None, path: str) -> Response:
    if write_refused.receivers:
        write_refused.send(current_app._get_current_object(), lock=lock, reason=reason, path=path)  # type: ignore[attr-defined]
    return response


def _is_exempt(state: LockingState, app: Flask, current: Request) -> bool:
    blueprint = current.blueprint
    if blueprint in state.blueprint_names:
        return True
    exempt = state.exempt_blueprints
    if exempt and blueprint is not None:
        # By the blueprint object registered under each full name ("api", "api.admin"):
        # exempt(admin) covers admin and the blueprints nested in it, never another
        # blueprint that happens to be called "admin" somewhere else.
        registered = app.blueprints
        if any(registered.get(name) in exempt for name in current.blueprints):
            return True
    view: Any = app.view_functions.get(current.endpoint or "")
    return view is not None and getattr(view, "_locking_exempt", False)
