"""The before-request guard (docs/guard.rst): the token matrix, its cost, and faults."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Blueprint, Flask, jsonify
from werkzeug.routing import BaseConverter

from flask_locking import Locking

LOCKED_BODY = {"error": {"type": "Forbidden", "message": "Resource is locked."}}
ALICE = {"X-User": "alice"}
BOB = {"X-User": "bob"}
#: A closed loopback port: connecting fails at once.
DEAD_STORE = "postgresql+psycopg://postgres@127.0.0.1:1/x"


@pytest.fixture
def app(make_app: Any, database_url: str) -> Flask:
    return make_app(database_url=database_url)


def api(app: Flask) -> Any:
    return app.extensions["locking"].extension


@pytest.fixture
def dead_store_app(tmp_path: Any) -> Iterator[Any]:
    """Build apps whose lock store is a closed port (``make_app`` would try to drop tables
    there at teardown)."""
    created: list[Flask] = []

    def factory(**config: Any) -> Flask:
        app = Flask(__name__, instance_path=str(tmp_path / "instance"))
        app.config.update(
            TESTING=True,
            SECRET_KEY="test",
            LOCKING_DATABASE_URI=DEAD_STORE,
            LOCKING_STORE_TIMEOUT=1,
            **config,
        )

        @app.route("/docs/<doc_id>", methods=["GET", "PUT", "PATCH"])
        def document(doc_id: str) -> Any:
            from flask_locking import current_lock

            return jsonify(id=doc_id, version=current_lock.version if current_lock else None)

        Locking(app)
        created.append(app)
        return app

    yield factory
    for app in created:
        app.extensions["locking"].close()


def lock(client: Any, path: str = "/docs/1", user: str = "alice", **body: Any) -> dict[str, Any]:
    response = client.post(f"{path}/@lock", json=body or None, headers={"X-User": user})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()  # type: ignore[no-any-return]


def assert_stale(response: Any) -> None:
    assert response.status_code == 412, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"}
    assert body["error"]["type"] == "PreconditionFailed"
    assert body["error"]["message"]


@contextmanager
def statements(app: Flask) -> Iterator[list[str]]:
    """Collect every SQL statement the lock store sends while the block runs."""
    engine = app.extensions["locking"].engine.store.engine
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


# -- the token matrix ------------------------------------------------------------------


def test_locked_without_token_is_403_with_plone_body(client: Any) -> None:
    lock(client)
    for headers in ({}, ALICE, BOB, {"Lock-Token": ""}, {"Lock-Token": "<>"}):
        response = client.patch("/docs/1", headers=headers)
        assert response.status_code == 403
        assert response.get_json() == LOCKED_BODY


def test_owner_identity_alone_does_not_open_the_guard(client: Any) -> None:
    # The token, not the identity, is the proof: a second tab of the owner must re-read.
    lock(client)
    assert client.patch("/docs/1", headers=ALICE).status_code == 403


@pytest.mark.parametrize("form", ["{}", "<{}>", " {} ", "< {} >"])
def test_right_token_lets_the_view_run_with_current_lock(client: Any, form: str) -> None:
    held = lock(client)
    response = client.patch("/docs/1", headers={"Lock-Token": form.format(held["token"])})
    assert response.status_code == 200
    assert response.get_json() == {"id": "1", "method": "PATCH", "version": held["version"]}


def test_current_lock_carries_the_version_of_the_live_grant(client: Any) -> None:
    for expected in (1, 2, 3):
        held = lock(client, user=f"user{expected}")
        assert held["version"] == expected
        response = client.patch("/docs/1", headers={"Lock-Token": held["token"]})
        assert response.get_json()["version"] == expected
        client.delete("/docs/1/@lock", headers={"X-User": f"user{expected}"})


def test_current_lock_is_none_when_nothing_is_locked(client: Any) -> None:
    response = client.patch("/docs/1")
    assert response.status_code == 200
    assert response.get_json()["version"] is None


def test_wrong_token_is_412(client: Any) -> None:
    held = lock(client)
    for bad in ("nope", held["token"][:-1], held["token"] + "x", held["token"].upper(), "é" * 43):
        assert_stale(client.patch("/docs/1", headers={"Lock-Token": bad}))


def test_token_of_another_resource_is_412(client: Any) -> None:
    lock(client, "/docs/1")
    other = lock(client, "/docs/2")
    assert_stale(client.patch("/docs/1", headers={"Lock-Token": other["token"]}))
    # ... and the same user's token does not help either.
    assert client.patch("/docs/2", headers={"Lock-Token": other["token"]}).status_code == 200


def test_token_of_an_unlocked_resource_elsewhere_is_412(client: Any) -> None:
    other = lock(client, "/docs/2")
    assert_stale(client.patch("/docs/1", headers={"Lock-Token": other["token"]}))


def test_token_when_nothing_is_locked_is_412(client: Any) -> None:
    assert_stale(client.patch("/docs/1", headers={"Lock-Token": "a" * 43}))


def test_expired_token_is_412(app: Flask, client: Any) -> None:
    with app.app_context():
        token = api(app).acquire("/docs/1", "alice", timeout=60).token
    assert client.patch("/docs/1", headers={"Lock-Token": token}).status_code == 200
    with app.app_context():
        api(app).refresh("/docs/1", token, timeout=0.1)  # shorten the lease, then let it end
    time.sleep(0.3)
    assert_stale(client.patch("/docs/1", headers={"Lock-Token": token}))
    # No token at all is fine now: the lock is gone.
    assert client.patch("/docs/1").status_code == 200


def test_expired_token_after_someone_else_relocked_is_412(app: Flask, client: Any) -> None:
    with app.app_context():
        old = api(app).acquire("/docs/1", "alice", timeout=0.2).token
    time.sleep(0.4)
    new = lock(client, user="bob")
    assert_stale(client.patch("/docs/1", headers={"Lock-Token": old}))
    assert client.patch("/docs/1").status_code == 403
    assert client.patch("/docs/1", headers={"Lock-Token": new["token"]}).status_code == 200


def test_same_owner_relock_after_expiry_gets_a_new_token(app: Flask, client: Any) -> None:
    with app.app_context():
        old = api(app).acquire("/docs/1", "alice", timeout=0.2)
    time.sleep(0.4)
    new = lock(client, user="alice")
    assert new["token"] != old.token
    assert new["version"] == old.version + 1
    assert_stale(client.patch("/docs/1", headers={"Lock-Token": old.token}))


def test_released_token_is_412(client: Any) -> None:
    held = lock(client)
    client.delete("/docs/1/@lock", headers=ALICE)
    assert_stale(client.patch("/docs/1", headers={"Lock-Token": held["token"]}))
    # Released and re-locked by the same user: the old token stays dead.
    relocked = lock(client)
    assert_stale(client.patch("/docs/1", headers={"Lock-Token": held["token"]}))
    assert client.patch("/docs/1", headers={"Lock-Token": relocked["token"]}).status_code == 200


def test_stolen_token_is_412(client: Any) -> None:
    held = lock(client)
    assert client.delete("/docs/1/@lock", json={"force": True}, headers=BOB).status_code == 200
    thief = lock(client, user="bob")
    assert_stale(client.patch("/docs/1", headers={"Lock-Token": held["token"]}))
    assert client.patch("/docs/1", headers={"Lock-Token": thief["token"]}).status_code == 200


def test_refresh_keeps_the_token_valid(client: Any) -> None:
    held = lock(client)
    client.patch("/docs/1/@lock", headers=ALICE)
    assert client.patch("/docs/1", headers={"Lock-Token": held["token"]}).status_code == 200


def test_depth_infinity_lock_guards_paths_below(app: Flask, client: Any) -> None:
    with app.app_context():
        held = api(app).acquire("/docs/1", "alice", depth="infinity")
    assert client.patch("/docs/1/parts/a").get_json() == LOCKED_BODY
    assert client.patch("/docs/1").status_code == 403
    ok = client.patch("/docs/1/parts/a", headers={"Lock-Token": held.token})
    assert ok.status_code == 200
    assert ok.get_json() == {"id": "1", "part": "a"}
    assert_stale(client.patch("/docs/1/parts/a", headers={"Lock-Token": "x" * 43}))
    # Not below it: a sibling whose name merely starts the same way.
    assert client.patch("/docs/10").status_code == 200


def test_depth_zero_lock_does_not_guard_paths_below(client: Any) -> None:
    lock(client)
    assert client.patch("/docs/1/parts/a").status_code == 200


def test_guard_resolves_path_tricks(client: Any) -> None:
    lock(client)
    for path in ("/docs/1/", "/docs//1", "/docs/2/../1", "/docs/./1"):
        response = client.patch(path)
        assert response.status_code == 403, path
        assert response.get_json() == LOCKED_BODY


# -- which requests the guard looks at -------------------------------------------------


def test_unguarded_methods_pass_and_cost_no_query(app: Flask, client: Any) -> None:
    lock(client)
    with statements(app) as seen:
        for method in ("get", "put", "delete", "head", "options"):
            response = getattr(client, method)("/docs/1", headers={"Lock-Token": "junk"})
            assert response.status_code == 200, method
    assert seen == []


def test_guarded_request_costs_one_query(app: Flask, client: Any) -> None:
    held = lock(client)
    with statements(app) as seen:
        client.patch("/docs/1")
    assert len(seen) == 1, seen
    with statements(app) as seen:
        client.patch("/docs/1/parts/a", headers={"Lock-Token": held["token"]})
    assert len(seen) == 1, seen
    with statements(app) as seen:
        client.patch("/docs/2")
    assert len(seen) == 1, seen


def test_get_works_when_the_store_is_unreachable(dead_store_app: Any) -> None:
    client = dead_store_app().test_client()
    assert client.get("/docs/1").get_json()["id"] == "1"
    assert client.put("/docs/1").status_code == 200


def test_guarded_methods_config(make_app: Any, database_url: str) -> None:
    app = make_app(database_url=database_url, LOCKING_GUARDED_METHODS={"PUT", "DELETE"})
    client = app.test_client()
    lock(client)
    assert client.put("/docs/1").get_json() == LOCKED_BODY
    assert client.delete("/docs/1").status_code == 403
    assert client.patch("/docs/1").status_code == 200  # no longer guarded


def test_guarded_methods_config_is_case_insensitive(make_app: Any) -> None:
    app = make_app(LOCKING_GUARDED_METHODS=["put"])
    client = app.test_client()
    lock(client)
    assert client.put("/docs/1").status_code == 403


def test_guard_can_be_switched_off(make_app: Any) -> None:
    app = make_app(LOCKING_GUARD_ENABLED=False)
    client = app.test_client()
    lock(client)
    assert client.patch("/docs/1").status_code == 200


def test_exempt_view(app: Flask, client: Any) -> None:
    locking = api(app)

    @app.route("/notes/<note>", methods=["PATCH"])
    @locking.exempt
    def note(note: str) -> Any:
        return jsonify(note=note)

    lock(client, "/notes/1")
    with statements(app) as seen:
        assert client.patch("/notes/1").get_json() == {"note": "1"}
    assert seen == []
    # Other views stay guarded.
    lock(client, "/docs/1")
    assert client.patch("/docs/1").status_code == 403


def test_exempt_blueprint(app: Flask, client: Any) -> None:
    bp = Blueprint("admin", __name__, url_prefix="/admin")

    @bp.route("/docs/<doc>", methods=["GET", "PATCH"])
    def admin_doc(doc: str) -> Any:
        return jsonify(admin=doc)

    api(app).exempt(bp)
    app.register_blueprint(bp)
    guarded = Blueprint("public", __name__, url_prefix="/public")

    @guarded.route("/docs/<doc>", methods=["GET", "PATCH"])
    def public_doc(doc: str) -> Any:
        return jsonify(public=doc)

    app.register_blueprint(guarded)
    lock(client, "/admin/docs/1")
    lock(client, "/public/docs/1")
    assert client.patch("/admin/docs/1").get_json() == {"admin": "1"}
    assert client.patch("/public/docs/1").get_json() == LOCKED_BODY


def test_lock_endpoints_are_not_guarded(client: Any) -> None:
    # PATCH is guarded, but PATCH <path>/@lock is the refresh endpoint itself.
    lock(client)
    assert client.patch("/docs/1/@lock", headers=ALICE).status_code == 200


def test_unrouted_guarded_path_is_still_refused_when_locked(make_app: Any) -> None:
    # A lock on a path the host serves through its own 404/405 handling is still a lock.
    app = make_app(LOCKING_CONTENT_REQUIRE_ROUTE=False)
    client = app.test_client()
    lock(client, "/elsewhere/1")
    assert client.patch("/elsewhere/1").status_code == 403
    assert client.patch("/elsewhere/2").status_code == 404


# -- signals ---------------------------------------------------------------------------


def test_write_refused_signal(app: Flask, client: Any) -> None:
    from flask_locking.signals import write_refused

    seen: list[tuple[str, str]] = []

    def receiver(sender: Any, **extra: Any) -> None:
        seen.append((extra["reason"], extra["path"]))

    held = lock(client)
    with write_refused.connected_to(receiver, app):
        client.patch("/docs/1")
        client.patch("/docs/1", headers={"Lock-Token": "bad"})
        client.patch("/docs/1", headers={"Lock-Token": held["token"]})
    assert seen == [("locked", "/docs/1"), ("stale", "/docs/1")]


# -- the store failing -----------------------------------------------------------------


def test_unreachable_store_fails_closed(dead_store_app: Any) -> None:
    client = dead_store_app().test_client()
    for headers in ({}, {"Lock-Token": "x" * 43}):
        response = client.patch("/docs/1", headers=headers)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        body = response.get_json()
        assert set(body) == {"error"}
        assert body["error"]["type"] == "ServiceUnavailable"
        assert body["error"]["message"]


def test_unreachable_store_fail_open(dead_store_app: Any) -> None:
    client = dead_store_app(LOCKING_GUARD_FAIL_OPEN=True, LOCKING_RETRY_AFTER=7).test_client()
    response = client.patch("/docs/1")
    assert response.status_code == 200
    assert response.get_json()["version"] is None
    # The lock endpoints still say the store is down.
    refused = client.post("/docs/1/@lock")
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "7"


@pytest.mark.parametrize("method", ["get", "post", "patch", "delete"])
def test_lock_endpoints_answer_503_when_the_store_is_unreachable(
    dead_store_app: Any, method: str
) -> None:
    response = getattr(dead_store_app().test_client(), method)("/docs/1/@lock", headers=ALICE)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    body = response.get_json()
    assert body["error"]["type"] == "ServiceUnavailable"
    assert "unavailable" in body["error"]["message"]
    assert "Traceback" not in response.get_data(as_text=True)
    assert "127.0.0.1" not in response.get_data(as_text=True)


@contextmanager
def table_locked(url: str, table: str) -> Iterator[None]:
    """Hold an exclusive lock on the lock table from another connection."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            backend = engine.dialect.name
            if backend == "sqlite":
                raw = conn.connection.dbapi_connection
                raw.isolation_level = None
                raw.execute("BEGIN EXCLUSIVE")
                try:
                    yield
                finally:
                    raw.execute("ROLLBACK")
            elif backend == "postgresql":
                with conn.begin():
                    conn.execute(sa.text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
                    yield
            else:
                conn.execute(sa.text(f"LOCK TABLES {table} WRITE"))
                try:
                    yield
                finally:
                    conn.execute(sa.text("UNLOCK TABLES"))
    finally:
        engine.dispose()


def test_store_that_times_out_answers_503_and_recovers(
    make_app: Any, database_url: str, backend: str, table_name: str
) -> None:
    app = make_app(database_url=database_url, LOCKING_STORE_TIMEOUT=1)
    client = app.test_client()
    held = lock(client)
    with table_locked(database_url, table_name):
        refused = client.post("/docs/2/@lock", headers=ALICE)
        assert refused.status_code == 503, refused.get_data(as_text=True)
        assert refused.headers["Retry-After"] == "5"
        assert refused.get_json()["error"]["type"] == "ServiceUnavailable"
        write = client.patch("/docs/1", headers={"Lock-Token": held["token"]})
        if backend == "sqlite":
            assert write.status_code == 200  # WAL: readers never wait for the writer
        else:
            assert write.status_code == 503  # fail closed
    # The pools recover by themselves.
    assert client.patch("/docs/1", headers={"Lock-Token": held["token"]}).status_code == 200
    assert client.post("/docs/2/@lock", headers=ALICE).status_code == 200


def test_guarding_post_never_blocks_the_lock_endpoints(make_app: Any) -> None:
    app = make_app(LOCKING_GUARDED_METHODS={"POST", "PATCH", "DELETE"})
    client = app.test_client()
    lock(client)
    conflict = client.post("/docs/1/@lock", headers=BOB)
    assert conflict.status_code == 409  # the lock endpoint answered, not the guard
    assert client.delete("/docs/1/@lock", headers=BOB).status_code == 409
    assert client.delete("/docs/1/@lock", headers=ALICE).status_code == 200


@pytest.mark.parametrize("part", ["a%00b", "a%01", "a%7f", "x" * 600, "%C3%A9%E2%80%8B"])
def test_guard_on_unlockable_paths_still_sees_locks_above(
    app: Flask, client: Any, part: str
) -> None:
    # No lock can sit on such a path, but an infinite lock above still covers it; and the
    # lookup never sends the unlockable key to the database (PostgreSQL refuses NUL bytes).
    assert client.patch(f"/docs/1/parts/{part}").status_code == 200
    with app.app_context():
        held = api(app).acquire("/docs/1", "alice", depth="infinity")
    assert client.patch(f"/docs/1/parts/{part}").get_json() == LOCKED_BODY
    ok = client.patch(f"/docs/1/parts/{part}", headers={"Lock-Token": held.token})
    assert ok.status_code == 200
    assert_stale(client.patch(f"/docs/2/parts/{part}", headers={"Lock-Token": held.token}))


def test_guard_finds_a_lock_on_an_unusual_but_lockable_key(client: Any) -> None:
    # Zero-width space and non-ASCII: lockable, so the guard must look them up.
    held = lock(client, "/docs/%E2%80%8B%C3%A9")
    assert client.patch("/docs/%E2%80%8B%C3%A9").get_json() == LOCKED_BODY
    assert (
        client.patch("/docs/%E2%80%8B%C3%A9", headers={"Lock-Token": held["token"]}).status_code
        == 200
    )


def test_guard_query_uses_the_primary_key_on_sqlite(make_app: Any, tmp_path: Any) -> None:
    app = make_app(database_url=f"sqlite:///{tmp_path}/plan.sqlite3")
    client = app.test_client()
    lock(client, "/docs/1/parts/a")
    engine = app.extensions["locking"].engine.store.engine
    captured: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        captured.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        assert client.patch("/docs/1/parts/a").status_code == 403
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert len(captured) == 1
    statement, parameters = captured[0]
    with engine.connect() as conn:
        plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
    details = " | ".join(str(row[-1]) for row in plan)
    assert "SCAN" not in details.replace("SCAN CONSTANT ROW", ""), details
    assert "INDEX" in details.upper() or "PRIMARY KEY" in details.upper(), details


# -- the request-key cache -------------------------------------------------------------


class _IdsConverter(BaseConverter):
    """``1,2`` -> ``[1, 2]``: a host converter whose values cannot be hashed."""

    def to_python(self, value: str) -> list[int]:
        return [int(part) for part in value.split(",")]

    def to_url(self, value: list[int]) -> str:
        return ",".join(str(part) for part in value)


def test_unhashable_view_arguments_are_keyed_and_guarded(make_app: Any) -> None:
    app = make_app()
    app.url_map.converters["ids"] = _IdsConverter
    app.add_url_rule(
        "/lists/<ids:ids>", "lists", lambda ids: jsonify(ids=ids), methods=["GET", "PATCH"]
    )
    client = app.test_client()
    token = client.post("/lists/1,2/@lock", headers=ALICE).headers["Lock-Token"]
    for _ in range(2):  # again: a request key is never served stale from a cache
        assert client.patch("/lists/1,2").status_code == 403
        assert client.patch("/lists/01,2").status_code == 403  # the same list, spelt apart
        assert client.patch("/lists/1,2", headers={"Lock-Token": token}).status_code == 200
        assert client.patch("/lists/1,3").status_code == 200
