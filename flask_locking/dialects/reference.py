"""Reference-data locks: ``POST|GET|DELETE <prefix>/clients/{client_id}/reference/lock``.

The lock is an infinite-depth lock on ``<prefix>/clients/{id}/reference``. Every caller must
be authenticated: through ``@locking.identity_loader`` when the host set one, else by the
bearer JWT (``LOCKING_JWT_SECRET``; identity from ``sub``). Every error, the guard's
refusals included, is ``{"status": "error", "code": N, "message": ..., "details": ...}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from .base import EnvelopeErrorFormat
from .path import PathDialect, Statuses


class ReferenceDialect(PathDialect):
    """Reference-data locks: 201 on lock (200 when the owner locks again), 200 on read,
    204 on release; 401 without a verified caller; 409 for conflicts and guard refusals."""

    name = "locking_reference"
    config_name = "REFERENCE"
    default_prefix = "/api/v2"
    template = "/clients/<int(signed=True):client_id>/reference"
    actions: ClassVar[Mapping[str, str]] = {"GET": "read", "POST": "lock", "DELETE": "unlock"}
    statuses = Statuses(locked=409, stale=409)
    errors = EnvelopeErrorFormat()
    requires_identity = True
    summaries: ClassVar[Mapping[str, str]] = {
        "lock": "Lock the client's reference data.",
        "unlock": "Release the lock (also 204 when nothing was locked).",
    }
