"""Review round 8 (bad input and faults, SPEC §6): defects found by an outside review, each
with the test that shows it."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_locking.errors import LockConflict
from tests.conftest import AppFactory
from tests.helpers.app import create_app

ALICE = {"X-User": "alice"}


def assert_content_error(response: Any, status: int) -> dict[str, Any]:
    """A content-dialect error body (``{"error": {"type", "message"}}``) with ``status``."""
    text = response.get_data(as_text=True)
    assert response.status_code == status, text
    body = response.get_json(silent=True)
    assert body is not None, text
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}, body
    return body  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("POST", "/@locks"), ("PUT", "/@locks"), ("PATCH", "/@locks"),
        ("POST", "/@locks/events"), ("PUT", "/@locks/events"), ("PATCH", "/@locks/events"),
        ("DELETE", "/@locks/events"),
    ],
)
def test_the_listing_refuses_other_methods_in_its_error_format(
    make_app: AppFactory, method: str, url: str
) -> None:
    """The listing answered a method it does not serve with Werkzeug's HTML 405 page."""
    response = make_app().test_client().open(url, method=method, headers=ALICE)
    body = assert_content_error(response, 405)
    assert method in body["error"]["message"]
    assert "GET" in response.headers["Allow"]


def _reference_error(response: Any, status: int) -> dict[str, Any]:
    """A reference-dialect error body (``{"status", "code", "message", "details"}``)."""
    text = response.get_data(as_text=True)
    assert response.status_code == status, text
    body = response.get_json(silent=True)
    assert body is not None, text
    assert set(body) == {"status", "code", "message", "details"} and body["code"] == status
    return body  # type: ignore[no-any-return]


@pytest.mark.parametrize("method", ["TRACE", "QUERY", "PROPFIND"])
@pytest.mark.parametrize(
    "url",
    [
        "/@locks", "/@locks/events", "/api/v1.0/companies/1/jobs/2/lock/",
        "/api/v1.0/companies/1/jobs/2/lock", "/api/v2/clients/5/reference/lock",
    ],
)
def test_a_method_no_rule_routes_is_refused_in_the_endpoints_format(
    make_app: AppFactory, url: str, method: str
) -> None:
    """A method no rule of the endpoint routes (TRACE, QUERY, WebDAV's ...) got Werkzeug's
    HTML 405 page on every endpoint but the content ``@lock`` ones."""
    response = make_app().test_client().open(url, method=method, headers=ALICE)
    if "reference" in url:
        assert method in _reference_error(response, 405)["details"]
    else:
        assert method in assert_content_error(response, 405)["error"]["message"]
    assert response.headers["Allow"]


# -- a worker killed (SIGKILL) between steps: no lock lost, none granted twice ----------

