"""The OpenAPI 3.1 document of an app's lock endpoints (extra ``[openapi]``).

Built with apispec from the marshmallow schemas in :mod:`flask_locking.schemas`, for the
dialects enabled on the app, at their configured prefixes::

    from flask_locking.openapi import build_spec
    document = build_spec(app)                  # a dict, ready for json.dumps

``flask locks openapi`` prints it; ``LOCKING_OPENAPI_URL = "/locking/openapi.json"`` serves
it (off by default: nothing is added to the host app unless asked).

The guard's refusals happen on the host's own routes, which this document does not
describe; they are under ``components.responses`` (``ContentLocked``, ``JobLocked``, ...)
with the ``LockToken`` and ``LockRelease`` header parameters, for the host to reference
from its own document.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask, Response, current_app, jsonify

from . import __version__
from .dialects import jobs as jobs_module
from .dialects import reference as reference_module
from .dialects.content import ContentDialect
from .dialects.jobs import JobsDialect
from .dialects.reference import ReferenceDialect
from .openapi_events import add_event_paths
from .schemas import (
    EnvelopeErrorSchema,
    ErrorSchema,
    LockRequestSchema,
    LockSchema,
    RefreshRequestSchema,
    ReleaseRequestSchema,
    UnlockedSchema,
)

if TYPE_CHECKING:
    from .state import LockingState

OPENAPI_VERSION = "3.1.0"

#: Reason phrases used in response descriptions.
_REASONS = {
    400: "Bad input: malformed JSON, a body that is not an object, a wrong type, an unknown "
    "field, or a path that cannot be locked.",
    401: "Authentication failed: no bearer token where one is required, or an invalid or "
    "expired one.",
    403: "The authorizer refused the action (view, lock, unlock or steal).",
    404: "Not found.",
    405: "This method is not served here; the Allow header lists the ones that are.",
    409: "Locked by someone else (the body carries the holder where the format allows), or "
    "the lock to refresh is gone.",
    413: "The request body is larger than LOCKING_MAX_BODY_BYTES.",
    415: "The request body is not JSON (Content-Type: application/json).",
    500: "Internal server error (never a traceback).",
    503: "The lock store is unavailable; retry after Retry-After seconds.",
}


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


#: One lockable path segment, as a regular expression (see ``resources.normalize``).
_SEGMENT = "[^/\\x00-\\x1f\\x7f?#]*[^/\\x00-\\x1f\\x7f?#. ]"


class _Builder:
    """Adds one dialect's paths at a time to an :class:`APISpec`."""

    def __init__(self, state: LockingState) -> None:
        self.state = state
        self.spec = APISpec(
            title="flask-locking lock endpoints",
            version=__version__,
            openapi_version=OPENAPI_VERSION,
            plugins=[MarshmallowPlugin()],
            info={
                "description": (
                    "Pessimistic edit locks. Lock a resource, keep the token from the "
                    "response (body `token`, header `Lock-Token`), and send it as the "
                    "`Lock-Token` request header with every guarded write "
                    f"({', '.join(sorted(state.config.guarded_methods)) or 'none'}) to the "
                    "resource. Without it a write to a locked resource is refused with the "
                    "dialect's *locked* status; with a token that is not the live lock's, "
                    "with its *stale* status (see components.responses). `Lock-Release: true` "
                    "on a guarded write releases the lock once the write succeeded (2xx)."
                )
            },
        )
        self._components()

    # -- components --------------------------------------------------------------------

    def _components(self) -> None:
        c = self.spec.components
        c.schema("Lock", schema=LockSchema)
        c.schema("Unlocked", schema=UnlockedSchema)
        c.schema("Error", schema=ErrorSchema)
        c.schema("EnvelopeError", schema=EnvelopeErrorSchema)
        c.schema("LockRequest", schema=LockRequestSchema)
        c.schema("RefreshRequest", schema=RefreshRequestSchema)
        c.schema("ReleaseRequest", schema=ReleaseRequestSchema)
        c.security_scheme(
            "bearerAuth",
            {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "HS256 by default (LOCKING_JWT_SECRET); identity from `sub`.",
            },
        )
        c.parameter(
            "LockToken",
            "header",
            {
                "name": "Lock-Token",
                "required": False,
                "description": "The lock token, bare or in the WebDAV form `<token>`.",
                "schema": {"type": "string"},
            },
        )
        c.parameter(
            "LockRelease",
            "header",
            {
                "name": "Lock-Release",
                "required": False,
                "description": "`true` on a guarded write: release the lock after a 2xx.",
                "schema": {"type": "string", "enum": ["true"]},
            },
        )
        c.header(
            "LockToken",
            {"description": "The lock token (owner only).", "schema": {"type": "string"}},
        )
        c.header(
            "RetryAfter",
            {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}},
        )
        guard = [
            ("ContentLocked", 403, "Error", "Content: the resource is locked and no token was sent."),
            ("ContentStale", 412, "Error", "Content: the token is not the live lock's."),
            ("JobLocked", 423, "Error", "Jobs: the job is locked and no token was sent."),
            ("JobStale", 412, "Error", "Jobs: the token is not the live lock's."),
            (
                "ReferenceConflict", 409, "EnvelopeError",
                "Reference data: locked and no token, or a token that is not the live lock's.",
            ),
        ]
        for name, status, schema, text in guard:
            c.response(
                name,
                {
                    "description": f"{status}. Guard refusal. {text}",
                    "content": {"application/json": {"schema": _ref("schemas", schema)}},
                },
            )
        for schema in ("Error", "EnvelopeError"):
            c.response(
                f"Unavailable{schema}",
                {
                    "description": _REASONS[503],
                    "headers": {"Retry-After": _ref("headers", "RetryAfter")},
                    "content": {"application/json": {"schema": _ref("schemas", schema)}},
                },
            )

    # -- helpers -----------------------------------------------------------------------

    def errors(self, codes: list[int], schema: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for code in codes:
            if code == 503:
                out["503"] = _ref("responses", f"Unavailable{schema}")
                continue
            response: dict[str, Any] = {
                "description": _REASONS[code],
                "content": {"application/json": {"schema": _ref("schemas", schema)}},
            }
            if code == 405:
                response["headers"] = {
                    "Allow": {"schema": {"type": "string"}, "description": "Served methods."}
                }
            if code == 401:
                response["headers"] = {
                    "WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}
                }
            out[str(code)] = response
        return out

    @staticmethod
    def lock_body(description: str, *, may_be_unlocked: bool = False) -> dict[str, Any]:
        schema: dict[str, Any] = _ref("schemas", "Lock")
        if may_be_unlocked:
            schema = {"oneOf": [_ref("schemas", "Lock"), _ref("schemas", "Unlocked")]}
        return {
            "description": description,
            "headers": {"Lock-Token": _ref("headers", "LockToken")},
            "content": {"application/json": {"schema": schema}},
        }

    @staticmethod
    def request_body(schema: str) -> dict[str, Any]:
        return {
            "required": False,
            "content": {"application/json": {"schema": _ref("schemas", schema)}},
        }

    # -- dialects ----------------------------------------------------------------------

    def content(self, dialect: ContentDialect) -> None:
        errors = [400, 401, 403, 404, 409, 413, 415, 500, 503]
        read_errors = [400, 401, 403, 404, 500, 503]
        operations = {
            "post": {
                "summary": "Lock the resource (the owner locking again refreshes).",
                "requestBody": self.request_body("LockRequest"),
                "responses": {"200": self.lock_body("The lock, with its token."),
                              **self.errors(errors, "Error")},
            },
            "get": {
                "summary": "Read the lock (the token only for its owner or a caller sending it).",
                "parameters": ["LockToken"],
                "responses": {"200": self.lock_body("The lock, or the unlocked body.",
                                                    may_be_unlocked=True),
                              **self.errors(read_errors, "Error")},
            },
            "patch": {
                "summary": "Refresh the lock: restart its timeout, keep its token.",
                "parameters": ["LockToken"],
                "requestBody": self.request_body("RefreshRequest"),
                "responses": {"200": self.lock_body("The refreshed lock."),
                              **self.errors(errors, "Error")},
            },
            "delete": {
                "summary": "Release the lock ({\"force\": true} steals someone else's).",
                "parameters": ["LockToken"],
                "requestBody": self.request_body("ReleaseRequest"),
                "responses": {
                    "200": {
                        "description": "Unlocked (also when nothing was locked).",
                        "content": {"application/json": {"schema": _ref("schemas", "Unlocked")}},
                    },
                    **self.errors(errors, "Error"),
                },
            },
        }
        path_param = {
            "name": "path",
            "in": "path",
            "required": True,
            "description": "The resource path (it may contain slashes); the host app must "
            "route it unless LOCKING_CONTENT_REQUIRE_ROUTE is off (else 404).",
            # Lockable paths only: segments end in neither a space nor a dot (so no "." or
            # ".." segments), no control characters; the server answers 400 to the rest.
            "schema": {
                "type": "string",
                "maxLength": 500,
                "pattern": f"^{_SEGMENT}(?:/{_SEGMENT})*$",
            },
        }
        self.spec.path(
            path=f"{dialect.prefix}/{{path}}/@lock",
            operations=_tagged(operations, "content"),
            parameters=[path_param],
        )

    def jobs(self, dialect: JobsDialect) -> None:
        errors = [400, 401, 403, 404, 409, 413, 415, 500, 503]
        ids = [
            {"name": name, "in": "path", "required": True,
             "schema": {"type": "integer", "minimum": 0}}
            for name in ("companyID", "jobID")
        ]
        operations: dict[str, Any] = {
            "post": {
                "summary": "Lock the job and everything below it.",
                "requestBody": self.request_body("LockRequest"),
                "responses": {
                    "201": self.lock_body("Locked: the lock with its token."),
                    "200": self.lock_body("The owner locked again: refreshed, same token."),
                    **self.errors(errors, "Error"),
                },
            },
            "delete": {
                "summary": "Release the job lock ({\"force\": true} steals someone else's).",
                "parameters": ["LockToken"],
                "requestBody": self.request_body("ReleaseRequest"),
                "responses": {
                    "204": {"description": "Released."},
                    **self.errors(errors, "Error"),
                },
            },
        }
        operations["delete"]["responses"]["404"]["description"] = (
            "Job lock does not exist (or the job does not)."
        )
        _not_served(self, operations, jobs_module.ROUTED, "Error")
        self.spec.path(
            path=f"{dialect.prefix}/companies/{{companyID}}/jobs/{{jobID}}/lock/",
            operations=_tagged(operations, "jobs"),
            parameters=ids,
        )

    def reference(self, dialect: ReferenceDialect) -> None:
        errors = [400, 401, 403, 404, 409, 413, 415, 500, 503]
        read_errors = [400, 401, 403, 404, 500, 503]
        client_id = {"name": "client_id", "in": "path", "required": True,
                     "schema": {"type": "integer"}}
        security: list[dict[str, list[str]]] = [{"bearerAuth": []}]
        operations = {
            "post": {
                "summary": "Lock the client's reference data.",
                "security": security,
                "requestBody": self.request_body("LockRequest"),
                "responses": {
                    "201": self.lock_body("Locked: the lock with its token."),
                    "200": self.lock_body("The owner locked again: refreshed, same token."),
                    **self.errors(errors, "EnvelopeError"),
                },
            },
            "get": {
                "summary": "Read the lock.",
                "security": security,
                "parameters": ["LockToken"],
                "responses": {
                    "200": self.lock_body("The lock, or the unlocked body.",
                                          may_be_unlocked=True),
                    **self.errors(read_errors, "EnvelopeError"),
                },
            },
            "delete": {
                "summary": "Release the lock (also 204 when nothing was locked).",
                "security": security,
                "parameters": ["LockToken"],
                "requestBody": self.request_body("ReleaseRequest"),
                "responses": {
                    "204": {"description": "Released, or nothing was locked."},
                    **self.errors(errors, "EnvelopeError"),
                },
            },
        }
        _not_served(self, operations, reference_module.ROUTED, "EnvelopeError")
        self.spec.path(
            path=f"{dialect.prefix}/clients/{{client_id}}/reference/lock",
            operations=_tagged(operations, "reference"),
            parameters=[client_id],
        )

    def finish(self) -> dict[str, Any]:
        document = self.spec.to_dict()
        maximum = int(self.state.config.max_timeout)
        for name in ("LockRequest", "RefreshRequest"):
            document["components"]["schemas"][name]["properties"]["timeout"]["maximum"] = maximum
        return document


def _not_served(
    builder: _Builder, operations: dict[str, Any], routed: tuple[str, ...], schema: str
) -> None:
    """Document the methods a dialect routes only to answer 405 in its own error format
    (so ``OPTIONS``/``Allow`` and the document agree)."""
    for method in routed:
        name = method.lower()
        if name not in operations:
            operations[name] = {
                "summary": f"{method} is not served: 405 with the methods that are.",
                "responses": builder.errors([405], schema),
            }


def _tagged(operations: dict[str, Any], tag: str) -> dict[str, Any]:
    for operation in operations.values():
        operation["tags"] = [tag]
    return operations


def build_spec(app: Flask | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document (a dict) of ``app``'s enabled lock endpoints."""
    target = app if app is not None else current_app
    state: LockingState = target.extensions["locking"]
    builder = _Builder(state)
    for dialect in state.dialects:
        if isinstance(dialect, JobsDialect):
            builder.jobs(dialect)
        elif isinstance(dialect, ReferenceDialect):
            builder.reference(dialect)
    if state.config.content_enabled and state.content_dialect is not None:
        builder.content(state.content_dialect)
    add_event_paths(builder)
    return builder.finish()


def create_swagger_ui_blueprint(url: str, openapi_url: str) -> Blueprint:
    """Swagger UI at ``url`` for the document at ``openapi_url``, from the assets bundled in
    flask-swagger-ui (extra ``[swagger-ui]``): nothing is loaded from a CDN."""
    from flask_swagger_ui import get_swaggerui_blueprint

    return get_swaggerui_blueprint(  # type: ignore[no-any-return]
        url.rstrip("/"),
        openapi_url,
        config={"app_name": "flask-locking lock endpoints"},
        blueprint_name="locking_swagger_ui",
    )


def create_blueprint(url: str) -> Blueprint:
    """A blueprint serving the current app's document at ``url`` (``GET``)."""
    bp = Blueprint("locking_openapi", __name__)

    def openapi_document() -> Response:
        state: LockingState = current_app.extensions["locking"]
        cached: dict[str, Any] | None = getattr(state, "_openapi_document", None)
        if cached is None:
            cached = build_spec(current_app)
            state._openapi_document = cached  # type: ignore[attr-defined]
        return jsonify(cached)

    bp.add_url_rule(url, "openapi", openapi_document, methods=["GET"])
    return bp
