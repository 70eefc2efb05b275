"""Flask-SQLAlchemy + Flask-Migrate: ``flask db migrate`` picks the lock tables up.

With ``Locking(app, db=db)`` the tables are defined on ``db.metadata`` at ``init_app`` time,
so Alembic autogenerate sees them; the host runs the migration and turns
``LOCKING_CREATE_TABLE`` off.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from flask_locking import Locking
from tests.conftest import backend_url

flask_sqlalchemy = pytest.importorskip("flask_sqlalchemy")
flask_migrate = pytest.importorskip("flask_migrate")
from alembic.autogenerate import compare_metadata  # noqa: E402 - alembic comes with flask_migrate
from alembic.migration import MigrationContext  # noqa: E402


@pytest.fixture(autouse=True)
def keep_logging() -> Iterator[None]:
    """Flask-Migrate's generated env.py calls ``logging.config.fileConfig``, which disables
    every logger already made (``flask_locking``'s included) and replaces the root handlers:
    put them back, so that later tests' log captures still see our warnings."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    loggers = [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    disabled = {logger.name: logger.disabled for logger in loggers}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for logger in loggers:
        logger.disabled = disabled[logger.name]


def host_app(tmp_path: Path, url: str, table: str) -> tuple[Flask, Any]:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        SECRET_KEY="test",
        SQLALCHEMY_DATABASE_URI=url,
        LOCKING_TABLE_NAME=table,
        LOCKING_CREATE_TABLE=False,
    )
    db = flask_sqlalchemy.SQLAlchemy()
    db.init_app(app)
    # the host's own table
    sa.Table(
        f"{table}_notes",
        db.metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("text", sa.String(200)),
    )
    Locking(app, db=db)
    return app, db


def ours(table: str) -> Any:
    """Alembic filter: only this test's tables (the server is shared with other tests)."""
    names = {
        table,
        f"{table}_meta",
        f"{table}_notes",
        f"{table}_alembic",
        f"{table}_events",
        f"{table}_event_head",
    }

    def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
        return type_ != "table" or name in names

    return include_name


# Flask-Migrate's generated env.py tries the old Flask-SQLAlchemy API first.
@pytest.mark.filterwarnings("ignore:'get_engine' is deprecated:DeprecationWarning")
def test_flask_db_migrate_creates_the_lock_tables(tmp_path: Path) -> None:
    table = "lk_" + uuid.uuid4().hex[:12]
    url = f"sqlite:///{tmp_path}/host.sqlite3"
    app, db = host_app(tmp_path, url, table)
    migrations = tmp_path / "migrations"
    flask_migrate.Migrate(app, db, directory=str(migrations))
    runner = app.test_cli_runner()

    for args in (["db", "init"], ["db", "migrate", "-m", "initial"]):
        result = runner.invoke(args=args)
        assert result.exit_code == 0, result.output
    scripts = list((migrations / "versions").glob("*.py"))
    assert len(scripts) == 1
    script = scripts[0].read_text()
    assert f"op.create_table('{table}'" in script
    assert f"op.create_table('{table}_meta'" in script
    assert f"op.create_table('{table}_notes'" in script

    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    engine = sa.create_engine(url)
    try:
        names = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {table, f"{table}_meta", f"{table}_notes"} <= names

    # The migrated tables serve locks with LOCKING_CREATE_TABLE off, and a second
    # autogenerate finds nothing to change.
    locking = app.extensions["locking"].extension
    with app.app_context():
        lock = locking.acquire("/notes/1", "alice")
        assert locking.get("/notes/1", owner="alice").token == lock.token
        db.session.rollback()  # the host's rollback does not touch the lock
        assert locking.get("/notes/1") is not None
    result = runner.invoke(args=["db", "migrate", "-m", "again"])
    assert result.exit_code == 0, result.output
    assert "No changes in schema detected." in result.output
    app.extensions["locking"].close()
    with app.app_context():
        db.engine.dispose()


def test_store_ddl_matches_the_metadata(tmp_path: Path, backend: str) -> None:
    """The tables the store creates are exactly what autogenerate expects: no spurious diff
    (types, collations, nullability, indexes) on any backend."""
    url = backend_url(backend, tmp_path)
    table = "lk_" + uuid.uuid4().hex[:12]
    app, db = host_app(tmp_path, url, table)
    engine = sa.create_engine(url)
    try:
        with app.app_context():
            state = app.extensions["locking"]
            with engine.connect() as conn:
                context = MigrationContext.configure(
                    conn, opts={"include_name": ours(table), "compare_type": True}
                )
                missing = compare_metadata(context, db.metadata)
            added = {diff[1].name for diff in missing if diff[0] == "add_table"}
            assert {table, f"{table}_meta", f"{table}_events", f"{table}_event_head"} <= added

            store = state.engine.store
            store.create_schema()  # what LOCKING_CREATE_TABLE does
            # (and the lock events' tables; the engine, built before they existed, runs
            # without events: see test_missing_event_tables_turn_events_off_not_the_locks)
            events = store.event_log()
            assert events is not None
            events.create_schema()
            db.metadata.tables[f"{table}_notes"].create(engine)
            with engine.connect() as conn:
                context = MigrationContext.configure(
                    conn, opts={"include_name": ours(table), "compare_type": True}
                )
                assert compare_metadata(context, db.metadata) == []
            state.close()
            db.engine.dispose()
    finally:
        with engine.begin() as conn:
            for name in (
                f"{table}_notes",
                f"{table}_events",
                f"{table}_event_head",
                f"{table}_meta",
                table,
            ):
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))
        engine.dispose()