CRASH_WORKER = r"""
import sys
from flask import Flask
from flask_locking import Locking
from flask_locking.errors import LockConflict

url, table, me = sys.argv[1:4]
app = Flask("crash-worker")
app.config.update(SECRET_KEY="crash", LOCKING_DATABASE_URI=url, LOCKING_TABLE_NAME=table,
                  LOCKING_EVENTS_ENABLED=False)
locking = Locking(app)
with app.app_context():
    print("up", flush=True)
    while True:
        try:
            lock = locking.acquire("/docs/1", me, timeout=60)
        except LockConflict:
            locking.release("/docs/1", owner=me, force=True)  # steal, as an operator would
            continue
        print("granted", lock.version, flush=True)
        try:
            locking.refresh("/docs/1", lock.token)
            locking.release("/docs/1", token=lock.token)
        except LockConflict:  # stolen meanwhile
            continue
        print("released", lock.version, flush=True)
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mysql"], indirect=True)
def test_workers_killed_mid_operation_lose_no_lock_and_grant_none_twice(
    make_app: AppFactory, database_url: str, table_name: str, tmp_path: Any
) -> None:
    """Workers acquire, refresh, release and steal one resource in a loop while they are
    killed with SIGKILL at random points (inside a transaction or between two): no version
    is granted twice, each worker's grants only grow, and the lock a killed worker held last
    is still in the store for the survivors: they cannot acquire it without stealing it."""
    import os
    import random
    import signal
    import subprocess
    import sys
    import time

    app = make_app(database_url=database_url, LOCKING_EVENTS_ENABLED=False)
    with app.app_context():
        app.extensions["locking"].extension.get("/docs/1")  # the table exists before workers
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}

    def start(n: int) -> subprocess.Popen[str]:
        # Output to a file, not a pipe: a pipe nobody reads fills up and stalls the worker.
        with open(tmp_path / f"w{n}.out", "w") as out:
            process = subprocess.Popen(
                [sys.executable, "-c", CRASH_WORKER, database_url, table_name, f"w{n}"],
                stdout=out, stderr=subprocess.PIPE, text=True, env=env,
            )
        while not (tmp_path / f"w{n}.out").read_text():
            assert process.poll() is None, process.communicate()[1]
            time.sleep(0.01)
        return process

    def kill(process: subprocess.Popen[str]) -> None:
        os.kill(process.pid, signal.SIGKILL)
        err = process.communicate(timeout=10)[1]
        assert "Traceback" not in err, err

    rng = random.Random(8)
    workers = [start(n) for n in range(3)]
    deadline = time.monotonic() + 3
    n = 3
    while time.monotonic() < deadline:
        time.sleep(rng.uniform(0.02, 0.15))
        kill(workers.pop(rng.randrange(len(workers))))
        workers.append(start(n))
        n += 1
    for process in workers:  # the last ones die too: one of them may hold the lock
        kill(process)
    # Whole lines only: a worker killed inside a write may leave half of one.
    outputs = [(tmp_path / f"w{i}.out").read_text().split("\n")[:-1] for i in range(n)]

    granted = [int(line.split()[1]) for out in outputs for line in out if line[:7] == "granted"]
    assert len(granted) > 10, "the workers hardly ran"
    assert len(granted) == len(set(granted)), "a version was granted twice"
    for out in outputs:
        mine = [int(line.split()[1]) for line in out if line[:7] == "granted"]
        assert mine == sorted(mine)
    with app.app_context():
        api = app.extensions["locking"].extension
        held = api.get("/docs/1")
        if held is not None:  # killed while holding it: kept, and not granted to another
            assert held.version >= max(granted)
            with pytest.raises(LockConflict):
                api.acquire("/docs/1", "survivor")
            api.release("/docs/1", owner="survivor", force=True)
        fresh = api.acquire("/docs/1", "survivor")
        assert fresh.version > max(granted)


# -- every body on every lock endpoint: a 2xx, or a 4xx in the dialect's format ----------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=8,
)
FIELDS = st.sampled_from(["timeout", "stealable", "force", "resources", "depth", "x"])
BODIES = (
    st.dictionaries(FIELDS, JSON_VALUES, max_size=3).map(json.dumps)
    | JSON_VALUES.map(json.dumps)
    | st.text(max_size=30)
)
CONTENT_TYPES = st.sampled_from([
    "application/json", "application/json; charset=utf-8", "application/merge-patch+json",
    "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1", "",
])
ENDPOINTS = [
    ("POST", "/docs/1/@lock"), ("PATCH", "/docs/1/@lock"), ("DELETE", "/docs/1/@lock"),
    ("POST", "/api/v1.0/companies/1/jobs/2/lock/"),
    ("DELETE", "/api/v1.0/companies/1/jobs/2/lock/"),
    ("POST", "/api/v2/clients/5/reference/lock"), ("DELETE", "/api/v2/clients/5/reference/lock"),
    ("DELETE", "/@locks"),
]
JWT_SECRET = "round8-faults-" + "s" * 40


@pytest.fixture(params=["strict", "plone"])
def every_dialect(request: pytest.FixtureRequest, make_app: AppFactory) -> Any:
    """A client of an app with the three dialects, reference identity from a bearer JWT."""
    app = make_app(identity=False, LOCKING_JWT_SECRET=JWT_SECRET,
                   LOCKING_CONTENT_COMPAT=request.param)
    return app.test_client()


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(endpoint=st.sampled_from(ENDPOINTS), body=BODIES, content_type=CONTENT_TYPES)
def test_every_body_gets_a_success_or_a_4xx_in_the_dialects_format(
    every_dialect: Any, endpoint: tuple[str, str], body: str, content_type: str
) -> None:
    """Any JSON (or not) body, with any Content-Type, on every lock endpoint: never a 5xx,
    and a refusal is the dialect's error body with a message (SPEC §6). It holds."""
    method, url = endpoint
    token = jwt.encode({"sub": "alice", "exp": int(time.time()) + 600}, JWT_SECRET)
    headers = {"Authorization": f"Bearer {token}"}
    if content_type:
        headers["Content-Type"] = content_type
    response = every_dialect.open(url, method=method, data=body.encode(), headers=headers)
    text = response.get_data(as_text=True)
    assert response.status_code < 500, text
    if response.status_code >= 400:
        error = response.get_json(silent=True)
        assert error is not None, text
        if "reference" in url:
            assert set(error) == {"status", "code", "message", "details"}, error
            assert error["code"] == response.status_code and len(error["details"]) > 10
        else:
            assert set(error) == {"error"} and len(error["error"]["message"]) > 10, error


