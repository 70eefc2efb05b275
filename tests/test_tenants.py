"""Tenants sharing one lock store never block or see each other (docs/guard.rst).

Tenants by URL (subdomains, ``SCRIPT_NAME`` mounts) key into their own namespace; tenants
by connection settings (a PostgreSQL ``search_path``, a MySQL ``init_command``) keep their
locks where those settings say, checked on the server itself.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import backend_url, drop_tables
from flask import Flask, jsonify, request

from flask_locking import Locking
from flask_locking.store import engine_for_uri

ALICE = {"X-User": "alice"}
BOB = {"X-User": "bob"}


def tenant_app(tmp_path: Any, table: str, *, database_url: str | None, **config: Any) -> Flask:
    app = Flask(__name__, instance_path=str(tmp_path / uuid.uuid4().hex))
    app.config.update(
        TESTING=True,
        SECRET_KEY="tenants",
        LOCKING_TABLE_NAME=table,
        LOCKING_DATABASE_URI=database_url,
        **config,
    )
    subdomain = "<tenant>" if app.config.get("SERVER_NAME") else None

    @app.route("/docs/<int:doc_id>", methods=["GET", "PATCH"], subdomain=subdomain)
    def document(doc_id: int, tenant: str = "") -> Any:
        return jsonify(id=doc_id, tenant=tenant)

    locking = Locking(app)
    locking.identity_loader(lambda: request.headers.get("X-User"))
    return app


def assert_isolated(client_a: Any, base_a: str, client_b: Any, base_b: str) -> None:
    """Alice's lock in tenant A neither blocks nor shows in tenant B, and still guards A."""
    held = client_a.post("/docs/1/@lock", headers=ALICE, base_url=base_a)
    assert held.status_code == 200, held.get_data(as_text=True)
    assert client_a.patch("/docs/01", headers=BOB, base_url=base_a).status_code == 403
    seen = client_b.get("/docs/1/@lock", headers=BOB, base_url=base_b).get_json()
    assert seen == {"locked": False, "stealable": True}
    assert client_b.patch("/docs/1", headers=BOB, base_url=base_b).status_code == 200
    own = client_b.post("/docs/1/@lock", headers=BOB, base_url=base_b)
    assert own.status_code == 200, own.get_data(as_text=True)  # not 409 "locked by alice"
    assert own.get_json()["creator"] == "bob"


# -- tenants by URL, on every backend ------------------------------------------------------


def test_subdomain_tenants_key_into_their_own_host(
    tmp_path: Any, database_url: str, table_name: str
) -> None:
    app = tenant_app(tmp_path, table_name, database_url=database_url, SERVER_NAME="example.test")
    app.subdomain_matching = True
    client = app.test_client()
    try:
        acme, globex = "http://acme.example.test", "http://globex.example.test"
        assert_isolated(client, acme, client, globex)
        lock = client.get("/docs/1/@lock", headers=ALICE, base_url=acme).get_json()
        assert lock["resource"] == "[acme.example.test]/docs/1"
    finally:
        app.extensions["locking"].close()


def test_script_name_mounts_key_into_their_own_mount(
    tmp_path: Any, database_url: str, table_name: str
) -> None:
    # One app served at two mount points (or two apps of one code base) on one store.
    app = tenant_app(tmp_path, table_name, database_url=database_url)
    client = app.test_client()
    try:
        a, b = "http://example.test/tenant_a", "http://example.test/tenant_b"
        assert_isolated(client, a, client, b)
        lock = client.get("/docs/1/@lock", headers=ALICE, base_url=a).get_json()
        assert lock["resource"] == "[/tenant_a]/docs/1"
        with app.test_request_context("/", base_url=a):  # the Python API, in A's request
            assert app.extensions["locking"].extension.get("/docs/001").owner.id == "alice"
    finally:
        app.extensions["locking"].close()


# -- tenants by connection settings -------------------------------------------------------


@pytest.fixture
def postgresql_url(tmp_path: Any) -> str:
    return backend_url("postgresql", tmp_path)


@pytest.fixture
def mysql_url(tmp_path: Any) -> str:
    return backend_url("mysql", tmp_path)


def _created(url: str, kind: str, prefix: str) -> Iterator[tuple[str, str]]:
    """Two fresh schemas / databases on the server, dropped afterwards."""
    names = (f"{prefix}a_{uuid.uuid4().hex[:8]}", f"{prefix}b_{uuid.uuid4().hex[:8]}")
    drop = "CASCADE" if kind == "SCHEMA" else ""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for name in names:
                conn.execute(sa.text(f"CREATE {kind} {name}"))
        yield names
        with engine.begin() as conn:
            for name in names:
                conn.execute(sa.text(f"DROP {kind} {name} {drop}"))
    finally:
        engine.dispose()


