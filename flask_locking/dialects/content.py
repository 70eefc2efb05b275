"""Content locks, compatible with the Plone REST API ``@lock`` endpoint.

``POST|GET|PATCH|DELETE <path>/@lock`` on any path the host app routes. The endpoint is
served even when a host catch-all route would match ``<path>/@lock`` first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, request

from ..errors import AuthenticationRequired, LockConflict, LockPermissionDenied
from ..identity import current_identity
from ..keys import path_key
from ..resources import normalize
from .base import Dialect, NotFoundError
from .compat import compat_for

if TYPE_CHECKING:
    from ..lock import Lock
    from ..state import LockingState

#: The last path segment that addresses a resource's lock.
SUFFIX = "/@lock"
METHODS = ("GET", "POST", "PATCH", "DELETE")


class ContentDialect(Dialect):
    """Plone-style ``@lock``: 200 on lock, 409 on conflict, guard 403 / 412 (strict mode;
    ``LOCKING_CONTENT_COMPAT = "plone"`` answers as Plone does, see :attr:`compat`)."""

    name = "locking_content"
    locked_status = 403
    stale_status = 412

    def __init__(self, state: LockingState, prefix: str) -> None:
        super().__init__(state, prefix)
        #: How this dialect answers where Plone and the strict contract differ
        #: (``LOCKING_CONTENT_COMPAT``; see :mod:`flask_locking.dialects.compat`).
        self.compat = compat_for(state.config.content_compat)

    def owns(self, key: str) -> bool:
        return True  # the default for every path no other dialect claims

    def create_blueprint(self) -> Blueprint:
        bp = Blueprint(self.name, __name__)
        view = self.endpoint(self.view)
        bp.add_url_rule(f"{self.prefix}/<path:path>{SUFFIX}", "lock", view, methods=METHODS)
        bp.add_url_rule(f"{self.prefix}{SUFFIX}", "lock_root", view, methods=METHODS)
        return bp

    def claims_request(self) -> bool:
        """True when the current request addresses a ``@lock`` endpoint of this dialect."""
        path = request.path
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
            owner.identity()  # @lock on e.g. reference data needs a caller, as its own endpoint does
        # The key of the rule that would serve a guarded write on <path>: the guard's key.
        canonical, routed = path_key(self.state, key)
        if self.state.config.content_require_route and (key.endswith(SUFFIX) or not routed):
            raise NotFoundError(f"No resource at {key}: the app does not route that path.")
        return canonical

    def view(self, path: str = "") -> Response:
        key = self.addressed_key(path)
        if request.method in ("GET", "HEAD"):  # Flask routes HEAD to GET views
            return self.lock_response(self.inspect(key))
        if self.compat.writes_need_identity and self.identity() is None:
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

    def lock_json(self, lock: Lock | None) -> dict[str, Any]:
        return self.compat.lock_json(lock, current_identity(self.state))

    def ignores_unheld_token(self) -> bool:
        return self.compat.ignores_unheld_token
