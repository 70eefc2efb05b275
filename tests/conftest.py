"""Shared fixtures: a fresh app per test, and the lock-store backends.

Backends other than SQLite come from environment variables. Unset: those tests skip and
say why. Set but unreachable: they fail (CI sets them all).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask, jsonify, request

from flask_locking import Locking

BACKEND_ENV = {
    "postgresql": "LOCKING_TEST_POSTGRESQL_URL",
    "mysql": "LOCKING_TEST_MYSQL_URL",
}
ALL_BACKENDS = ["sqlite", "postgresql", "mysql"]


def backend_url(backend: str, tmp_path: Any) -> str:
    """The database URL for ``backend``: a fresh SQLite file, or the server from the env."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/locks.sqlite3"
    variable = BACKEND_ENV[backend]
    url = os.environ.get(variable)
    if not url:
        pytest.skip(f"{backend} tests need {variable} (e.g. set by .ci/run)")
    engine = sa.create_engine(url, pool_pre_ping=True)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as error:  # set but unreachable: a failure, never a skip
        pytest.fail(f"{variable}={url} is set but unreachable: {error}")
    finally:
        engine.dispose()
    return url


def drop_tables(url: str, table: str) -> None:
    """Remove a test's lock tables from a shared server."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for name in (f"{table}_events", f"{table}_event_head", f"{table}_meta", table):
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))
    finally:
        engine.dispose()


@pytest.fixture(params=ALL_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each backend in turn."""
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: Any) -> str:
    return backend_url(backend, tmp_path)


@pytest.fixture
def table_name() -> str:
    """A table name of this test's own, so tests can share one server."""
    return "lk_" + uuid.uuid4().hex[:12]


AppFactory = Callable[..., Flask]


@pytest.fixture
def make_app(tmp_path: Any, table_name: str) -> Iterator[AppFactory]:
    """Build a fresh app with a document route and :class:`Locking` on it.

    Keyword arguments become config; ``database_url=`` picks the store (default: SQLite in
    the app's instance folder). The identity is the ``X-User`` header (absent: anonymous)
    unless ``identity=False``.
    """
    created: list[tuple[Flask, str | None]] = []

    def factory(*, identity: bool = True, database_url: str | None = None, **config: Any) -> Flask:
        app = Flask(__name__, instance_path=str(tmp_path / f"instance{len(created)}"))
        app.config.update(
            TESTING=True,
            SECRET_KEY="test-secret",
            LOCKING_TABLE_NAME=table_name,
            LOCKING_DATABASE_URI=database_url,
            **config,
        )

        @app.route("/docs/<doc_id>", methods=["GET", "PATCH", "PUT", "DELETE"])
        def document(doc_id: str) -> Any:
            from flask_locking import current_lock

            return jsonify(
                id=doc_id,
                method=request.method,
                version=current_lock.version if current_lock else None,
            )

        @app.route("/docs/<doc_id>/parts/<part>", methods=["GET", "PATCH"])
        def part(doc_id: str, part: str) -> Any:
            return jsonify(id=doc_id, part=part)

        locking = Locking(app)
        if identity:

            @locking.identity_loader
            def load_identity() -> str | None:
                return request.headers.get("X-User")

        created.append((app, database_url))
        return app

    yield factory
    for app, url in created:
        state = app.extensions["locking"]
        state.close()
        if url and url.startswith(("postgresql", "mysql", "mariadb")):
            drop_tables(url, table_name)


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> Any:
    return app.test_client()
