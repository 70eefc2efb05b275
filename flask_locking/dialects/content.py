"""Content locks, compatible with the Plone REST API ``@lock`` endpoint.

``POST|GET|PATCH|DELETE <path>/@lock`` on any path the host app routes. The endpoint is
served even when a host catch-all route would match ``<path>/@lock`` first.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, request

from ..errors import AuthenticationRequired, LockConflict, LockPermissionDenied
from ..identity import current_identity
from ..keys import path_key
from ..resources import normalize
from .base import Dialect, NotFoundError
from .compat import compat_for
from .path import READ_ERRORS, WRITE_ERRORS

if TYPE_CHECKING:
    from ..lock import Lock
    from ..openapi import OpenAPIBuilder
    from ..state import LockingState

#: The last path segment that addresses a resource's lock.
SUFFIX = "/@lock"
METHODS = ("GET", "POST", "PATCH", "DELETE")


class ContentDialect(Dialect):
    """Plone-style ``@lock``: 200 on lock, 409 on conflict, guard 403 / 412 (strict mode;
    ``LOCKING_CONTENT_COMPAT = "plone"`` answers as Plone does, see :attr:`compat`)."""

    name = "locking_content"
    config_name = "CONTENT"
    locked_status = 403
    stale_status = 412

    def __init__(self, state: LockingState, prefix: str) -> None:
        super().__init__(state, prefix)
        #: How this dialect answers where Plone and the strict contract differ
        #: (``LOCKING_CONTENT_COMPAT``; see :mod:`flask_locking.dialects.compat`).
        self.compat = compat_for(state.config.content_compat)

    def owns(self, key: str) -> bool:
        return True  # the default for every path no other dialect claims

    def attach(self, state: LockingState) -> None:
        # Not asked in turn: the answer for every path the other dialects do not own, and
        # the ``@lock`` endpoint the guard serves even past a host catch-all.
        state.content_dialect = self
        state.fallback_dialect = self

    def create_blueprint(self) -> Blueprint:
        bp = Blueprint(self.name, __name__)
        view = self.endpoint(self.view)
        bp.add_url_rule(f"{self.prefix}/<path:path>{SUFFIX}", "lock", view, methods=METHODS)
        bp.add_url_rule(f"{self.prefix}{SUFFIX}", "lock_root", view, methods=METHODS)
        return bp

    def claims_request(self) -> bool:
        """True when the current request addresses a ``@lock`` endpoint of this dialect."""
        # Asked for every request of the app: the request is read through its proxy once.
        path = request._get_current_object().path  # type: ignore[attr-defined]
        return path.endswith(SUFFIX) and (not self.prefix or path.startswith(self.prefix + "/"))

    def dispatch(self) -> Response:
        """Serve the current request as a ``@lock`` request, whatever route matched it."""
        if request.method == "OPTIONS":  # CORS preflight must pass a host catch-all too
            allowed = ", ".join((*METHODS, "HEAD", "OPTIONS"))
            return Response(status=200, headers={"Allow": allowed})
        if request.method not in METHODS and request.method != "HEAD":
            return self.error(405, f"{request.method} is not allowed on @lock; use one of "
                              f"{', '.join(METHODS)}.", headers={"Allow": ", ".join(METHODS)})
        return self.endpoint(self.view)(request.path[len(self.prefix) : -len(SUFFIX)])

    def addressed_key(self, path: str) -> str:
        """The resource key that ``<prefix>/<path>/@lock`` addresses (and its ``/events``);
        404 when the host does not route the path."""
        key = normalize(f"{self.prefix}/{path}")
        owner = self.state.dialect_for(key) or self
        if owner.requires_identity:
            # @lock on e.g. reference data needs a caller, as its own endpoint does
            owner.identity()
        # The key of the rule that would serve a guarded write on <path>: the guard's key.
        canonical, routed = path_key(self.state, key)
        if self.state.config.content_require_route and (key.endswith(SUFFIX) or not routed):
            raise NotFoundError(f"No resource at {key}: the app does not route that path.")
        return canonical

    def view(self, path: str = "") -> Response:
        key = self.addressed_key(path)
        if request.method in ("GET", "HEAD"):  # Flask routes HEAD to GET views
            return self.lock_response(self.inspect(key))
        if self.refuses_anonymous("lock") and self.identity() is None:
            raise AuthenticationRequired("Log in to lock, refresh or unlock content.")
        lock: Lock | None
        try:
            if request.method == "POST":
                lock = self.acquire(key)[0]
            elif request.method == "PATCH":
                lock = self.refresh(key)
            else:
                self.release(key)
                lock = None
        except (LockConflict, LockPermissionDenied) as refusal:
            if not self.compat.answers_refusal(refusal):
                raise
            # The lock as it stands after the call that changed nothing (token withheld
            # unless the caller owns it): what Plone answers.
            lock = self.state.engine.get(
                self.lock_key(key), owner=self.identity(), token=self.request_token(),
                covering=True,
            )
        return self.lock_response(lock)

    def refuses_anonymous(self, action: str) -> bool:
        # Plone compatibility: anonymous callers may read a lock, never lock or unlock.
        return action != "view" and self.compat.writes_need_identity

    def lock_json(self, lock: Lock | None) -> dict[str, Any]:
        return self.compat.lock_json(lock, current_identity(self.state))

    def ignores_unheld_token(self) -> bool:
        return self.compat.ignores_unheld_token

    def openapi(self, document: OpenAPIBuilder) -> None:
        from ..openapi import SEGMENT_PATTERN

        # Plone mode answers a refusal on lock state with 200 and the lock as it stands
        # (see compat.py): no 409, and a 200 that may show another's lock or none.
        plone = self.compat.answers_conflicts

        def answer(action: str, summary: str, ok: dict[str, Any]) -> dict[str, Any]:
            codes = READ_ERRORS if action == "read" else WRITE_ERRORS
            if plone:
                codes = [code for code in codes if code != 409]
            return document.operation(
                summary, {"200": ok, **document.errors(codes, "Error")}, action=action
            )

        if plone:
            locked = document.lock_body(
                "The lock: yours, with its token; on another's lock, that lock without it "
                "(Plone compatibility: no 409).")
            refreshed = document.lock_body(
                "The refreshed lock; when it is not yours or nothing is locked, the lock as "
                "it stands (Plone compatibility: no 409).", may_be_unlocked=True)
            unlocked = document.lock_body(
                "Unlocked (also when nothing was locked); when the lock is another's and you "
                "may not take it, that lock, still held (Plone compatibility: no 409 or 403 "
                "for a refused steal).", may_be_unlocked=True)
        else:
            locked = document.lock_body("The lock, with its token.")
            refreshed = document.lock_body("The refreshed lock.")
            unlocked = document.json_response(
                "Unlocked (also when nothing was locked).", "Unlocked")
        operations = {
            "post": answer("lock", "Lock the resource (the owner locking again refreshes).",
                           locked),
            "get": answer("read", "Read the lock (the token only for its owner or a caller "
                          "sending it).", document.lock_body("The lock, or the unlocked body.",
                                                             may_be_unlocked=True)),
            "patch": answer("refresh", "Refresh the lock: restart its timeout, keep its token.",
                            refreshed),
            "delete": answer("unlock", "Release the lock ({\"force\": true} steals someone "
                             "else's).", unlocked),
        }
        path = {
            "name": "path", "in": "path", "required": True,
            "description": "The resource path (it may contain slashes); the host app must "
            "route it unless LOCKING_CONTENT_REQUIRE_ROUTE is off (else 404).",
            # Lockable paths only: no "." or ".." segment, none ending in a space, no
            # control characters; the server answers 400 to the rest.
            "schema": {"type": "string", "maxLength": 500, "pattern": SEGMENT_PATTERN},
        }
        document.add_path(self, f"{self.prefix}/{{path}}{SUFFIX}", operations, parameters=[path])
        # The root (the lock on "/" below the prefix) is served too; a path parameter cannot
        # be empty, so it is a path of its own.
        document.add_path(self, f"{self.prefix}{SUFFIX}", copy.deepcopy(operations))
