"""A tiny host app for the server and fault tests (independent of ``example_app``).

Configured from the environment so gunicorn workers and the test agree:
``LOCKING_TEST_APP_DB`` (database URL), ``LOCKING_TEST_APP_TABLE`` (lock table).
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, Response, jsonify, request

from flask_locking import Locking, current_lock


def create_app(**config: Any) -> Flask:
    """The app: ``/docs/<id>`` (GET, PATCH guarded) and the content ``@lock`` endpoints;
    identity from the ``X-User`` header; each response names the worker process."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="helpers-app",
        LOCKING_DATABASE_URI=os.environ.get("LOCKING_TEST_APP_DB"),
        LOCKING_TABLE_NAME=os.environ.get("LOCKING_TEST_APP_TABLE", "locking_locks"),
    )
    app.config.update(config)

    @app.route("/docs/<doc_id>", methods=["GET", "PATCH"])
    def document(doc_id: str) -> Any:
        return jsonify(id=doc_id, version=current_lock.version if current_lock else None)

    @app.after_request
    def name_worker(response: Response) -> Response:
        response.headers["X-Worker-Pid"] = str(os.getpid())
        return response

    locking = Locking(app)

    @locking.identity_loader
    def load_identity() -> str | None:
        return request.headers.get("X-User")

    return app
