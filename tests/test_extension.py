"""The extension itself (docs/quickstart.rst): setup, config, several apps, keys, tokens at rest."""

from __future__ import annotations

import logging
import os
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask, jsonify, request

from flask_locking import Locking
from flask_locking.config import DEFAULTS


def make_plain_app(tmp_path: Any, name: str, **config: Any) -> Flask:
    """An app without :class:`Locking` yet, with one document route."""
    app = Flask(__name__, instance_path=str(tmp_path / name))
    app.config.update(TESTING=True, **config)

    @app.route("/docs/<doc_id>", methods=["GET", "PATCH"])
    def document(doc_id: str) -> Any:
        return jsonify(id=doc_id)

    return app


@pytest.fixture
def apps(tmp_path: Any) -> Any:
    """Build apps with :func:`make_plain_app`; close their stores afterwards."""
    created: list[Flask] = []

    def factory(name: str, **config: Any) -> Flask:
        app = make_plain_app(tmp_path, name, **config)
        created.append(app)
        return app

    yield factory
    for app in created:
        state = app.extensions.get("locking")
        if state is not None:
            state.close()


# -- setup -----------------------------------------------------------------------------


def test_locking_app_registers_the_extension(apps: Any) -> None:
    app = apps("a", SECRET_KEY="s")
    locking = Locking(app)
    state = app.extensions["locking"]
    assert state.extension is locking
    response = app.test_client().post("/docs/1/@lock")
    assert response.status_code == 200
    with app.app_context():
        assert locking.get("/docs/1") is not None


def test_factory_pattern(apps: Any) -> None:
    locking = Locking()

    def create_app(name: str) -> Flask:
        app = apps(name, SECRET_KEY="s")
        locking.init_app(app)
        return app

    app = create_app("a")
    assert app.extensions["locking"].extension is locking
    assert app.test_client().post("/docs/1/@lock").status_code == 200
    with app.app_context():
        assert [lock.resource for lock in locking.locks()] == ["/docs/1"]


def test_double_init_is_refused(apps: Any) -> None:
    app = apps("a", SECRET_KEY="s")
    locking = Locking(app)
    with pytest.raises(RuntimeError, match="already"):
        locking.init_app(app)
    with pytest.raises(RuntimeError, match="already"):
        Locking(app)
    # The first setup still works, and the blueprint is registered once.
    assert app.test_client().post("/docs/1/@lock").status_code == 200


def test_two_apps_with_different_stores_are_independent(apps: Any) -> None:
    locking = Locking()
    one = apps("one", SECRET_KEY="s")
    two = apps("two", SECRET_KEY="s")
    locking.init_app(one)
    locking.init_app(two)
    c1, c2 = one.test_client(), two.test_client()
    token = c1.post("/docs/1/@lock", headers={"X-User": "a"}).get_json()["token"]
    assert c2.get("/docs/1/@lock").get_json() == {"locked": False, "stealable": True}
    assert c2.patch("/docs/1").status_code == 200
    assert c1.patch("/docs/1").status_code == 403
    assert c2.patch("/docs/1", headers={"Lock-Token": token}).status_code == 412
    with one.app_context():
        assert len(locking.locks()) == 1
    with two.app_context():
        assert locking.locks() == []
        locking.acquire("/docs/2", "b")
    with one.app_context():
        assert locking.get("/docs/2") is None
    assert one.extensions["locking"] is not two.extensions["locking"]


def test_each_app_has_its_own_hooks(apps: Any) -> None:
    one, two = apps("one", SECRET_KEY="s"), apps("two", SECRET_KEY="s")
    first, second = Locking(one), Locking(two)

    @first.identity_loader
    def load() -> str:
        return "from-one"

    assert one.test_client().post("/docs/1/@lock").get_json()["creator"] == "from-one"
    assert two.test_client().post("/docs/1/@lock").get_json()["creator"] is None
    assert second.identity_loader_callback is None


def test_config_defaults_are_in_app_config(apps: Any) -> None:
    app = apps("a", SECRET_KEY="s", LOCKING_DEFAULT_TIMEOUT=30)
    Locking(app)
    for key, value in DEFAULTS.items():
        assert key in app.config, key
        if key != "LOCKING_DEFAULT_TIMEOUT":
            assert app.config[key] == value, key
    assert app.config["LOCKING_DEFAULT_TIMEOUT"] == 30  # the host's value is kept
    assert app.config["LOCKING_MAX_TIMEOUT"] == 86400
    assert set(app.config["LOCKING_GUARDED_METHODS"]) == {"PATCH"}
    assert app.config["LOCKING_DATABASE_URI"] is None
    assert app.config["LOCKING_CREATE_TABLE"] is True
    assert app.config["LOCKING_GUARD_FAIL_OPEN"] is False
    assert all(key.startswith("LOCKING_") for key in DEFAULTS)
    assert app.test_client().post("/docs/1/@lock").get_json()["timeout"] == 30