@pytest.fixture
def schemas(postgresql_url: str) -> Iterator[tuple[str, str]]:
    yield from _created(postgresql_url, "SCHEMA", "tenant_")


def rows_in(url: str, qualified_table: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.text(f"SELECT resource FROM {qualified_table}"))]
    finally:
        engine.dispose()


@contextlib.contextmanager
def two_tenants(
    tmp_path: Any, table: str, server_url: str, urls: tuple[str, str], places: tuple[str, str]
) -> Iterator[sa.Engine]:
    """Two tenants' apps on ``urls``: isolated, each lock row in its own schema/database
    (``places``, checked on the server); yields tenant A's store engine."""
    apps = [tenant_app(tmp_path, table, database_url=url) for url in urls]
    try:
        assert_isolated(
            apps[0].test_client(), "http://a.test", apps[1].test_client(), "http://b.test"
        )
        for place in places:
            assert rows_in(server_url, f"{place}.{table}") == ["/docs/1"]
        yield apps[0].extensions["locking"].engine.store.engine
    finally:
        for app in apps:
            app.extensions["locking"].close()


def has_table(url: str, table: str) -> bool:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return sa.inspect(conn).has_table(table)
    finally:
        engine.dispose()


def with_query(url: str, **query: str) -> str:
    return sa.make_url(url).update_query_dict(query).render_as_string(hide_password=False)


def test_postgresql_search_path_in_the_url_keeps_each_tenants_locks_apart(
    tmp_path: Any, postgresql_url: str, schemas: tuple[str, str], table_name: str
) -> None:
    a_url, b_url = (with_query(postgresql_url, options=f"-csearch_path={s}") for s in schemas)
    with (
        two_tenants(tmp_path, table_name, postgresql_url, (a_url, b_url), schemas) as store,
        store.connect() as conn,
    ):
        # Our timeouts were merged in, not dropped, and not in place of the user's path.
        assert conn.execute(sa.text("SHOW search_path")).scalar() == schemas[0]
        assert conn.execute(sa.text("SHOW statement_timeout")).scalar() == "5s"
    assert not has_table(postgresql_url, table_name)  # nothing landed in the default schema


def test_postgresql_user_statement_timeout_beats_ours(
    tmp_path: Any, postgresql_url: str, table_name: str
) -> None:
    url = with_query(postgresql_url, options="-c statement_timeout=7000", connect_timeout="9")
    app = tenant_app(tmp_path, table_name, database_url=url)
    try:
        store_engine = app.extensions["locking"].engine.store.engine
        with store_engine.connect() as conn:
            assert conn.execute(sa.text("SHOW statement_timeout")).scalar() == "7s"
            assert conn.execute(sa.text("SHOW lock_timeout")).scalar() == "5s"
            params = conn.connection.driver_connection.info.get_parameters()
        assert params["connect_timeout"] == "9"
    finally:
        app.extensions["locking"].close()
        drop(postgresql_url, table_name)


def test_flask_sqlalchemy_engine_options_choose_the_schema(
    tmp_path: Any, postgresql_url: str, schemas: tuple[str, str], table_name: str
) -> None:
    pytest.importorskip("flask_sqlalchemy")
    from flask_sqlalchemy import SQLAlchemy

    apps = []
    for schema in schemas:
        app = Flask(__name__, instance_path=str(tmp_path / schema))
        app.config.update(
            TESTING=True,
            SECRET_KEY="x",
            LOCKING_TABLE_NAME=table_name,
            SQLALCHEMY_DATABASE_URI=postgresql_url,
            SQLALCHEMY_ENGINE_OPTIONS={"connect_args": {"options": f"-csearch_path={schema}"}},
        )

        @app.patch("/docs/<int:doc_id>")
        def document(doc_id: int) -> Any:
            return jsonify(id=doc_id)

        db = SQLAlchemy(app)
        locking = Locking(app, db=db)
        locking.identity_loader(lambda: request.headers.get("X-User"))
        app.get("/docs/<int:doc_id>")(document)
        apps.append((app, db))
    try:
        (app_a, _), (app_b, _) = apps
        assert_isolated(app_a.test_client(), "http://a.test", app_b.test_client(), "http://b.test")
        assert rows_in(postgresql_url, f"{schemas[0]}.{table_name}") == ["/docs/1"]
        assert rows_in(postgresql_url, f"{schemas[1]}.{table_name}") == ["/docs/1"]
    finally:
        for app, db in apps:
            app.extensions["locking"].close()
            with app.app_context():
                db.engine.dispose()


