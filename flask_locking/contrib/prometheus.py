"""Prometheus counters fed by flask-locking's signals (extra ``[prometheus]``).

::

    from flask_locking.contrib.prometheus import LockingMetrics

    metrics = LockingMetrics(app)           # or LockingMetrics(); metrics.init_app(app)

Exposes, on ``registry`` (default: prometheus_client's global registry):

- ``flask_locking_events_total{event}``: ``acquired``, ``refreshed``, ``released``,
  ``stolen``, ``conflict``, ``expired``;
- ``flask_locking_writes_refused_total{reason}``: guarded writes refused by the guard,
  ``reason`` ``locked`` (no token) or ``stale`` (a token that is not the live lock's).

Serving the metrics (``prometheus_client.make_wsgi_app()``, a multiprocess collector under
gunicorn, ...) stays the host's choice; nothing here adds a route.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from prometheus_client import REGISTRY, CollectorRegistry, Counter

from ..signals import BY_EVENT, write_refused


class LockingMetrics:
    """Count lock events of one or more apps in Prometheus counters."""

    def __init__(
        self,
        app: Flask | None = None,
        *,
        registry: CollectorRegistry = REGISTRY,
        namespace: str = "flask_locking",
    ) -> None:
        self.events = Counter(
            "events",
            "Lock events: acquired, refreshed, released, stolen, conflict, expired.",
            ["event"],
            namespace=namespace,
            registry=registry,
        )
        self.writes_refused = Counter(
            "writes_refused",
            "Guarded writes refused by the guard (locked: no token; stale: wrong token).",
            ["reason"],
            namespace=namespace,
            registry=registry,
        )
        for event in BY_EVENT:
            self.events.labels(event=event)  # export zeros before the first event
        for reason in ("locked", "stale"):
            self.writes_refused.labels(reason=reason)
        self._receivers: list[Any] = []
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Count the events that ``app`` sends."""
        for event, signal in BY_EVENT.items():
            receiver = self._counter_for(event)
            self._receivers.append(receiver)
            signal.connect(receiver, sender=app, weak=False)
        write_refused.connect(self._on_refused, sender=app, weak=False)

    def _counter_for(self, event: str) -> Any:
        child = self.events.labels(event=event)

        def receiver(sender: Any, **kwargs: Any) -> None:
            child.inc()

        return receiver

    def _on_refused(self, sender: Any, *, reason: str = "locked", **kwargs: Any) -> None:
        self.writes_refused.labels(reason=reason).inc()
