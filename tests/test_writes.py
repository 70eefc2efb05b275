"""Writes under a lock (issue 16): ``hold``, hold on flush, refresh on write, fencing.

The races themselves are in ``test_writes_races.py``; these tests pin each behaviour down
on every backend: the refusal's status and format, the rollback, what a held row does to
other lock operations, and the fencing rule over arbitrary version sequences.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask, jsonify, request
from flask_sqlalchemy import SQLAlchemy
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from flask_locking import Locking, LockLost, StoreUnavailable, current_lock
from flask_locking.fencing import FencedMixin, fenced_update
from flask_locking.signals import lock_refreshed, write_refused
from flask_locking.writes import hold, is_held, same_database
from tests.conftest import drop_tables


@dataclass
class Host:
    app: Flask
    db: Any
    locking: Locking
    Item: Any

    def names(self) -> list[str]:
        with self.app.app_context(), self.db.engine.connect() as conn:
            return sorted(conn.execute(sa.select(self.Item.__table__.c.name)).scalars())


@contextlib.contextmanager
def build(database_url: str, table_name: str, tmp_path: Any, **config: Any) -> Iterator[Host]:
    """A Flask-SQLAlchemy host sharing its database with the locks. ``PATCH /items/<name>``
    adds an item; ``?lose=1`` releases the lock (from another connection) first, and
    ``?hold=0`` leaves the holding to ``LOCKING_HOLD_ON_FLUSH``."""
    db = SQLAlchemy()

    class Item(db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = "items_" + uuid.uuid4().hex[:10]
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

    @app.route("/items/<name>", methods=["PATCH"])
    @app.route("/api/v1.0/companies/1/jobs/<name>", methods=["PATCH"])
    @app.route("/api/v2/clients/1/reference/<name>", methods=["PATCH"])
    def add(name: str) -> Any:
        if request.args.get("lose"):
            locking.release(current_lock.resource, token=current_lock.token)
        db.session.add(Item(name=name))
        if request.args.get("hold", "1") == "1":
            held = current_lock.hold(db.session)
            assert held.version == current_lock.version and held.token == current_lock.token
        db.session.flush()
        assert is_held(db.session, current_lock)
        db.session.commit()
        return jsonify(version=current_lock.version, expires=current_lock.expires_at)

    with app.app_context():
        db.create_all()
    try:
        yield Host(app, db, locking, Item)
    finally:
        with app.app_context():
            db.session.remove()
            app.extensions["locking"].close()
            db.drop_all()
            db.engine.dispose()
        if not database_url.startswith("sqlite"):
            drop_tables(database_url, table_name)


@pytest.fixture
def host(database_url: str, table_name: str, tmp_path: Any) -> Iterator[Host]:
    with build(database_url, table_name, tmp_path) as built:
        yield built


def lock(host: Host, resource: str, timeout: float = 60, depth: int | str = 0) -> Any:
    with host.app.app_context():
        return host.locking.acquire(resource, "alice", timeout=timeout, depth=depth)


def test_hold_lets_the_write_commit_under_a_live_lock(host: Host) -> None:
    token = lock(host, "/items/a").token
    response = host.app.test_client().patch(
        "/items/a", headers={"X-User": "alice", "Lock-Token": token}
    )
    assert response.status_code == 200
    assert host.names() == ["a"]
    with host.app.app_context():
        assert host.locking.get("/items/a") is not None  # a hold ends with the transaction


@pytest.mark.parametrize(
    ("path", "status", "body"),
    [
        ("/items/x", 412, {"error": {"type": "PreconditionFailed"}}),
        ("/api/v1.0/companies/1/jobs/7", 412, {"error": {"type": "PreconditionFailed"}}),
        ("/api/v2/clients/1/reference/x", 409, {"status": "error", "code": 409}),
    ],
)
def test_a_lost_lock_is_the_dialects_stale_refusal_and_rolls_back(
    host: Host, path: str, status: int, body: dict[str, Any]
) -> None:
    if "reference" in path:
        token = lock(host, path.rsplit("/", 1)[0], depth="infinity").token
    else:
        token = lock(host, path).token
    refused: list[str] = []

    def on_refused(_app: Any, **kwargs: Any) -> None:
        refused.append(kwargs["reason"])

    with write_refused.connected_to(on_refused):
        response = host.app.test_client().patch(
            path + "?lose=1", headers={"X-User": "alice", "Lock-Token": token}
        )
    assert response.status_code == status
    data = response.get_json()
    for key, value in body.items():
        assert data[key] == value or (
            isinstance(value, dict) and value.items() <= data[key].items()
        )
    assert token not in response.get_data(as_text=True)
    assert refused == ["stale"]
    assert host.names() == []  # the item added before the hold was rolled back


def test_hold_on_flush(database_url: str, table_name: str, tmp_path: Any) -> None:
    with build(database_url, table_name, tmp_path, LOCKING_HOLD_ON_FLUSH=True) as host:
        client = host.app.test_client()
        token = lock(host, "/items/a").token
        ok = client.patch("/items/a?hold=0", headers={"X-User": "alice", "Lock-Token": token})
        assert ok.status_code == 200
        token = lock(host, "/items/b").token
        lost = client.patch(
            "/items/b?hold=0&lose=1", headers={"X-User": "alice", "Lock-Token": token}
        )
        assert lost.status_code == 412
        # No token, no lock: the hook has nothing to hold and the write goes on.
        with host.app.app_context():
            host.db.session.add(host.Item(name="c"))
            host.db.session.commit()
        assert host.names() == ["a", "c"]


def test_hold_on_flush_needs_the_hosts_db(tmp_path: Any) -> None:
    app = Flask(__name__, instance_path=str(tmp_path))
    app.config["LOCKING_HOLD_ON_FLUSH"] = True
    with pytest.raises(RuntimeError, match="db=db"):
        Locking(app)


def test_a_held_row_makes_other_lock_operations_wait_then_give_way(
    database_url: str, table_name: str, tmp_path: Any
) -> None:
    """The lease runs out while the host's transaction still holds the row: the lock reads
    as expired, but nobody can take, release or refresh it until that transaction ends;
    they wait at most LOCKING_STORE_TIMEOUT and answer StoreUnavailable. Then it gives way."""
    with build(database_url, table_name, tmp_path, LOCKING_STORE_TIMEOUT=0.5) as host:
        app, locking = host.app, host.locking
        with app.app_context():
            held = locking.acquire("/items/h", "alice", timeout=0.3)
            store = app.extensions["locking"].engine.store
            session = host.db.session
            hold(session, held)
            session.add(host.Item(name="h"))
            session.flush()
            while store.now_ms() < held.expires_at * 1000:
                time.sleep(0.05)
            assert locking.get("/items/h") is None  # expired, as everyone reads it
            outcomes: list[str] = []

            def contend() -> None:
                with app.app_context():
                    try:
                        locking.acquire("/items/h", "bob", timeout=60)
                        outcomes.append("granted")
                    except StoreUnavailable:
                        outcomes.append("unavailable")

            thread = threading.Thread(target=contend)
            thread.start()
            thread.join(30)
            assert outcomes == ["unavailable"]
            session.commit()  # the hold ends with the transaction
            bob = locking.acquire("/items/h", "bob", timeout=60)
            assert bob.version == held.version + 1
        assert host.names() == ["h"]


def test_a_held_row_delays_release_and_refresh(
    database_url: str, table_name: str, tmp_path: Any
) -> None:
    with build(database_url, table_name, tmp_path, LOCKING_STORE_TIMEOUT=0.5) as host:
        app, locking = host.app, host.locking
        with app.app_context():
            held = locking.acquire("/items/r", "alice", timeout=60)
            hold(host.db.session, held)
            results: list[str] = []

            def release() -> None:
                with app.app_context():
                    for call in (
                        lambda: locking.refresh("/items/r", held.token),
                        lambda: locking.release("/items/r", token=held.token),
                    ):
                        try:
                            call()
                            results.append("done")
                        except StoreUnavailable:
                            results.append("unavailable")

            thread = threading.Thread(target=release)
            thread.start()
            thread.join(30)
            assert results == ["unavailable", "unavailable"]
            host.db.session.rollback()
            assert locking.release("/items/r", token=held.token) is not None


def test_hold_refuses_a_session_on_another_database(tmp_path: Any) -> None:
    host_url, locks = f"sqlite:///{tmp_path}/host.sqlite3", f"sqlite:///{tmp_path}/locks.sqlite3"
    with (
        build(host_url, "lk_other", tmp_path, LOCKING_DATABASE_URI=locks) as host,
        host.app.app_context(),
    ):
        held = host.locking.acquire("/items/z", "alice")
        with pytest.raises(RuntimeError, match="FencedMixin"):
            hold(host.db.session, held)


def test_hold_without_a_verified_lock_is_lost(host: Host) -> None:
    with host.app.app_context():
        with pytest.raises(LockLost):
            hold(host.db.session)
        unverified = host.locking.acquire("/items/q").without_token()
        with pytest.raises(LockLost):
            hold(host.db.session, unverified)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("postgresql+psycopg://u:p@db/app", "postgresql+psycopg2://x@db:5432/app", True),
        ("postgresql://db/app", "postgresql://db/other", False),
        ("postgresql://db/app", "postgresql://db2/app", False),
        ("mysql+pymysql://r@h/app", "mariadb+pymysql://r@h:3306/app", True),
        ("mysql+pymysql://r@h/app", "postgresql://r@h/app", False),
        ("sqlite:///x/../app.db", "sqlite:///app.db", True),
        ("sqlite://", "sqlite://", False),
        ("sqlite:///:memory:", "sqlite:///:memory:", False),
    ],
)
def test_same_database(a: str, b: str, same: bool) -> None:
    assert same_database(sa.make_url(a), sa.make_url(b)) is same


# -- refresh on write ---------------------------------------------------------------------


def test_refresh_on_write_restarts_the_lease(make_app: Any, database_url: str) -> None:
    app = make_app(database_url=database_url, LOCKING_REFRESH_ON_WRITE=True)
    client = app.test_client()
    token = client.post("/docs/1/@lock", json={"timeout": 60}, headers={"X-User": "a"}).get_json()[
        "token"
    ]
    with app.app_context():
        before = app.extensions["locking"].engine.get("/docs/1")
    time.sleep(0.01)
    refreshed: list[Any] = []
    with lock_refreshed.connected_to(lambda _app, lock: refreshed.append(lock)):
        response = client.patch("/docs/1", headers={"X-User": "a", "Lock-Token": token})
    assert response.status_code == 200
    with app.app_context():
        after = app.extensions["locking"].engine.get("/docs/1")
    assert after.version == before.version and after.time > before.time
    assert [lock.time for lock in refreshed] == [after.time]
    assert (
        client.patch("/docs/1", headers={"X-User": "a", "Lock-Token": "wrong"}).status_code == 412
    )


def test_refresh_on_write_is_off_by_default(make_app: Any) -> None:
    app = make_app()
    client = app.test_client()
    token = client.post("/docs/1/@lock", headers={"X-User": "a"}).get_json()["token"]
    with app.app_context():
        before = app.extensions["locking"].engine.get("/docs/1")
    time.sleep(0.01)
    assert client.patch("/docs/1", headers={"X-User": "a", "Lock-Token": token}).status_code == 200
    with app.app_context():
        assert app.extensions["locking"].engine.get("/docs/1").time == before.time


def test_extend_never_revives_an_ended_grant(make_app: Any, database_url: str) -> None:
    app = make_app(database_url=database_url)
    with app.app_context():
        engine = app.extensions["locking"].engine
        first = engine.acquire("/docs/e", "a", timeout=60)
        row = engine.store.live("/docs/e")
        assert engine.extend(row) is not None
        engine.release("/docs/e", token=first.token)
        assert engine.extend(row) is None  # released: stays released
        second = engine.acquire("/docs/e", "b", timeout=60)
        assert engine.extend(row) is None  # and never touches the next grant
        assert engine.get("/docs/e").time == second.time


# -- fencing ------------------------------------------------------------------------------


class Base(DeclarativeBase):
    pass


class Page(FencedMixin, Base):
    __tablename__ = "fenced_pages"
    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str] = mapped_column(sa.String(50))


@dataclass(frozen=True)
class FakeLock:
    version: int
    token: str | None = "t"


@pytest.fixture
def fenced_engine(tmp_path: Any) -> Iterator[sa.Engine]:
    engine = sa.create_engine(f"sqlite:///{tmp_path}/fenced.sqlite3")
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


def test_fencing_refuses_an_older_version(fenced_engine: sa.Engine) -> None:
    with Session(fenced_engine) as session:
        session.add(Page(id=1, body="new"))
        session.commit()
    with Session(fenced_engine) as stale, Session(fenced_engine) as fresh:
        old = stale.get(Page, 1)
        new = fresh.get(Page, 1)
        assert old is not None and new is not None
        new.fence(FakeLock(5))  # type: ignore[arg-type]
        new.body = "under version 5"
        fresh.commit()
        old.fence(FakeLock(4))  # type: ignore[arg-type]
        old.body = "under version 4"
        with pytest.raises(LockLost, match="newer lock"):
            stale.commit()
        stale.rollback()
        doomed = stale.get(Page, 1)
        assert doomed is not None and doomed.body == "under version 5"
        stale.delete(doomed)
        doomed.lock_version = 3
        with pytest.raises(LockLost):
            stale.flush()
    with pytest.raises(LockLost):
        Page().fence(None)
    with pytest.raises(LockLost):
        Page().fence(FakeLock(1, token=None))  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=6), min_size=1, max_size=12))
def test_fencing_accepts_exactly_the_writes_not_older_than_the_record(versions: list[int]) -> None:
    """Whatever the order of versions, a write is accepted iff its version is at least the
    highest accepted so far, and the record ends with the last accepted write."""
    engine = sa.create_engine("sqlite://")
    Base.metadata.create_all(engine)
    try:
        with Session(engine) as session:
            session.add(Page(id=1, body="-", lock_version=0))
            session.commit()
        highest, last = 0, "-"
        for i, version in enumerate(versions):
            with Session(engine) as session:
                page = session.get(Page, 1)
                assert page is not None
                page.lock_version = version
                page.body = f"w{i}"
                try:
                    session.commit()
                    accepted = True
                except LockLost:
                    accepted = False
            assert accepted is (version >= highest)
            if accepted:
                highest, last = version, f"w{i}"
        with engine.connect() as conn:
            row = conn.execute(sa.select(Page.__table__)).one()
        assert (row.lock_version, row.body) == (highest, last)
        table = Page.__table__
        with engine.begin() as conn:
            for version, matched in ((highest - 1, 0), (highest, 1)):
                stmt = fenced_update(table, version, table.c.id == 1).values(body="core")  # type: ignore[attr-defined]
                assert conn.execute(stmt).rowcount == matched
    finally:
        engine.dispose()