@pytest.fixture
def databases(mysql_url: str) -> Iterator[tuple[str, str]]:
    yield from _created(mysql_url, "DATABASE", "lk_tenant_")


def test_mysql_init_command_in_the_url_keeps_each_tenants_locks_apart(
    tmp_path: Any, mysql_url: str, databases: tuple[str, str], table_name: str
) -> None:
    a_url, b_url = (
        with_query(mysql_url, init_command=f"USE {name}", read_timeout="17") for name in databases
    )
    with (
        two_tenants(tmp_path, table_name, mysql_url, (a_url, b_url), databases) as store,
        store.connect() as conn,
    ):
        assert conn.execute(sa.text("SELECT DATABASE()")).scalar() == databases[0]
        # Our lock wait bound still applies, and the user's read timeout beat ours.
        assert conn.execute(sa.text("SELECT @@session.innodb_lock_wait_timeout")).scalar() == 5
        assert conn.connection.driver_connection._read_timeout == 17
    assert not has_table(mysql_url, table_name)  # nothing landed in the URL's database


def test_mysql_user_lock_wait_timeout_in_init_command_is_kept(
    tmp_path: Any, mysql_url: str, table_name: str
) -> None:
    url = with_query(mysql_url, init_command="SET SESSION innodb_lock_wait_timeout = 11")
    app = tenant_app(tmp_path, table_name, database_url=url)
    try:
        store_engine = app.extensions["locking"].engine.store.engine
        with store_engine.connect() as conn:
            assert conn.execute(sa.text("SELECT @@session.innodb_lock_wait_timeout")).scalar() == 11
    finally:
        app.extensions["locking"].close()
        drop(mysql_url, table_name)


def drop(url: str, table: str) -> None:
    drop_tables(url, table)


def test_depth_and_overlap_never_cross_namespaces(make_app: Any, database_url: str) -> None:
    from flask_locking import LockConflict

    app = make_app(database_url=database_url)
    locking = app.extensions["locking"].extension
    with app.app_context():
        locking.acquire("[acme.example.com]/docs/1", "alice")
        locking.acquire("[/tenant_a]/docs/1", "alice", depth="infinity")
        # The default namespace's root covers its own paths only...
        root = locking.acquire("/", "bob", depth="infinity")
        assert root.resource == "/"
        # ...while a namespace's root covers that namespace.
        with pytest.raises(LockConflict):
            locking.acquire("[acme.example.com]/", "bob", depth="infinity")
        with pytest.raises(LockConflict):
            locking.acquire("[/tenant_a]/docs/1/part", "bob")
        assert [lock.resource for lock in locking.locks("[acme.example.com]/")] == [
            "[acme.example.com]/docs/1"
        ]


def test_namespaced_keys_keep_their_namespace_through_every_helper() -> None:
    from flask_locking.resources import ancestors, descendant_bounds, is_within, normalize

    assert normalize("[acme.example.com]//docs/1/") == "[acme.example.com]/docs/1"
    assert normalize("[acme.example.com]") == "[acme.example.com]/"
    assert ancestors("[/t]/a/b") == ["[/t]/", "[/t]/a"]
    assert ancestors("[/t]/") == []
    assert descendant_bounds("[/t]/") == ("[/t]/", "[/t]0")
    low, high = descendant_bounds("/")
    assert (low, high) == ("/", "0") and not low < "[/t]/a" < high  # other namespaces: outside
    assert is_within("[/t]/a/b", "[/t]/") and is_within("[/t]/a/b", "[/t]/a")
    assert not is_within("[/t]/a", "/") and not is_within("/a", "[/t]/")


@pytest.mark.parametrize("timeout", [0.5, 1, 2.5, 5])
def test_mysql_socket_timeouts_outlast_the_servers_lock_wait(
    mysql_url: str, timeout: float
) -> None:
    """A client that gives up before the server's lock wait ends leaves its statement queued:
    a release answered "unavailable" would then happen after the answer (seen in CI)."""
    engine = engine_for_uri(mysql_url, timeout=timeout)
    try:
        with engine.connect() as conn:
            lock_wait = conn.execute(sa.text("SELECT @@session.innodb_lock_wait_timeout")).scalar()
            driver = conn.connection.driver_connection
            assert driver._read_timeout >= lock_wait + 1
            assert driver._write_timeout >= lock_wait + 1
    finally:
        engine.dispose()
