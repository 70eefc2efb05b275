"""``LOCKING_CONTENT_COMPAT``: plone.restapi's own locking examples and tests, replayed in
both modes (docs/dialects.rst "Content locks" and "Plone compatibility mode").

The vectors are data (``tests/data/plone_restapi_locking.json``, each naming its source in
plone.restapi); this module is the harness that replays them against a Plone-shaped host app
and checks every answer key for key.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, jsonify
from helpers.plone_host import DATA, USERS, create_plone_host
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_locking import Locking, Owner
from flask_locking.config import CONTENT_COMPAT_MODES
from flask_locking.dialects.compat import POLICIES

VECTORS: list[dict[str, Any]] = DATA["vectors"]
EXTRA_KEYS = set(DATA["extra_keys"])
VOLATILE_KEYS = set(DATA["volatile_keys"])
MODES = ["strict", "plone"]
#: plone.restapi's ``created``: whole seconds, UTC offset.
PLONE_CREATED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")

PloneAppFactory = Callable[..., Flask]


@pytest.fixture
def plone_app(tmp_path: Path, table_name: str) -> Iterator[PloneAppFactory]:
    """Build Plone-shaped host apps (``tests/helpers/plone_host.py``) in a given mode."""
    apps: list[Flask] = []

    def factory(mode: str, **config: Any) -> Flask:
        path = str(tmp_path / f"instance{len(apps)}")
        app = create_plone_host(path, mode, LOCKING_TABLE_NAME=table_name, **config)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["locking"].close()


def owner_of(spec: Any) -> Any:
    """A ``given`` owner: a known user as Plone shows it, an ``{id, name}``, or a bare id."""
    if isinstance(spec, dict):
        return Owner(**spec)
    return Owner(id=spec, **USERS[spec]) if spec in USERS else spec


def send(client: Any, step: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    headers = dict(headers or {})
    if step.get("user"):
        headers["X-User"] = step["user"]
    return client.open(step["path"], method=step["method"], headers=headers, json=step.get("json"))


def expected_for(vector: dict[str, Any], mode: str) -> dict[str, Any]:
    """The vector's expectation in ``mode``: Plone's, with strict mode's documented
    differences applied."""
    expect = dict(vector["expect"])
    strict = vector.get("strict")
    if mode == "strict" and strict is not None:
        expect["status"] = strict["status"]
        expect["error"] = strict.get("error")
        if strict.get("error"):
            expect.pop("body", None)
            expect.pop("values", None)
        for field in ("body", "values"):
            if field in expect:
                expect[field] = {**expect[field], **strict.get("values", {})}
        if "values" in strict and "body" not in expect and "values" not in expect:
            expect["values"] = dict(strict["values"])
    return expect


def check_value(key: str, got: Any, want: Any, mode: str) -> None:
    if key == "token":
        assert isinstance(got, str) and len(got) >= 22, got
    elif key == "time":
        assert isinstance(got, float | int) and not isinstance(got, bool), got
    elif key == "created":
        assert datetime.fromisoformat(got).tzinfo is not None, got
        if mode == "plone":
            assert PLONE_CREATED.match(got), f"{got} is not plone.restapi's created format"
    else:
        assert got == want and type(got) is type(want), f"{key}: {got!r} != {want!r}"


def check_body(body: dict[str, Any], expect: dict[str, Any], mode: str) -> None:
    """Key for key: every expected key, and no other key but the documented extras."""
    if "body" in expect:
        want = expect["body"]
        missing = set(want) - set(body)
        assert not missing, f"missing keys {missing}"
        extra = set(body) - set(want)
        assert extra <= (EXTRA_KEYS if body.get("locked") else set()), f"undocumented keys {extra}"
        for key, value in want.items():
            check_value(key, body[key], value, mode)
    for key, value in expect.get("values", {}).items():
        check_value(key, body[key], value, mode)
    if expect.get("without_token"):
        assert "token" not in body


def check_token_secrecy(
    app: Flask, step: dict[str, Any], response: Any, presented: str | None = None
) -> None:
    """A token is shown only to the owner of the lock it opens, or echoed to a caller who
    presented it (and so knows it already), in either mode."""
    body = response.get_json(silent=True) or {}
    shown = {
        body.get("token"),
        (body.get("lock") or {}).get("token"),
        response.headers.get("Lock-Token"),
    }
    shown -= {None, presented}
    if not shown:
        return
    path = step["path"].removesuffix("/@lock")
    with app.app_context():
        live = app.extensions["locking"].extension.get(path)
    assert live is not None and holds(live, step.get("user")), (
        f"a token was shown to {step.get('user')!r}, who does not hold {path}"
    )


def holds(lock: Any, user: str | None) -> bool:
    """``user`` owns ``lock`` (anonymous callers are one identity, docs/locks.rst)."""
    return (lock.owner.id if lock.owner is not None else None) == user


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_replay_plone_restapi_locking(
    plone_app: PloneAppFactory, vector: dict[str, Any], mode: str
) -> None:
    """Plone mode answers each published example and test case as Plone does; strict mode
    differs exactly where the vector (and the docs table) says."""
    app = plone_app(mode)
    client = app.test_client()
    api = app.extensions["locking"].extension
    request_step = vector["request"]
    path = request_step["path"].removesuffix("/@lock")
    tokens: list[str] = []
    given_time = None
    with app.app_context():
        for given in vector.get("given", []):
            lock = api.acquire(
                path, owner_of(given["owner"]), stealable=given.get("stealable", True)
            )
            assert lock.token is not None
            tokens.append(lock.token)
            given_time = lock.time
            if given.get("released"):
                api.release(path, token=lock.token)
    if vector["expect"].get("later_than_given"):
        time.sleep(0.01)  # the database clock counts milliseconds
    headers = {"Lock-Token": tokens[0]} if request_step.get("lock_token") == "given" else {}

    response = send(client, request_step, headers)

    expect = expected_for(vector, mode)
    assert response.status_code == expect["status"], response.get_data(as_text=True)
    if expect.get("error"):
        assert response.get_json()["error"]["type"] == expect["error"]
    elif response.status_code != 204:
        assert response.is_json, response.get_data(as_text=True)
        check_body(response.get_json(), expect, mode)
        if expect.get("later_than_given"):
            assert response.get_json()["time"] > given_time
    check_token_secrecy(app, request_step, response)
    then = vector.get("then", [])
    if mode == "strict" and "then" in vector.get("strict", {}):
        then = vector["strict"]["then"]
    for step in then:
        after = send(client, step)
        assert after.status_code == step["status"], after.get_data(as_text=True)
        check_body(after.get_json(), {"values": step["values"]}, mode)
        check_token_secrecy(app, step, after)


def test_every_vector_names_its_source_and_every_strict_difference_its_reason() -> None:
    for vector in VECTORS:
        assert vector["source"], vector["name"]
        if "strict" in vector:
            assert vector["strict"]["why"], vector["name"]
    # Both kinds of source are replayed: the seven published examples and the eleven tests.
    assert sum(v["name"].startswith("example: ") for v in VECTORS) == 7
    assert sum(v["name"].startswith("test_locking: ") for v in VECTORS) == 11


def test_docs_table_lists_every_documented_difference() -> None:
    """Each case where strict answers otherwise has its row in docs/dialects.rst."""
    docs = (Path(__file__).parent.parent / "docs" / "dialects.rst").read_text()
    table = docs[docs.index("Plone compatibility mode") :]
    for status in {str(v["strict"]["status"]) for v in VECTORS if "strict" in v}:
        assert status in table
    for phrase in ("lost update", "token", "stealable", "401", "creator_url"):
        assert phrase in table, phrase


# -- the mode's own promises -------------------------------------------------------------


def test_default_mode_is_strict() -> None:
    app = Flask(__name__)
    Locking(app)
    assert app.config["LOCKING_CONTENT_COMPAT"] == "strict"
    assert app.extensions["locking"].content_dialect.compat.mode == "strict"


@pytest.mark.parametrize("value", ["Plone", "plone5", "", None, True, ["plone"], "strict "])
def test_a_wrong_mode_is_refused_at_init_app(value: Any) -> None:
    app = Flask(__name__)
    app.config["LOCKING_CONTENT_COMPAT"] = value
    with pytest.raises(
        ValueError, match=r"LOCKING_CONTENT_COMPAT must be one of 'strict', 'plone'"
    ):
        Locking(app)
    assert "locking" not in app.extensions


def test_every_mode_has_a_policy() -> None:
    assert set(POLICIES) == set(CONTENT_COMPAT_MODES)


@pytest.mark.parametrize("mode", MODES)
def test_creator_url_of_a_bare_id(plone_app: PloneAppFactory, mode: str) -> None:
    """@plone/types declares creator_url a string: plone mode answers "" for an owner
    without a URL (never an invented link); strict keeps null."""
    client = plone_app(mode).test_client()
    body = client.post("/plone/doc1/@lock", headers={"X-User": "someone"}).get_json()
    assert body["creator_url"] == ("" if mode == "plone" else None)
    assert body["creator"] == body["creator_name"] == "someone"
    known = client.post("/plone/front-page/@lock", headers={"X-User": "bob"}).get_json()
    assert known["creator_url"] == USERS["bob"]["url"]


@pytest.mark.parametrize("method", ["POST", "PATCH", "DELETE"])
def test_plone_mode_refuses_anonymous_writes_with_401(
    plone_app: PloneAppFactory, method: str
) -> None:
    client = plone_app("plone").test_client()
    client.post("/plone/doc1/@lock", headers={"X-User": "bob"})
    response = client.open(
        "/plone/doc1/@lock", method=method, json={"force": True} if method == "DELETE" else None
    )
    assert response.status_code == 401
    assert response.get_json()["error"]["type"] == "Unauthorized"
    assert client.get("/plone/doc1/@lock").get_json()["creator"] == "bob"  # untouched
    assert client.open("/unrouted/@lock", method=method).status_code == 404  # 404 first


def test_plone_mode_keeps_the_authorizers_403(plone_app: PloneAppFactory) -> None:
    """Only lock state is answered with 200; a permission the host denies stays a 403."""
    app = plone_app("plone")

    @app.extensions["locking"].extension.authorizer
    def authorizer(action: str, resource: str, identity: Any) -> bool:
        return identity is None or identity.id != "mallory"

    client = app.test_client()
    for method in ("POST", "PATCH", "DELETE"):
        response = client.open("/plone/doc1/@lock", method=method, headers={"X-User": "mallory"})
        assert response.status_code == 403, method


def test_plone_mode_does_not_refresh_someone_elses_lock(plone_app: PloneAppFactory) -> None:
    """Plone's refresh_lock() would extend any lock; here a non-owner's PATCH answers the
    holder's lock unchanged: nobody keeps another's lease alive."""
    client = plone_app("plone").test_client()
    held = client.post("/plone/doc1/@lock", headers={"X-User": "bob"}).get_json()
    time.sleep(0.01)
    response = client.patch("/plone/doc1/@lock", headers={"X-User": "admin"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["time"] == held["time"] and body["creator"] == "bob" and "token" not in body


def test_a_stale_token_still_refused_for_the_owners_newer_grant(plone_app: PloneAppFactory) -> None:
    """Nobody holds it → the token is ignored; but when the same user locked it again (a
    second tab), the first grant's token is not the live one: 412, as in strict mode."""
    client = plone_app("plone").test_client()
    old = client.post("/plone/doc1/@lock", headers={"X-User": "admin"}).get_json()["token"]
    client.delete("/plone/doc1/@lock", headers={"X-User": "admin"})
    client.post("/plone/doc1/@lock", headers={"X-User": "admin"})
    response = client.patch(
        "/plone/doc1", headers={"X-User": "admin", "Lock-Token": old}, json={"title": "x"}
    )
    assert response.status_code == 412