def test_config_is_read_once(apps: Any) -> None:
    app = apps("a", SECRET_KEY="s")
    Locking(app)
    app.config["LOCKING_DEFAULT_TIMEOUT"] = 5
    app.config["LOCKING_GUARDED_METHODS"] = {"GET"}
    client = app.test_client()
    assert client.post("/docs/1/@lock").get_json()["timeout"] == 600
    assert client.get("/docs/1").status_code == 200
    assert client.patch("/docs/1").status_code == 403


def test_default_store_is_a_sqlite_file_in_the_instance_folder(apps: Any) -> None:
    app = apps("inst", SECRET_KEY="s")
    Locking(app)
    path = os.path.join(app.instance_path, "locking.sqlite3")
    assert not os.path.exists(app.instance_path)  # nothing is made before first use
    assert app.test_client().post("/docs/1/@lock").status_code == 200
    assert os.path.isfile(path)
    engine = app.extensions["locking"].engine.store.engine
    assert engine.dialect.name == "sqlite"
    assert os.path.samefile(engine.url.database, path)


def test_api_outside_an_app_context_is_a_clear_runtime_error(apps: Any) -> None:
    app = apps("a", SECRET_KEY="s")
    locking = Locking(app)
    with pytest.raises(RuntimeError, match="application context"):
        locking.acquire("/docs/1")
    with pytest.raises(RuntimeError):
        locking.locks()


def test_api_on_an_app_without_locking_is_a_clear_runtime_error(apps: Any) -> None:
    locking = Locking()
    bare = apps("bare", SECRET_KEY="s")
    with bare.app_context(), pytest.raises(RuntimeError, match="init_app"):
        locking.acquire("/docs/1")


# -- Flask-Login as the default identity --------------------------------------------------


def test_flask_login_current_user_is_the_identity_without_a_loader(apps: Any) -> None:
    from flask_login import LoginManager, UserMixin

    class User(UserMixin):
        def __init__(self, user_id: str) -> None:
            self.id = user_id
            self.name = user_id.title()

    app = apps("login", SECRET_KEY="s")
    manager = LoginManager(app)

    @manager.request_loader
    def from_header(req: Any) -> User | None:
        user = req.headers.get("X-Login")
        return User(user) if user else None

    Locking(app)
    client = app.test_client()
    body = client.post("/docs/1/@lock", headers={"X-Login": "ada"}).get_json()
    assert body["creator"] == "ada" and body["creator_name"] == "Ada"
    assert client.post("/docs/1/@lock", headers={"X-Login": "bob"}).status_code == 409
    # Flask-Login's anonymous user is the anonymous identity.
    assert client.post("/docs/2/@lock").get_json()["creator"] is None
    assert client.delete("/docs/1/@lock", headers={"X-Login": "ada"}).status_code == 200


# -- the token key -------------------------------------------------------------------------


def shared_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path}/shared.sqlite3"


