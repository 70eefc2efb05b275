"""Content locks, compatible with the Plone REST API ``@lock`` endpoint.

``POST|GET|PATCH|DELETE <path>/@lock`` on any path the host app routes. The endpoint is
served even when a host catch-all route would match ``<path>/@lock`` first.
"""

from __future__ import annotations

from urllib.parse import unquote

from flask import Blueprint, Response, current_app, request
from flask.globals import request_ctx
from werkzeug.exceptions import MethodNotAllowed, NotFound

from ..resources import normalize
from .base import Dialect, NotFoundError

#: The last path segment that addresses a resource's lock.
SUFFIX = "/@lock"
METHODS = ("GET", "POST", "PATCH", "DELETE")


class ContentDialect(Dialect):
    """Plone-style ``@lock``: 200 on lock, 409 on conflict, guard 403 / 412."""

    name = "locking_content"
    locked_status = 403
    stale_status = 412

    def owns(self, key: str) -> bool:
        return True  # the default for every path no other dialect claims

    def resource_key(self, key: str) -> str:
        return self._route(key)[0]

    def _route(self, key: str) -> tuple[str, bool]:
        """``(key, routed)``: the key the host router builds back for ``key``, and whether
        the host routes ``key`` at all (for any method).

        A host route with converters routes several spellings to one resource
        (``<int:id>`` takes ``/items/07`` and a full-width ``7`` as ``/items/7``): the key is
        the path the router builds back from what it matched, so the guard and @lock agree
        on one key per resource. Unrouted paths keep their own spelling.
        """
        # The adapter Flask already bound to this request's environ; building another one
        # per request costs as much as the rest of the check.
        adapter = getattr(request_ctx, "url_adapter", None)
        if adapter is None:
            adapter = current_app.create_url_adapter(request)
        if adapter is None:
            return key, True
        try:
            try:
                rule, args = adapter.match(key, method="GET", return_rule=True)
            except MethodNotAllowed as error:  # routed for other methods only
                methods = sorted(error.valid_methods or ())
                if not methods:
                    return key, True
                rule, args = adapter.match(key, method=methods[0], return_rule=True)
            built = rule.build(args, append_unknown=False)
        except NotFound:
            return key, False
        except Exception:  # noqa: BLE001 - a redirect (routed with a slash), a converter's error
            return key, True
        if built is None:
            return key, True
        return normalize(unquote(built[1]), strict=False), True

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

    def lock_key(self, path: str) -> str:
        """The resource key that ``<prefix>/<path>/@lock`` addresses (and its ``/events``);
        404 when the host does not route the path."""
        key = normalize(f"{self.prefix}/{path}")
        owner = self.state.dialect_for(key) or self
        if owner.requires_identity:
            owner.identity()  # @lock on e.g. reference data needs a caller, as its own endpoint does
        canonical, routed = self._route(key)  # one route match serves both questions
        if self.state.config.content_require_route and (key.endswith(SUFFIX) or not routed):
            raise NotFoundError(f"No resource at {key}: the app does not route that path.")
        return canonical if owner is self else owner.resource_key(key)  # one key per resource

    def view(self, path: str = "") -> Response:
        key = self.lock_key(path)
        if request.method == "POST":
            lock, _granted = self.acquire(key)
            return self.lock_response(lock)
        if request.method in ("GET", "HEAD"):  # Flask routes HEAD to GET views
            return self.lock_response(self.inspect(key))
        if request.method == "PATCH":
            return self.lock_response(self.refresh(key))
        self.release(key)
        return self.lock_response(None)