def test_jobs_paths_keep_their_stale_refusal_in_plone_mode(plone_app: PloneAppFactory) -> None:
    """The mode is the content dialect's: a job path's guard still refuses an unheld token."""
    app = plone_app("plone")

    @app.route("/api/v1.0/companies/<int:c>/jobs/<int:j>", methods=["PATCH"])
    def job(c: int, j: int) -> Any:
        return jsonify(ok=True)

    client = app.test_client()
    response = client.patch(
        "/api/v1.0/companies/1/jobs/2", headers={"Lock-Token": "x" * 43}, json={}
    )
    assert response.status_code == 412
    response = client.patch("/plone/doc1", headers={"Lock-Token": "x" * 43}, json={"title": "t"})
    assert response.status_code == 204


# -- a property over any sequence of lock calls ------------------------------------------

STEP = st.tuples(
    st.sampled_from(["POST", "GET", "PATCH", "DELETE", "SAVE"]),
    st.sampled_from([None, "admin", "bob", "carol"]),
    st.booleans(),  # stealable on POST, force on DELETE
    st.sampled_from([None, "own", "other"]),  # which token the caller presents
)


@pytest.mark.parametrize("mode", MODES)
def test_any_sequence_of_calls_keeps_every_promise(plone_app: PloneAppFactory, mode: str) -> None:
    """Whatever users do, in any order: a token is shown only to its lock's owner; plone
    mode answers every @lock call 200 (401 for an anonymous write) and ``stealable`` as
    Plone computes it for the viewer; strict mode answers the lock's own ``stealable``."""
    app = plone_app(mode)
    client = app.test_client()
    api = app.extensions["locking"].extension

    @settings(
        max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(st.lists(STEP, min_size=1, max_size=12))
    def run(steps: list[tuple[str, str | None, bool, str | None]]) -> None:
        with app.app_context():
            app.extensions["locking"].engine.release(
                "/plone/doc1", force=True, may_steal=lambda lock: True
            )
        tokens: dict[str | None, str] = {}
        for method, user, flag, presented in steps:
            headers = {"X-User": user} if user else {}
            others = [token for holder, token in tokens.items() if holder != user]
            if presented == "own" and user in tokens:
                headers["Lock-Token"] = tokens[user]
            elif presented == "other" and others:
                headers["Lock-Token"] = others[0]
            with app.app_context():
                before = api.get("/plone/doc1")
            if method == "SAVE":
                response = client.patch("/plone/doc1", headers=headers, json={"title": "t"})
                assert response.status_code in (204, 403, 412)
                if response.status_code == 204 and before is not None:
                    # A write went through a held lock only with that lock's token.
                    with app.app_context():
                        assert api.get("/plone/doc1", owner=before.owner).token == headers.get(
                            "Lock-Token"
                        )
                continue
            body_json = (
                {"stealable": flag}
                if method == "POST"
                else {"force": flag}
                if method == "DELETE"
                else None
            )
            response = client.open(
                "/plone/doc1/@lock", method=method, headers=headers, json=body_json
            )
            step = {"path": "/plone/doc1/@lock", "user": user}
            check_token_secrecy(app, step, response, headers.get("Lock-Token"))
            body = response.get_json()
            if mode == "plone":
                expected = {401} if user is None and method != "GET" else {200}
                assert response.status_code in expected, (method, user, body)
            if response.status_code == 200 and body.get("locked"):
                with app.app_context():
                    live = api.get("/plone/doc1")
                assert live is not None
                if mode == "plone":
                    assert body["stealable"] == (live.stealable or holds(live, user))
                else:
                    assert body["stealable"] == live.stealable
                if body.get("token"):
                    tokens[user] = body["token"]

    run()


def test_the_example_app_takes_the_mode_from_its_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``EXAMPLE_LOCKING_CONTENT_COMPAT=plone`` switches the demo (docs/example_app.rst)."""
    from test_example_app import signed_in

    from example_app import create_app, db

    monkeypatch.setenv("EXAMPLE_LOCKING_CONTENT_COMPAT", "plone")
    app = create_app({"TESTING": True}, instance_path=str(tmp_path / "instance"))
    try:
        alice, bob = signed_in(app, "alice"), signed_in(app, "bob")
        mine = alice.post("/docs/welcome/@lock", json={"stealable": False}).get_json()
        assert mine["token"] and mine["stealable"] is True  # the owner's view
        seen = bob.post("/docs/welcome/@lock")
        assert seen.status_code == 200
        assert seen.get_json()["creator_name"] == "Alice" and "token" not in seen.get_json()
        refused = bob.delete("/docs/welcome/@lock", json={"force": True})
        assert refused.status_code == 200 and refused.get_json()["locked"] is True
    finally:
        app.extensions["locking"].close()
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()
