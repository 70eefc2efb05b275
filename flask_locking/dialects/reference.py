"""Reference-data locks: ``POST|GET|DELETE <prefix>/clients/{client_id}/reference/lock``.

The lock is an infinite-depth lock on ``<prefix>/clients/{id}/reference``. Every caller must
be authenticated: through ``@locking.identity_loader`` when the host set one, else by the
bearer JWT (``LOCKING_JWT_SECRET``; identity from ``sub``). Every error, the guard's
refusals included, is ``{"status": "error", "code": N, "message": ..., "details": ...}``.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from .base import Dialect, EnvelopeErrorFormat, NotFoundError, integer_segment

#: Methods routed to the view; only GET, POST and DELETE are served, the rest get 405.
ROUTED = ("GET", "POST", "PUT", "PATCH", "DELETE")
SERVED = ("GET", "POST", "DELETE")


class ReferenceDialect(Dialect):
    """Reference-data locks: 201 on lock (200 when the owner locks again), 200 on read,
    204 on release; 401 without a verified caller; 409 for conflicts and guard refusals."""

    name = "locking_reference"
    locked_status = 409
    stale_status = 409
    errors = EnvelopeErrorFormat()
    requires_identity = True

    def client_id(self, key: str) -> int | None:
        """The client id when ``key`` is a reference path or lies below one."""
        if self.prefix and not key.startswith(self.prefix + "/"):
            return None
        segments = key[len(self.prefix) :].split("/")  # ["", "clients", id, "reference", ...]
        if len(segments) < 4 or segments[1] != "clients" or segments[3] != "reference":
            return None
        return integer_segment(segments[2], signed=True, routed=True)

    def owns(self, key: str) -> bool:
        return self.client_id(key) is not None

    def reference_key(self, client_id: int) -> str:
        """The resource key a client's reference-data lock is held on."""
        return f"{self.prefix}/clients/{client_id}/reference"

    def resource_key(self, key: str) -> str:
        client = self.client_id(key)
        if client is None:
            return key
        rest = key[len(self.prefix) :].split("/")[4:]
        return "/".join([self.reference_key(client), *rest])

    def create_blueprint(self) -> Blueprint:
        bp = Blueprint(self.name, __name__)
        bp.add_url_rule(
            f"{self.prefix}/clients/<client_id>/reference/lock",
            "lock",
            self.endpoint(self.view),
            methods=ROUTED,
            strict_slashes=False,  # ".../lock/" is served too
        )
        return bp

    def view(self, client_id: str) -> Response:
        if request.method not in SERVED:
            return self.error(
                405,
                f"{request.method} is not allowed here; use POST to lock, GET to read and "
                "DELETE to unlock.",
                headers={"Allow": ", ".join(SERVED)},
            )
        self.identity()  # authentication first: 401 before anything about the resource
        client = integer_segment(client_id, signed=True)
        if client is None:
            raise NotFoundError(f"client_id must be an integer, not {client_id!r}.")
        key = self.reference_key(client)
        if request.method == "POST":
            lock, granted = self.acquire(key, depth="infinity")
            return self.lock_response(lock, 201 if granted else 200)
        if request.method == "GET":
            return self.lock_response(self.inspect(key))
        self.release(key)
        return Response(status=204)
