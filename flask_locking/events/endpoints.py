"""``GET <path>/@lock/events``: the events of one resource's lock, as Server-Sent Events.

Keyed and routed exactly as ``<path>/@lock`` (same 404 for unrouted paths, same canonical
key), errors in the content dialect's format, and served past a host catch-all route the
way ``@lock`` is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Blueprint, Response, request

from .stream import covering_match, event_stream

if TYPE_CHECKING:
    from ..dialects.content import ContentDialect
    from ..state import LockingState

#: The last path segments of a resource's event stream.
SUFFIX = "/@lock/events"


class LockEventsEndpoint:
    """Serves ``<prefix>/<path>/@lock/events`` for the content dialect at ``prefix``."""

    name = "locking_lock_events"

    def __init__(self, state: LockingState, content: ContentDialect) -> None:
        self.state = state
        self.content = content

    def create_blueprint(self) -> Blueprint:
        """The blueprint with the two rules (a path, and the root)."""
        bp = Blueprint(self.name, __name__)
        view = self.content.endpoint(self.view)
        prefix = self.content.prefix
        bp.add_url_rule(f"{prefix}/<path:path>{SUFFIX}", "events", view, methods=["GET"])
        bp.add_url_rule(f"{prefix}{SUFFIX}", "events_root", view, methods=["GET"])
        return bp

    def claims_request(self) -> bool:
        """True when the current request addresses an event stream of this endpoint."""
        path = request.path
        prefix = self.content.prefix
        return path.endswith(SUFFIX) and (not prefix or path.startswith(prefix + "/"))

    def dispatch(self) -> Response:
        """Serve the current request as a stream request, whatever route matched it."""
        if request.method not in ("GET", "HEAD"):
            return self.content.error(
                405, f"{request.method} is not allowed on @lock/events; use GET.",
                headers={"Allow": "GET, HEAD"},
            )
        path = request.path[len(self.content.prefix) : -len(SUFFIX)]
        return self.content.endpoint(self.view)(path)

    def view(self, path: str = "") -> Response:
        """Authorize ``view`` on the resource, then stream its lock's events."""
        key = self.content.addressed_key(path)
        identity = self.content.identity()
        self.content.authorize("view", key, identity)
        return event_stream(self.state, self.content, covering_match(key), identity)
