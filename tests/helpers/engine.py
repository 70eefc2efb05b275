"""The lock engine behind an app, and the kinds of the events it recorded."""

from __future__ import annotations

from flask import Flask

from flask_locking.engine import LockEngine


def engine_of(app: Flask) -> LockEngine:
    """The :class:`LockEngine` of ``app``'s extension."""
    engine: LockEngine = app.extensions["locking"].engine
    return engine


def kinds(engine: LockEngine) -> list[str]:
    """The kinds of every event ``engine`` recorded, oldest first."""
    assert engine.events is not None
    return [row.event for row in engine.events.after(0)]
