"""The ``LOCKING_EVENTS_*`` and ``LOCKING_LOCKS_*`` settings, read once per app."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import DEFAULTS


@dataclass(frozen=True)
class EventsSettings:
    """Live events and the lock listing (see ``docs/events.rst``)."""

    enabled: bool = True
    retention: float = 3600.0
    poll_interval: float = 0.25
    expiry_interval: float = 1.0
    heartbeat: float = 15.0
    retry: float = 2.0
    max_streams: int = 100
    locks_url: str | None = "/@locks"
    page_size: int = 100

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> EventsSettings:
        """Read and check the keys of a Flask config."""

        def get(key: str) -> Any:
            return config.get(key, DEFAULTS[key])

        numbers = {
            "LOCKING_EVENTS_RETENTION": float(get("LOCKING_EVENTS_RETENTION")),
            "LOCKING_EVENTS_POLL_INTERVAL": float(get("LOCKING_EVENTS_POLL_INTERVAL")),
            "LOCKING_EVENTS_EXPIRY_INTERVAL": float(get("LOCKING_EVENTS_EXPIRY_INTERVAL")),
            "LOCKING_EVENTS_HEARTBEAT": float(get("LOCKING_EVENTS_HEARTBEAT")),
            "LOCKING_EVENTS_RETRY": float(get("LOCKING_EVENTS_RETRY")),
        }
        for key, value in numbers.items():
            if not value > 0:
                raise ValueError(f"{key} must be a number of seconds > 0, got {value!r}.")
        max_streams = int(get("LOCKING_EVENTS_MAX_STREAMS"))
        page_size = int(get("LOCKING_LOCKS_PAGE_SIZE"))
        if max_streams < 0 or page_size < 1:
            raise ValueError(
                "LOCKING_EVENTS_MAX_STREAMS must be >= 0 and LOCKING_LOCKS_PAGE_SIZE >= 1."
            )
        url = get("LOCKING_LOCKS_URL")
        if url:
            url = "/" + str(url).strip().strip("/")
        return cls(
            enabled=bool(get("LOCKING_EVENTS_ENABLED")),
            retention=numbers["LOCKING_EVENTS_RETENTION"],
            poll_interval=numbers["LOCKING_EVENTS_POLL_INTERVAL"],
            expiry_interval=numbers["LOCKING_EVENTS_EXPIRY_INTERVAL"],
            heartbeat=numbers["LOCKING_EVENTS_HEARTBEAT"],
            retry=numbers["LOCKING_EVENTS_RETRY"],
            max_streams=max_streams,
            locks_url=url or None,
            page_size=page_size,
        )
