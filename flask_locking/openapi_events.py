"""The OpenAPI paths of the event streams and the lock listing (see ``docs/events.rst``),
added to the document built by :mod:`flask_locking.openapi`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .openapi import OpenAPIBuilder


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


_EVENT_NAMES = ["acquired", "refreshed", "released", "stolen", "expired"]

_SCHEMAS: dict[str, dict[str, Any]] = {
    "LockEvent": {
        "type": "object",
        "description": "The `data` of one Server-Sent Event (its `event:` is `event`, its "
        "`id:` the event id). Never carries a token.",
        "required": ["event", "resource", "version", "time", "lock", "by"],
        "properties": {
            "event": {"type": "string", "enum": _EVENT_NAMES},
            "resource": {"type": "string"},
            "version": {"type": "integer"},
            "time": {"type": "number", "description": "Epoch seconds, database clock."},
            "lock": {"oneOf": [_ref("schemas", "Lock"), {"type": "null"}]},
            "by": {
                "oneOf": [
                    {
                        "type": "object",
                        "required": ["id", "name"],
                        "properties": {
                            "id": {"type": "string"},
                            "name": {"type": ["string", "null"]},
                        },
                    },
                    {"type": "null"},
                ]
            },
        },
    },
    "LockList": {
        "type": "object",
        "required": ["items", "next"],
        "properties": {
            "items": {"type": "array", "items": _ref("schemas", "Lock")},
            "next": {"type": ["string", "null"], "description": "Cursor of the next page."},
        },
    },
    "BulkReleaseRequest": {
        "type": "object",
        "required": ["resources"],
        "additionalProperties": False,
        "properties": {
            "resources": {
                "type": "array", "minItems": 1, "items": {"type": "string"},
                "description": "Paths, keyed as <path>/@lock keys them, or lock keys as "
                "the listing shows them (of the request's own namespace only); at most 1000 "
                "(and LOCKING_MAX_BODY_BYTES).",
            },
            "force": {"type": "boolean", "default": False},
        },
    },
    "BulkReleaseResult": {
        "type": "object",
        "required": ["released", "not_locked", "refused"],
        "properties": {
            "released": {
                "type": "array", "items": {"type": "string"},
                "description": "Keys whose lock this request ended.",
            },
            "not_locked": {
                "type": "array", "items": {"type": "string"},
                "description": "Keys nobody held (nothing to release).",
            },
            "refused": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["resource", "status", "message"],
                    "properties": {
                        "resource": {"type": "string"},
                        "status": {"type": "integer", "enum": [400, 403, 409, 503]},
                        "message": {"type": "string"},
                    },
                },
            },
        },
    },
}

_STREAM_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "Last-Event-ID", "in": "header", "required": False,
        "description": "Resume after this event id: every retained event after it is sent "
        "first (empty: from now, as EventSource sends before it has seen an id).",
        "schema": {"type": "string", "pattern": "^[0-9]{0,18}$"},
    },
    {
        "name": "last_event_id", "in": "query", "required": False,
        "description": "The same as the Last-Event-ID header, for clients that cannot set it.",
        "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
    },
]

def _filters(segment: str, dialects: list[str]) -> list[dict[str, Any]]:
    return [
    {"name": "prefix", "in": "query", "required": False,
     "schema": {"type": "string", "maxLength": 511,
                "pattern": f"^/*(?:{segment}(?:/+{segment})*)?/*$"},
     "description": "Only the lock on this path and the locks below it (a path of the "
     "request's own host or mount, keyed as <path>/@lock keys it)."},
    {"name": "owner", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "Only locks of this user id (`me`: the caller)."},
    {"name": "dialect", "in": "query", "required": False,
     "schema": {"type": "string", "enum": dialects},
     "description": "Only locks on paths of this dialect."},
    ]


def _stream_response(builder: OpenAPIBuilder) -> dict[str, Any]:
    return {
        "description": "A `text/event-stream` of lock events (see LockEvent), with "
        "keep-alive comments; it stays open.",
        # Each event of the stream (as OpenAPI 3.2's itemSchema, which tools apply here).
        "content": {"text/event-stream": {"schema": {
            "type": "object",
            "required": ["data"],
            "properties": {
                "id": {"type": "string", "description": "The event id, for Last-Event-ID."},
                "event": {"type": "string", "enum": [*_EVENT_NAMES, "gap"]},
                "data": {
                    "type": "string",
                    "description": "JSON: a LockEvent; for `gap`, {last_event_id, oldest, "
                    "head} (missed events are no longer retained: reload).",
                },
                "retry": {"type": "integer"},
            },
        }}},
    }


def add_event_paths(builder: OpenAPIBuilder) -> None:
    """Add ``<path>/@lock/events`` and the ``LOCKING_LOCKS_URL`` paths to ``builder``."""
    from .openapi import _SEGMENT

    state = builder.state
    spec = builder.spec
    from .listing import dialect_names

    filters = _filters(_SEGMENT, sorted(dialect_names(state)))
    for name, schema in _SCHEMAS.items():
        spec.components.schema(name, component=schema)
    stream_errors = builder.errors([400, 401, 403, 404, 500, 503], "Error")
    content = state.content_dialect
    if state.lock_events is not None and content is not None:
        path_parameter = {
            "name": "path", "in": "path", "required": True,
            "description": "The resource path, as for @lock.",
            "schema": {"type": "string", "maxLength": 500,
                       "pattern": f"^{_SEGMENT}(?:/{_SEGMENT})*$"},
        }
        # <path>/@lock/events, and the root's /@lock/events (a path parameter cannot be empty).
        for path, parameters in ((f"{content.prefix}/{{path}}/@lock/events", [path_parameter]),
                                 (f"{content.prefix}/@lock/events", [])):
            spec.path(
                path=path,
                operations={
                    "get": {
                        "summary": "Stream the events of the resource's lock (and of an "
                        "infinite-depth lock above it) as Server-Sent Events.",
                        "tags": ["events"],
                        "parameters": list(_STREAM_PARAMETERS),
                        "responses": {"200": _stream_response(builder), **stream_errors},
                    }
                },
                parameters=parameters,
            )
    url = state.events_settings.locks_url
    if not url:
        return
    json_errors = [400, 401, 403, 413, 415, 500, 503]
    spec.path(
        path=url,
        operations={
            "get": {
                "summary": "List the live locks the caller may view (tokens never shown).",
                "tags": ["listing"],
                "parameters": [
                    *filters,
                    {"name": "limit", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1,
                                "maximum": state.events_settings.page_size * 10}},
                    {"name": "cursor", "in": "query", "required": False,
                     "schema": {"type": "string", "maxLength": 1024, "pattern": "^[^\\x00]*$"},
                     "description": "The `next` of the previous page: the listing goes on "
                     "with the locks whose key sorts after it."},
                ],
                "responses": {
                    "200": {
                        "description": "One page of locks, in resource order.",
                        "content": {"application/json": {"schema": _ref("schemas", "LockList")}},
                    },
                    **builder.errors([400, 401, 500, 503], "Error"),
                },
            },
            "delete": {
                "summary": "Release several locks: the caller's own, and others' with "
                "force (as the authorizer allows unlock and steal).",
                "tags": ["listing"],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {
                        "schema": _ref("schemas", "BulkReleaseRequest")}},
                },
                "responses": {
                    "200": {
                        "description": "What was released and what was refused, and why.",
                        "content": {"application/json": {
                            "schema": _ref("schemas", "BulkReleaseResult")}},
                    },
                    **builder.errors(json_errors, "Error"),
                },
            },
        },
    )
    if state.lock_events is not None:
        spec.path(
            path=f"{url}/events",
            operations={
                "get": {
                    "summary": "Stream the events of every lock the filters select.",
                    "tags": ["events"],
                    "parameters": [*filters, *_STREAM_PARAMETERS],
                    "responses": {"200": _stream_response(builder), **stream_errors},
                }
            },
        )
