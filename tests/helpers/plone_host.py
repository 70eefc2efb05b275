"""A host app shaped like the Plone site of plone.restapi's examples, for the Plone
compatibility tests (``tests/test_plone_compat.py``, ``tests/test_volto_flow.py``).

Content lives at ``/plone/<id>``: ``GET`` answers its title and the ``lock`` key that Volto's
edit loader looks for; ``PATCH`` (guarded) stores the title and answers 204, as
plone.restapi does. The identity is the ``X-User`` header: a user of
``tests/data/plone_restapi_locking.json`` becomes an owner object with Plone's name and
author URL, any other id stays a bare id.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flask import Flask, abort, jsonify, request

from flask_locking import Locking, Owner

DATA = json.loads(
    (Path(__file__).parent.parent / "data" / "plone_restapi_locking.json").read_text()
)
USERS: dict[str, dict[str, str]] = DATA["users"]


def create_plone_host(
    instance_path: str, mode: str, *, titles: dict[str, str] | None = None, **config: Any
) -> Flask:
    """The host app with ``LOCKING_CONTENT_COMPAT = mode``; ``config`` adds ``LOCKING_*``
    keys; ``titles`` (shared by apps that share one lock store) holds the content."""
    app = Flask(__name__, instance_path=instance_path)
    app.config.update(TESTING=True, SECRET_KEY="plone-replay", LOCKING_CONTENT_COMPAT=mode)
    app.config.update(config)
    store = (
        titles if titles is not None else {"front-page": "Welcome to Plone", "doc1": "My Document"}
    )
    locking = Locking(app)

    @app.route("/plone/<name>", methods=["GET", "PATCH"])
    def content(name: str) -> Any:
        if name not in store:
            abort(404)
        if request.method == "PATCH":
            store[name] = request.get_json()["title"]
            return "", 204
        lock = locking.get(f"/plone/{name}")
        info = lock.to_json() if lock is not None else {"locked": False, "stealable": True}
        return jsonify({"@id": request.url, "title": store[name], "lock": info})

    @locking.identity_loader
    def identity() -> Any:
        user = request.headers.get("X-User")
        known = USERS.get(user or "")
        return Owner(id=user, **known) if user and known else user

    return app
