"""Dialects declared by a route template (see ``docs/dialect-howto.rst``).

A :class:`PathDialect` subclass says *what* its lock endpoint is; everything else derives
from that: which keys it ``owns`` (the template and everything below it, read as the host's
router reads it), the canonical key, the blueprint and its 405s, and its OpenAPI paths::

    class JobsDialect(PathDialect):
        name = "locking_jobs"
        config_name = "JOBS"                    # LOCKING_JOBS_ENABLED, LOCKING_JOBS_URL_PREFIX
        default_prefix = "/api/v1.0"
        template = "/companies/<int:companyID>/jobs/<int:jobID>"
        lock_path = "/lock/"                    # the endpoint: <prefix><template>/lock/
        actions = {"POST": "lock", "DELETE": "unlock"}  # other methods: 405
        statuses = Statuses(locked=423, stale=412, unheld=404)
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from flask import Blueprint, Response, request
from werkzeug.routing import BaseConverter

from .base import Dialect, NotFoundError
from .template import RouteTemplate

if TYPE_CHECKING:
    from ..lock import Lock
    from ..openapi import OpenAPIBuilder
    from ..state import LockingState

#: What a path dialect's lock endpoint can do (in the order a 405 message names them).
ACTIONS = ("lock", "read", "refresh", "unlock")
#: Methods routed to every lock endpoint; those a dialect does not serve get its own 405.
ROUTED = ("GET", "POST", "PUT", "PATCH", "DELETE")
#: Errors an action can answer (besides 405), for the OpenAPI document.
WRITE_ERRORS = [400, 401, 403, 404, 409, 413, 415, 500, 503]
READ_ERRORS = [400, 401, 403, 404, 500, 503]


@dataclass(frozen=True)
class Statuses:
    """The statuses of a path dialect."""

    #: The guard: a write without a token to a locked resource.
    locked: int
    #: The guard: a write whose token is not the live lock's.
    stale: int = 412
    #: ``POST`` that made a new lock.
    created: int = 201
    #: ``POST`` by the owner again (the lock refreshed, same token).
    relocked: int = 200
    #: ``DELETE`` that released (or found nothing, unless :attr:`unheld` is set).
    released: int = 204
    #: ``DELETE`` with no lock to release: an error status, or ``None`` for :attr:`released`.
    unheld: int | None = None


def _by_action(item: tuple[str, str]) -> int:
    return ACTIONS.index(item[1])


class PathDialect(Dialect):
    """A dialect whose lock endpoint is ``<prefix><template><lock_path>``; the lock is on
    ``<prefix><template>`` with :attr:`depth` (``"infinity"``: it covers every path below)."""

    #: The resource, in Flask's rule syntax (relative to the URL prefix).
    template: ClassVar[str]
    #: Appended to the template for the lock endpoint (served with and without a last ``/``).
    lock_path: ClassVar[str] = "/lock"
    #: The action of each method served (see :data:`ACTIONS`), in the order the ``Allow``
    #: header lists them; any other method gets 405.
    actions: ClassVar[Mapping[str, str]] = {"POST": "lock", "DELETE": "unlock"}
    statuses: ClassVar[Statuses]
    depth: ClassVar[int | str] = "infinity"
    #: Where a refused method is named in its 405 message (``"... is not allowed here"``).
    where: ClassVar[str] = "here"
    #: The message of :attr:`Statuses.unheld`.
    unheld_message: ClassVar[str] = "Lock does not exist."
    #: The 404 message when the host's existence check (:meth:`Locking.resource_exists`)
    #: says no; ``{name}`` fields are the template's variables.
    missing_message: ClassVar[str] = "No such resource."
    #: OpenAPI summaries by action (``lock``, ``read``, ``refresh``, ``unlock``).
    summaries: ClassVar[Mapping[str, str]] = {}
    #: Converters the template uses besides Werkzeug's, by name (e.g. the host's own).
    converters: ClassVar[Mapping[str, type[BaseConverter]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        statuses = cls.__dict__.get("statuses")
        if statuses is not None:  # the guard reads these two, as for any dialect
            cls.locked_status, cls.stale_status = statuses.locked, statuses.stale

    def __init__(self, state: LockingState, prefix: str) -> None:
        super().__init__(state, prefix)
        self.route = RouteTemplate(prefix, self.template, self.converters)
        # Declaration mistakes surface when the dialect is added, not at a request.
        unknown = set(self.actions.values()) - set(ACTIONS)
        if unknown:
            raise ValueError(f"{type(self).__name__}.actions: unknown {sorted(unknown)}; "
                             f"each method does one of {', '.join(ACTIONS)}.")
        try:
            self.missing_message.format(**{v.name: v.name for v in self.route.variables})
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(f"{type(self).__name__}.missing_message: {error!r} is not one of "
                             "the template's variables.") from None

    # -- keys ------------------------------------------------------------------------------

    def owns(self, key: str) -> bool:
        return self.route.match(key) is not None

    def resource_key(self, key: str) -> str:
        found = self.route.match(key)
        return key if found is None else self.route.build(found[0]) + found[1]

    # -- the lock endpoint -----------------------------------------------------------------

    def create_blueprint(self) -> Blueprint:
        bp = Blueprint(self.name, __name__)
        bp.add_url_rule(
            self.route.rule(self.lock_path),
            "lock",
            self.endpoint(self.view),
            methods=sorted({*ROUTED, *self.actions}),
            strict_slashes=False,  # served with and without the last "/", no redirect
        )
        return bp

    def view(self, **raw: str) -> Response:
        """Serve the lock endpoint: 405, then authentication, then the ids, then the action."""
        action = self.actions.get(request.method)
        if action is None:
            served = [f"{m} to {a}" for m, a in sorted(self.actions.items(), key=_by_action)]
            listed = ", ".join(served[:-1]) + " and " + served[-1] if len(served) > 1 else served[0]
            return self.error(
                405, f"{request.method} is not allowed {self.where}; use {listed}.",
                headers={"Allow": ", ".join(self.actions)},
            )
        if self.requires_identity:
            self.identity()  # 401 before anything about the resource
        key = self.route.build(self.existing(raw))
        if action == "lock":
            lock, granted = self.acquire(key, depth=self.depth)
            status = self.statuses.created if granted else self.statuses.relocked
            return self.lock_response(lock, status)
        if action == "read":
            return self.lock_response(self.inspect(key))
        if action == "refresh":
            return self.lock_response(self.refresh(key))
        released: Lock | None = self.release(key)
        if released is None and self.statuses.unheld is not None:
            return self.error(self.statuses.unheld, self.unheld_message)
        return Response(status=self.statuses.released)

    def existing(self, raw: Mapping[str, str]) -> list[Any]:
        """The template's values from the endpoint's URL; 404 for a value its converter
        refuses, or when the host's existence check says the resource does not exist."""
        values = [variable.parse(raw[variable.name]) for variable in self.route.variables]
        exists = self.state.extension.exists_checks.get(self.name)
        if exists is not None and not exists(*values):
            names = {v.name: value for v, value in zip(self.route.variables, values, strict=True)}
            raise NotFoundError(self.missing_message.format(**names))
        return values

    # -- the OpenAPI document ----------------------------------------------------------------

    def openapi(self, document: OpenAPIBuilder) -> None:
        operations = {method.lower(): self._operation(action, document)
                      for method, action in self.actions.items()}
        parameters = [
            {"name": v.name, "in": "path", "required": True, "schema": v.schema()}
            for v in self.route.variables
        ]
        routed = tuple(sorted({*ROUTED, *self.actions}))
        # Served with and without the last "/" (strict_slashes=False): both are listed.
        other = self.lock_path[:-1] if self.lock_path.endswith("/") else self.lock_path + "/"
        for suffix in (self.lock_path, other):
            document.add_path(self, self.route.openapi_path(suffix), copy.deepcopy(operations),
                              routed, copy.deepcopy(parameters))

    def _operation(self, action: str, document: OpenAPIBuilder) -> dict[str, Any]:
        """The OpenAPI operation doing ``action`` at the lock endpoint."""
        schema, statuses = self.errors.schema_name, self.statuses
        responses: dict[str, Any] = {}
        if action == "lock":
            created = document.lock_body("Locked: the lock with its token.")
            responses[str(statuses.created)] = created
            responses[str(statuses.relocked)] = document.lock_body(
                "The owner locked again: refreshed, same token.")
        elif action == "read":
            responses["200"] = document.lock_body("The lock, or the unlocked body.",
                                                  may_be_unlocked=True)
        elif action == "refresh":
            responses["200"] = document.lock_body("The refreshed lock.")
        else:
            released = "Released." if statuses.unheld else "Released, or nothing was locked."
            responses[str(statuses.released)] = {"description": released}
        responses.update(document.errors(READ_ERRORS if action == "read" else WRITE_ERRORS, schema))
        if action == "unlock" and statuses.unheld is not None:
            responses[str(statuses.unheld)] = document.json_response(
                "No lock to release (or the resource does not exist).", schema)
        return document.operation(
            self.summaries.get(action, f"{action.capitalize()} the lock."), responses,
            action=action, security=[{"bearerAuth": []}] if self.requires_identity else None,
        )
