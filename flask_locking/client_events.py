"""Reading ``text/event-stream`` responses for :class:`flask_locking.client.LockingClient`."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple


class ServerEvent(NamedTuple):
    """One lock event as received: ``id`` (for ``Last-Event-ID``), ``event`` (acquired,
    refreshed, released, stolen, expired; ``gap`` after a replay that lost events) and
    ``data`` (the decoded JSON)."""

    id: str | None
    event: str
    data: Any


def parse_events(lines: Iterable[str]) -> Iterator[ServerEvent]:
    """The events in the lines of a ``text/event-stream`` (comments and ``retry:`` skipped)."""
    event_id: str | None = None
    name = "message"
    data: list[str] = []
    for line in lines:
        line = line.rstrip("\r\n")
        if line == "":
            if data:
                text = "\n".join(data)
                try:
                    payload: Any = json.loads(text)
                except ValueError:
                    payload = text
                yield ServerEvent(event_id, name, payload)
            name, data = "message", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "id":
            event_id = value
        elif field == "event":
            name = value
        elif field == "data":
            data.append(value)