def test_generated_key_is_shared_through_the_store(
    apps: Any, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    url = shared_url(tmp_path)
    one = apps("one", LOCKING_DATABASE_URI=url)
    two = apps("two", LOCKING_DATABASE_URI=url)
    assert not one.config.get("SECRET_KEY")
    locking = Locking()
    locking.init_app(one)
    locking.init_app(two)
    with caplog.at_level(logging.WARNING, logger="flask_locking"):
        lock = one.test_client().post("/docs/1/@lock").get_json()  # anonymous
    assert any("LOCKING_SECRET_KEY" in r.getMessage() for r in caplog.records)
    with two.app_context():
        assert locking.get("/docs/1", owner="someone").token is None
        assert locking.get("/docs/1", owner=None).token == lock["token"]
        assert locking.refresh("/docs/1", lock["token"]).token == lock["token"]
    assert (
        two.test_client().patch("/docs/1", headers={"Lock-Token": lock["token"]}).status_code == 200
    )
    # The key is kept in the store's meta table, never the same as a token.
    state = one.extensions["locking"]
    with state.engine.store.engine.connect() as conn:
        rows = conn.execute(sa.select(state.engine.store.meta)).all()
    assert len(rows) == 1 and rows[0].value and rows[0].value != lock["token"]


def test_identity_owner_sees_same_token_in_the_other_app(apps: Any, tmp_path: Any) -> None:
    url = shared_url(tmp_path)
    one = apps("one", LOCKING_DATABASE_URI=url)
    two = apps("two", LOCKING_DATABASE_URI=url)
    for app in (one, two):
        locking = Locking(app)
        locking.identity_loader(lambda: request.headers.get("X-User"))
    token = one.test_client().post("/docs/1/@lock", headers={"X-User": "a"}).get_json()["token"]
    assert (
        two.test_client().get("/docs/1/@lock", headers={"X-User": "a"}).get_json()["token"] == token
    )


def test_configured_key_wins_and_different_keys_give_different_tokens(
    apps: Any, tmp_path: Any
) -> None:
    url = shared_url(tmp_path)
    one = apps("one", LOCKING_DATABASE_URI=url, SECRET_KEY="k1")
    two = apps("two", LOCKING_DATABASE_URI=url, SECRET_KEY="k2")
    three = apps("three", LOCKING_DATABASE_URI=url, SECRET_KEY="k2", LOCKING_SECRET_KEY="k1")
    for app in (one, two, three):
        Locking(app)
    token = one.test_client().post("/docs/1/@lock").get_json()["token"]
    assert two.test_client().get("/docs/1/@lock").get_json()["token"] != token
    assert two.test_client().patch("/docs/1", headers={"Lock-Token": token}).status_code == 412
    assert three.test_client().get("/docs/1/@lock").get_json()["token"] == token
    assert three.test_client().patch("/docs/1", headers={"Lock-Token": token}).status_code == 200


def test_no_usable_token_at_rest(make_app: Any, database_url: str) -> None:
    app = make_app(database_url=database_url)
    client = app.test_client()
    tokens = [
        client.post(f"/docs/{i}/@lock", headers={"X-User": f"user{i}"}).get_json()["token"]
        for i in range(3)
    ]
    tokens.append(client.patch("/docs/0/@lock", headers={"X-User": "user0"}).get_json()["token"])
    state = app.extensions["locking"]
    store = state.engine.store
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(store.table)).all()
        meta = conn.execute(sa.select(store.meta)).all()
    assert len(rows) == 3
    cells = [str(value) for row in [*rows, *meta] for value in row]
    for token in tokens:
        assert token not in cells
        assert not any(token in cell for cell in cells)
    # Each row keeps a per-grant secret of its own (≥ 128 bits of hex), not a token.
    secrets = [row.secret for row in rows]
    assert len(set(secrets)) == 3 and all(len(s) >= 32 for s in secrets)
    # The token is the HMAC of the row under the app's key: the row alone does not give it.
    assert tokens[0] == tokens[3]


def test_generated_key_is_shared_on_every_backend(make_app: Any, database_url: str) -> None:
    import dataclasses

    one, two = make_app(database_url=database_url), make_app(database_url=database_url)
    for app in (one, two):
        # make_app always sets SECRET_KEY; take it away before the store is first used.
        state = app.extensions["locking"]
        state.config = dataclasses.replace(state.config, secret_key=None)
    token = one.test_client().post("/docs/1/@lock", headers={"X-User": "a"}).get_json()["token"]
    other = two.test_client()
    assert other.get("/docs/1/@lock", headers={"X-User": "a"}).get_json()["token"] == token
    assert other.patch("/docs/1", headers={"Lock-Token": token}).status_code == 200
    assert other.patch("/docs/1", headers={"Lock-Token": token[::-1]}).status_code == 412
    store = one.extensions["locking"].engine.store
    with store.engine.connect() as conn:
        assert len(conn.execute(sa.select(store.meta)).all()) == 1


def test_mysql_lock_table_is_unicode_whatever_the_database_default(tmp_path: Any) -> None:
    import uuid

    from sqlalchemy.engine import make_url

    url = os.environ.get("LOCKING_TEST_MYSQL_URL")
    if not url:
        pytest.skip("mysql tests need LOCKING_TEST_MYSQL_URL (e.g. set by .ci/run)")
    name = "fl_latin1_" + uuid.uuid4().hex[:8]
    server = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with server.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name} CHARACTER SET latin1"))
    app = make_plain_app(
        tmp_path,
        "latin1",
        SECRET_KEY="s",
        LOCKING_DATABASE_URI=make_url(url).set(database=name).render_as_string(False),
    )
    try:
        locking = Locking(app)
        with app.app_context():
            from flask_locking import Owner

            owner = Owner(id="李😀", name="Zoë 李 😀", url="https://example.org/😀")
            assert locking.acquire("/docs/😀", owner).owner == owner
            assert locking.get("/docs/😀").owner == owner
    finally:
        app.extensions["locking"].close()
        with server.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE {name}"))
        server.dispose()