@pytest.mark.parametrize(("typed", "key"), [("", "/"), ("/items/07/", "/items/7"), ("//a", "/a")])
def test_the_cli_names_the_key_it_found_unlocked(
    make_app: AppFactory, typed: str, key: str
) -> None:
    """``flask locks show ''`` said " is not locked." (and ``show /items/07`` named the
    typed text, not the key it looked up): the CLI says which resource it checked."""
    app = make_app()

    @app.patch("/items/<int:item_id>")
    def item(item_id: int) -> Any:
        return {"item": item_id}

    runner = app.test_cli_runner()
    shown = runner.invoke(args=["locks", "show", typed])
    assert shown.exit_code == 0 and shown.output == f"{key} is not locked.\n"
    released = runner.invoke(args=["locks", "release", typed, "--force"])
    assert released.exit_code == 0 and released.output == f"{key} was not locked.\n"


# -- a database that accepts connections and never answers ------------------------------


@pytest.fixture
def silent_server() -> Any:
    """A loopback port that accepts TCP connections and never says a word; yields
    ``(port, accepted)`` where ``accepted`` lists the connections made so far."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1], accepted
    server.close()
    for connection in accepted:
        connection.close()


@pytest.mark.parametrize("scheme", ["postgresql+psycopg://postgres", "mysql+pymysql://root"])
def test_a_silent_database_costs_a_request_one_connect_timeout_not_two(
    silent_server: Any, scheme: str
) -> None:
    """With the database unreachable when the store is first used (the app started during
    an outage), each request tried to connect twice: once to create the table and, when
    that failed, once more to ask whether a concurrent process had created it. Every
    request then waited twice LOCKING_STORE_TIMEOUT (10-12 s at the default) before its
    503, holding a worker that long."""
    port, accepted = silent_server
    # (not make_app: its teardown would wait forever to drop the table on that server)
    app = create_app(LOCKING_DATABASE_URI=f"{scheme}@127.0.0.1:{port}/test",
                     LOCKING_STORE_TIMEOUT=1, LOCKING_EVENTS_ENABLED=False)
    client = app.test_client()
    try:
        for _ in range(2):
            before = len(accepted)
            started = time.monotonic()
            response = client.patch("/docs/1", headers=ALICE)
            assert_content_error(response, 503)  # fails closed
            assert len(accepted) - before == 1, "one connection attempt per request"
            assert time.monotonic() - started < 3.5
    finally:
        app.extensions["locking"].close()
