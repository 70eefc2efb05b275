"""Server-Sent Events: ``<path>/@lock/events`` and ``<LOCKING_LOCKS_URL>/events``.

A stream sends every event after the client's ``Last-Event-ID`` (header, or the
``last_event_id`` query argument) that is still retained, then live events as the hub reads
them; a comment line every ``LOCKING_EVENTS_HEARTBEAT`` seconds keeps proxies and the
connection alive. Each event is shown only to a listener the authorizer lets ``view`` its
resource, and carries no token.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from flask import Response, request, stream_with_context

from ..errors import InvalidInput, TooManyStreams
from ..identity import is_allowed
from ..lock import Owner
from ..resources import ancestors
from .model import LockEvent

if TYPE_CHECKING:
    from ..dialects.base import Dialect
    from ..state import LockingState

#: Longest ``Last-Event-ID`` accepted (digits).
_MAX_ID_DIGITS = 18

Match = Callable[[LockEvent], bool]


def covering_match(key: str) -> Match:
    """Events of the lock on ``key`` and of infinite-depth locks above it."""
    above = frozenset(ancestors(key))
    return lambda e: e.resource == key or (e.lock.infinite and e.resource in above)


def last_event_id() -> int | None:
    """The id to resume after: the ``Last-Event-ID`` header, else ``?last_event_id=``
    (each checked when given, so that a malformed one is a 400 wherever it is)."""
    if len(request.args.getlist("last_event_id")) > 1:
        raise InvalidInput("The query argument 'last_event_id' may be given only once.")
    header = _event_id(request.headers.get("Last-Event-ID"), "Last-Event-ID")
    query = _event_id(request.args.get("last_event_id"), "last_event_id")
    return header if header is not None else query


def _event_id(raw: str | None, name: str) -> int | None:
    if raw is None:
        return None
    value = raw
    if name == "Last-Event-ID" and value == "":
        return None  # EventSource sends an empty header before it has seen an id
    if not (value.isascii() and value.isdigit()):
        raise InvalidInput(f"{name} must be an event id (a whole number ≥ 0), not {value[:40]!r}.")
    if len(value) > _MAX_ID_DIGITS:
        raise InvalidInput(
            f"{name} must be an event id of at most {_MAX_ID_DIGITS} digits, not one of"
            f" {len(value)} digits."
        )
    return int(value)


def event_stream(
    state: LockingState, dialect: Dialect, match: Match, identity: Owner | None,
) -> Response:
    """The ``text/event-stream`` response for events that ``match`` and that ``identity``
    may view; 503 in ``dialect``'s format past ``LOCKING_EVENTS_MAX_STREAMS``."""
    hub = state.event_hub()
    if hub is None:
        return dialect.error(404, "Lock events are switched off (LOCKING_EVENTS_ENABLED).")
    settings = state.events_settings
    resume = last_event_id()
    try:
        hub.open()
    except TooManyStreams:
        return dialect.error(
            503,
            "Too many open event streams on this server; try again shortly.",
            headers={"Retry-After": str(state.config.retry_after)},
        )
    try:
        head = hub.log.head()
        oldest = hub.log.oldest() if resume is not None else None
    except BaseException:
        hub.close()
        raise
    cursor = head if resume is None or resume > head else resume
    gap = resume is not None and (resume > head or (oldest is not None and resume + 1 < oldest))
    if gap and oldest is not None and resume is not None and resume < head:
        cursor = max(cursor, oldest - 1)

    def visible(event: LockEvent) -> bool:
        return match(event) and is_allowed(state, "view", event.resource, identity)

    def generate() -> Iterator[str]:
        position = cursor
        yield f"retry: {int(settings.retry * 1000)}\n: flask-locking events\n\n"
        if gap:
            # Events the client missed are gone (past the retention) or the log was reset:
            # the client should reload the state rather than trust the replay.
            body = {"last_event_id": resume, "oldest": oldest, "head": head}
            yield f"event: gap\ndata: {json.dumps(body)}\n\n"
        while True:
            events = hub.take(position, settings.heartbeat)
            if events is None:
                events = [LockEvent.from_row(row) for row in hub.log.after(position)]
            if not events:
                yield ": keep-alive\n\n"
                continue
            for event in events:
                position = event.id
                if visible(event):
                    yield format_event(event)

    closed = threading.Lock()

    def close_once() -> None:
        # Called when the server closes the response, whether or not it was ever iterated.
        if closed.acquire(blocking=False):
            hub.close()

    response = Response(stream_with_context(generate()), mimetype="text/event-stream")
    response.call_on_close(close_once)
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass events through at once
    return response


def format_event(event: LockEvent) -> str:
    """One event in the ``text/event-stream`` format."""
    data = json.dumps(event.to_json(), separators=(",", ":"))
    return f"id: {event.id}\nevent: {event.event}\ndata: {data}\n\n"
