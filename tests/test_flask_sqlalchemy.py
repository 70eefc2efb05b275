"""``Locking(app, db=db)`` (docs/locks.rst): the lock table lives in the host's database and on its
metadata, but lock operations never ride on the host's ``db.session`` transaction."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask, jsonify, request
from flask_sqlalchemy import SQLAlchemy

from flask_locking import LockConflict, Locking, StoreUnavailable


@dataclass
class Host:
    app: Flask
    db: Any
    locking: Locking
    Item: Any
    table_name: str


@pytest.fixture
def host(database_url: str, table_name: str, tmp_path: Any) -> Iterator[Host]:
    yield from build_host(database_url, table_name, tmp_path)


def build_host(database_url: str, table_name: str, tmp_path: Any, **config: Any) -> Iterator[Host]:
    """A host app on Flask-SQLAlchemy with an ``Item`` model, sharing its database with locks."""
    db = SQLAlchemy()
    item_table = "items_" + uuid.uuid4().hex[:10]

    class Item(db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = item_table
        id = db.Column(db.Integer, primary_key=True)
        name = db.Column(db.String(50), nullable=False)

    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        TESTING=True,
        SECRET_KEY="s",
        SQLALCHEMY_DATABASE_URI=database_url,
        LOCKING_TABLE_NAME=table_name,
        **config,
    )
    db.init_app(app)
    locking = Locking(app, db=db)

    @locking.identity_loader
    def load() -> str | None:
        return request.headers.get("X-User")

    @app.route("/items/<int:item_id>", methods=["GET", "PATCH"])
    def item(item_id: int) -> Any:
        return jsonify(id=item_id)

    @app.post("/items/<name>/create-and-lock")
    def create_and_lock(name: str) -> Any:
        """Adds an item, locks it, then fails: the host rolls its work back."""
        db.session.add(Item(name=name))
        db.session.flush()
        lock = locking.acquire(f"/items/{name}", "alice")
        db.session.rollback()
        return jsonify(token=lock.token)

    with app.app_context():
        db.create_all()
    try:
        yield Host(app, db, locking, Item, table_name)
    finally:
        with app.app_context():
            db.session.remove()
            app.extensions["locking"].close()
            db.drop_all()
            if not database_url.startswith("sqlite"):
                with db.engine.begin() as conn:
                    for name in (
                        f"{table_name}_events",
                        f"{table_name}_event_head",
                        f"{table_name}_meta",
                        table_name,
                    ):
                        conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))
            db.engine.dispose()


def item_names(host: Host) -> list[str]:
    """The committed items, read on a connection of their own."""
    with host.app.app_context(), host.db.engine.connect() as conn:
        rows = conn.execute(sa.select(host.Item.__table__.c.name)).scalars().all()
    return sorted(rows)


def test_lock_tables_are_on_the_host_metadata(host: Host) -> None:
    tables = host.db.metadata.tables
    assert host.table_name in tables
    assert f"{host.table_name}_meta" in tables
    with host.app.app_context():
        # db.create_all() made them before any lock was taken.
        inspector = sa.inspect(host.db.engine)
        assert inspector.has_table(host.table_name)
        lock = host.locking.acquire("/items/1", "alice")
        # The lock is in the host's database ...
        rows = host.db.session.execute(sa.select(tables[host.table_name])).all()
        assert [row.resource for row in rows] == ["/items/1"]
        assert lock.token not in [str(v) for row in rows for v in row]
        # ... reached through an engine of the extension's own.
        store_engine = host.app.extensions["locking"].engine.store.engine
        assert store_engine is not host.db.engine
        assert store_engine.url.render_as_string(False) == host.db.engine.url.render_as_string(
            False
        )
        host.db.session.rollback()


def test_taking_a_lock_does_not_commit_pending_host_work(host: Host) -> None:
    with host.app.app_context():
        host.db.session.add(host.Item(name="pending"))
        lock = host.locking.acquire("/items/1", "alice")
        host.locking.refresh("/items/1", lock.token)
        host.db.session.rollback()
        assert host.db.session.query(host.Item).count() == 0
        assert host.locking.get("/items/1") is not None
    assert item_names(host) == []


def test_taking_a_lock_does_not_roll_back_pending_host_work(host: Host) -> None:
    with host.app.app_context():
        host.db.session.add(host.Item(name="kept"))
        host.locking.acquire("/items/1", "alice")
        with pytest.raises(LockConflict):
            host.locking.acquire("/items/1", "bob")  # a refused lock
        host.locking.release("/items/1", owner="alice")
        host.db.session.commit()
    assert item_names(host) == ["kept"]


def test_host_rollback_does_not_undo_a_lock(host: Host) -> None:
    with host.app.app_context():
        host.db.session.add(host.Item(name="doomed"))
        lock = host.locking.acquire("/items/1", "alice")
        host.db.session.rollback()
        live = host.locking.get("/items/1", owner="alice")
        assert live is not None and live.token == lock.token
    client = host.app.test_client()
    assert client.patch("/items/1").status_code == 403
    assert client.patch("/items/1", headers={"Lock-Token": lock.token}).status_code == 200


def test_host_rollback_does_not_undo_a_release(host: Host) -> None:
    with host.app.app_context():
        host.locking.acquire("/items/1", "alice")
        host.db.session.add(host.Item(name="doomed"))
        host.locking.release("/items/1", owner="alice")
        host.db.session.rollback()
        assert host.locking.get("/items/1") is None


def test_flushed_host_work_and_a_lock_in_one_request(host: Host, backend: str) -> None:
    if backend == "sqlite":
        pytest.skip(
            "on SQLite a flushed host transaction holds the file's write lock; see "
            "test_sqlite_host_write_lock_delays_lock_writes"
        )
    client = host.app.test_client()
    response = client.post("/items/a/create-and-lock")
    assert response.status_code == 200
    token = response.get_json()["token"]
    assert item_names(host) == []  # the flushed insert was rolled back ...
    with host.app.app_context():
        assert host.locking.get("/items/a") is not None  # ... the lock was not
    assert client.patch("/items/a", headers={"Lock-Token": token}).status_code != 403


def test_flushed_host_work_is_not_committed_by_a_lock(host: Host, backend: str) -> None:
    if backend == "sqlite":
        pytest.skip("on SQLite a flushed host transaction holds the file's write lock")
    with host.app.app_context():
        host.db.session.add(host.Item(name="flushed"))
        host.db.session.flush()
        host.locking.acquire("/items/1", "alice")
        assert item_names(host) == []  # not visible outside the host's transaction
        host.db.session.commit()
    assert item_names(host) == ["flushed"]


def test_sqlite_host_write_lock_delays_lock_writes(
    database_url: str, backend: str, table_name: str, tmp_path: Any
) -> None:
    """Documented SQLite limit: a host transaction holding the write lock makes lock writes
    wait up to LOCKING_STORE_TIMEOUT, then fail as unavailable; never join the host's work."""
    if backend != "sqlite":
        pytest.skip("SQLite only")
    for host in build_host(database_url, table_name, tmp_path, LOCKING_STORE_TIMEOUT=0.3):
        with host.app.app_context():
            host.locking.get("/items/1")  # open the store before the host takes the lock
            host.db.session.add(host.Item(name="flushed"))
            host.db.session.flush()
            with pytest.raises(StoreUnavailable):
                host.locking.acquire("/items/1", "alice")
            host.db.session.commit()
            assert host.locking.acquire("/items/1", "alice").version == 1
        assert item_names(host) == ["flushed"]
        response = host.app.test_client().post("/items/1/@lock", headers={"X-User": "bob"})
        assert response.status_code == 409


def test_create_table_off_uses_the_hosts_tables(
    database_url: str, table_name: str, tmp_path: Any
) -> None:
    for host in build_host(database_url, table_name, tmp_path, LOCKING_CREATE_TABLE=False):
        # db.create_all() in build_host made the lock tables from the host's metadata.
        client = host.app.test_client()
        response = client.post("/items/1/@lock", headers={"X-User": "alice"})
        assert response.status_code == 200
        assert response.get_json()["version"] == 1
