"""The OpenAPI 3.1 document of an app's lock endpoints (extra ``[openapi]``).

Built with apispec from the marshmallow schemas in :mod:`flask_locking.schemas`, for the
dialects enabled on the app, at their configured prefixes::

    from flask_locking.openapi import build_spec
    document = build_spec(app)                  # a dict, ready for json.dumps

``flask locks openapi`` prints it; ``LOCKING_OPENAPI_URL = "/locking/openapi.json"`` serves
it (off by default: nothing is added to the host app unless asked).

Each dialect adds its own paths (:meth:`Dialect.openapi
<flask_locking.dialects.Dialect.openapi>`, with the helpers of :class:`OpenAPIBuilder`).
The guard's refusals happen on the host's own routes, which this document does not
describe; they are under ``components.responses`` (``ContentLocked``, ``JobLocked``, ...,
one pair per dialect) with the ``LockToken`` and ``LockRelease`` header parameters, for the
host to reference from its own document.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask, Response, current_app, jsonify

from . import __version__
from .dialects.base import ERROR_TYPES, REFUSAL_HEADER
from .dialects.registry import served_dialects
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
from .state import locking_state

if TYPE_CHECKING:
    from .dialects.base import Dialect
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


#: One lockable path segment, as a regular expression (see ``resources.normalize``): not
#: ``.`` or ``..``, no control characters, not ending in a space (``a.`` is a segment).
_SEGMENT = "(?!\\.\\.?(?:/|$))[^/\\x00-\\x1f\\x7f?#]*[^/\\x00-\\x1f\\x7f?# ]"
#: A lockable path of one or more segments.
SEGMENT_PATTERN = f"^{_SEGMENT}(?:/{_SEGMENT})*$"


#: The request body of each action.
_REQUEST_BODIES = {"lock": "LockRequest", "refresh": "RefreshRequest", "unlock": "ReleaseRequest"}


class OpenAPIBuilder:
    """The document being built: each dialect adds its paths through these helpers."""

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
            "LockRefused",
            {
                "description": "Why the guard refused the write: `locked` (no token for a "
                "locked resource) or `stale` (a token that is not the live lock's).",
                "schema": {"type": "string", "enum": ["locked", "stale"]},
            },
        )
        c.header(
            "RetryAfter",
            {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}},
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
        """The error responses ``codes`` with the body schema ``schema``, by status."""
        out: dict[str, Any] = {}
        for code in codes:
            if code == 503:
                out["503"] = _ref("responses", f"Unavailable{schema}")
                continue
            response = self.json_response(_REASONS[code], schema)
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
    def json_response(description: str, schema: str) -> dict[str, Any]:
        """A response with ``description`` and a JSON body of the schema ``schema``."""
        return {
            "description": description,
            "content": {"application/json": {"schema": _ref("schemas", schema)}},
        }

    @staticmethod
    def lock_body(description: str, *, may_be_unlocked: bool = False) -> dict[str, Any]:
        """A response with the lock JSON (or, ``may_be_unlocked``, the unlocked body)."""
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
        """The optional JSON request body of the schema ``schema``."""
        return {
            "required": False,
            "content": {"application/json": {"schema": _ref("schemas", schema)}},
        }

    def operation(
        self, summary: str, responses: dict[str, Any], *, action: str,
        security: list[dict[str, list[str]]] | None = None,
    ) -> dict[str, Any]:
        """One operation on a lock endpoint doing ``action`` (``lock``, ``read``,
        ``refresh``, ``unlock``): the ``Lock-Token`` parameter and the request body follow."""
        operation: dict[str, Any] = {"summary": summary}
        if security is not None:
            operation["security"] = security
        if action != "lock":
            operation["parameters"] = ["LockToken"]
        if action in _REQUEST_BODIES:
            operation["requestBody"] = self.request_body(_REQUEST_BODIES[action])
        operation["responses"] = responses
        return operation

    def add_path(
        self, dialect: Dialect, path: str, operations: dict[str, Any],
        routed: tuple[str, ...] = (), parameters: list[dict[str, Any]] | None = None,
    ) -> None:
        """Add ``dialect``'s lock endpoint ``path``: its ``operations``, a 405 in its error
        format for each other method it ``routed`` (so ``Allow`` and the document agree),
        tagged with its name."""
        for method in routed:
            if method.lower() not in operations:
                operations[method.lower()] = {
                    "summary": f"{method} is not served: 405 with the methods that are.",
                    "responses": self.errors([405], dialect.errors.schema_name),
                }
        tag = dialect.name.removeprefix("locking_")
        for operation in operations.values():
            operation["tags"] = [tag]
        self.spec.path(path=path, operations=operations, parameters=parameters or [])

    def guard_responses(self, dialect: Dialect) -> None:
        """``components.responses`` for the guard's refusals on the paths ``dialect`` owns:
        ``<label>Locked`` and ``<label>Stale``, or one response when both statuses agree."""
        label = dialect.openapi_label()
        schema = _ref("schemas", dialect.errors.schema_name)
        refusals = {
            "Locked": (dialect.locked_status, "the resource is locked and no token was sent"),
            "Stale": (dialect.stale_status, "the token is not the live lock's"),
        }
        if dialect.locked_status == dialect.stale_status:
            refusals = {ERROR_TYPES.get(dialect.locked_status, "Refused"): (
                dialect.locked_status,
                ("locked and no token, or a token that is not the live lock's (the "
                 "Lock-Refused header says which)"),
            )}
        for name, (status, text) in refusals.items():
            self.spec.components.response(f"{label}{name}", {
                "description": f"{status}. Guard refusal. {label}: {text}.",
                "headers": {REFUSAL_HEADER: _ref("headers", "LockRefused")},
                "content": {"application/json": {"schema": schema}},
            })

    def finish(self) -> dict[str, Any]:
        document = self.spec.to_dict()
        maximum = int(self.state.config.max_timeout)
        for name in ("LockRequest", "RefreshRequest"):
            document["components"]["schemas"][name]["properties"]["timeout"]["maximum"] = maximum
        return document


def build_spec(app: Flask | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document (a dict) of ``app``'s enabled lock endpoints."""
    state = locking_state(app)
    builder = OpenAPIBuilder(state)
    for dialect in served_dialects(state):
        dialect.openapi(builder)
    # The guard answers in the fallback dialect's format even when it serves no endpoint.
    owners = [*state.dialects, *([state.fallback_dialect] if state.fallback_dialect else [])]
    for dialect in owners:
        builder.guard_responses(dialect)
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
        state = locking_state()
        cached: dict[str, Any] | None = getattr(state, "_openapi_document", None)
        if cached is None:
            cached = build_spec(current_app)
            state._openapi_document = cached  # type: ignore[attr-defined]
        return jsonify(cached)

    bp.add_url_rule(url, "openapi", openapi_document, methods=["GET"])
    return bp
