"""A store class registered for a scheme serves that scheme wherever the app picks a store:
an explicit ``LOCKING_DATABASE_URI``, the default SQLite file in the instance folder, and the
host's own database (``Locking(app, db=db)``) alike (docs/stores.rst)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_locking import Locking
from flask_locking.store import SQLiteStore, register_store, store_class_for
from flask_locking.store.registry import registered_schemes


class TracingSQLiteStore(SQLiteStore):
    """A host's SQLite store: the built-in one, registered again for ``sqlite``."""


@pytest.fixture
def tracing_sqlite() -> Iterator[None]:
    register_store(TracingSQLiteStore)
    try:
        yield
    finally:
        register_store(SQLiteStore)  # the built-in class serves sqlite again
    assert store_class_for("sqlite://") is SQLiteStore


@pytest.mark.parametrize("where", ["explicit URI", "default file", "host database"])
def test_a_registered_sql_store_serves_its_scheme_everywhere(
    tmp_path: Any, tracing_sqlite: None, where: str
) -> None:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(TESTING=True, SECRET_KEY="s")
    if where == "explicit URI":
        app.config["LOCKING_DATABASE_URI"] = f"sqlite:///{tmp_path}/locks.sqlite3"
    db = None
    if where == "host database":
        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path}/host.sqlite3"
        db = SQLAlchemy(app)
    Locking(app, db=db)
    with app.app_context():
        store = app.extensions["locking"].engine.store
        assert type(store) is TracingSQLiteStore
        app.extensions["locking"].extension.acquire("/docs/1", "ann")
    app.extensions["locking"].close()
    assert "sqlite" in registered_schemes()
