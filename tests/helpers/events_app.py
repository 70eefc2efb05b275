"""The helpers app with fast event settings and an authorizer: ``mallory`` may view
nothing (for the event-stream server tests)."""

from __future__ import annotations

from typing import Any

from flask import Flask

from helpers.app import create_app as create_base_app


def create_app() -> Flask:
    app = create_base_app(LOCKING_EVENTS_HEARTBEAT=0.5)
    locking = app.extensions["locking"].extension

    @locking.authorizer
    def authorize(action: str, resource: str, identity: Any) -> bool:
        if identity is not None and identity.id == "mallory":
            return False
        return action != "steal"

    return app
