"""Bad input on the content ``@lock`` endpoints (docs/locks.rst): a clear 4xx, never a 500, and
nothing stored by a refused request."""

from __future__ import annotations

import io
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

ALICE = {"X-User": "alice"}


def api(app: Flask) -> Any:
    return app.extensions["locking"].extension


def assert_refused(response: Any, status: int, *words: str) -> str:
    """A dialect error with ``status`` whose message mentions each of ``words``."""
    text = response.get_data(as_text=True)
    assert response.status_code == status, text
    body = response.get_json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"type", "message"}
    message = body["error"]["message"]
    assert isinstance(message, str) and len(message) > 10
    for word in words:
        assert word.lower() in message.lower(), (word, message)
    assert "Traceback" not in text and "sqlalchemy" not in text.lower()
    return message  # type: ignore[no-any-return]


def stored_rows(app: Flask) -> int:
    """Rows in the lock table, read straight from the database."""
    with app.app_context():
        store = app.extensions["locking"].engine.store
        with store.engine.connect() as conn:
            return int(
                conn.execute(sa.select(sa.func.count()).select_from(store.table)).scalar_one()
            )


def nothing_locked(app: Flask) -> bool:
    with app.app_context():
        return api(app).locks() == [] and stored_rows(app) == 0


# -- request bodies --------------------------------------------------------------------

MALFORMED = [
    "{",
    '{"timeout": }',
    "{'timeout': 5}",
    '{"timeout": 5,}',
    "timeout=5",
    "NaN",
    '{"timeout": NaN}',
    '{"timeout": Infinity}',
    '{"timeout": -Infinity}',
    "\ufeff{}",
    '{"timeout": 5} {"timeout": 6}',
]


@pytest.mark.parametrize("text", MALFORMED)
def test_malformed_json_is_400(client: Any, text: str) -> None:
    response = client.post(
        "/docs/1/@lock", data=text, content_type="application/json", headers=ALICE
    )
    assert_refused(response, 400, "JSON")
    assert nothing_locked(client.application)


def test_nan_and_infinity_are_named(client: Any) -> None:
    message = assert_refused(
        client.post("/docs/1/@lock", data='{"timeout": NaN}', content_type="application/json"), 400
    )
    assert "NaN" in message


@pytest.mark.parametrize(
    "text, word",
    [
        ('{"timeout": ' + "9" * 5000 + "}", "number"),
        ("[" * 8000 + "]" * 8000, "deep"),
        ('{"a":' * 2000 + "1" + "}" * 2000, "deep"),
    ],
    ids=["long-number", "deep-array", "deep-object"],
)
def test_pathological_json_is_400(client: Any, text: str, word: str) -> None:
    response = client.post(
        "/docs/1/@lock", data=text, content_type="application/json", headers=ALICE
    )
    assert_refused(response, 400, word)
    assert nothing_locked(client.application)


def test_body_that_is_not_utf8_is_400(client: Any) -> None:
    response = client.post(
        "/docs/1/@lock",
        data=b'{"timeout": "\xff\xfe"}',
        content_type="application/json",
        headers=ALICE,
    )
    assert_refused(response, 400, "UTF-8")
    assert nothing_locked(client.application)


@pytest.mark.parametrize("text", ["[]", '[{"timeout": 5}]', '"timeout"', "null", "5", "true"])
def test_body_that_is_not_an_object_is_400(client: Any, text: str) -> None:
    response = client.post(
        "/docs/1/@lock", data=text, content_type="application/json", headers=ALICE
    )
    assert_refused(response, 400, "JSON object")
    assert nothing_locked(client.application)


@pytest.mark.parametrize("value", ["yes", "true", 1, 0, None, [], {}, 1.0])
def test_wrong_stealable_is_400(client: Any, value: Any) -> None:
    response = client.post("/docs/1/@lock", json={"stealable": value}, headers=ALICE)
    assert_refused(response, 400, "stealable", "true or false")
    assert nothing_locked(client.application)


@pytest.mark.parametrize(
    "value",
    ["abc", "10", True, False, 1.5, 0.5, -1, 0, 0.0, -0.0, 86401, 10**20, 1e300, None, [], {}],
)
def test_wrong_timeout_is_400(client: Any, value: Any) -> None:
    response = client.post("/docs/1/@lock", json={"timeout": value}, headers=ALICE)
    message = assert_refused(response, 400, "timeout")
    assert len(message) < 200, message
    assert nothing_locked(client.application)


@pytest.mark.parametrize("value", [1, 86400, 600.0])
def test_whole_timeouts_at_the_bounds_are_accepted(client: Any, value: Any) -> None:
    response = client.post("/docs/1/@lock", json={"timeout": value}, headers=ALICE)
    assert response.status_code == 200
    assert response.get_json()["timeout"] == int(value)


def test_max_timeout_follows_config(make_app: Any) -> None:
    client = make_app(LOCKING_MAX_TIMEOUT=60, LOCKING_DEFAULT_TIMEOUT=60).test_client()
    assert_refused(client.post("/docs/1/@lock", json={"timeout": 61}), 400, "timeout", "60")
    assert client.post("/docs/1/@lock", json={"timeout": 60}).status_code == 200


@pytest.mark.parametrize(
    "body, field",
    [
        ({"foo": 1}, "foo"),
        ({"timeout": 10, "Timeout": 5}, "Timeout"),
        ({"force": True}, "force"),
        ({"depth": "infinity"}, "depth"),
        ({"token": "x"}, "token"),
    ],
)
def test_unknown_fields_are_400(client: Any, body: dict[str, Any], field: str) -> None:
    response = client.post("/docs/1/@lock", json=body, headers=ALICE)
    message = assert_refused(response, 400, field)
    assert "stealable" in message and "timeout" in message  # says what is accepted
    assert nothing_locked(client.application)


def test_empty_body_and_empty_object_are_fine(client: Any) -> None:
    assert client.post("/docs/1/@lock", data="", headers=ALICE).status_code == 200
    assert client.post("/docs/2/@lock", data="  \n", headers=ALICE).status_code == 200
    assert client.post("/docs/3/@lock", json={}, headers=ALICE).status_code == 200


def test_oversized_body_is_413(client: Any) -> None:
    body = '{"timeout": 10, "pad": "' + "x" * 20000 + '"}'
    response = client.post(
        "/docs/1/@lock", data=body, content_type="application/json", headers=ALICE
    )
    assert_refused(response, 413, "bytes")
    assert nothing_locked(client.application)


def test_oversized_chunked_body_is_413(client: Any) -> None:
    body = b'{"timeout": 10, "pad": "' + b"x" * 20000 + b'"}'
    # A server that supports chunked bodies says so with wsgi.input_terminated; without it
    # Werkzeug hides the body.
    chunked = {
        "headers": {**ALICE, "Transfer-Encoding": "chunked", "Content-Type": "application/json"},
        "environ_base": {"wsgi.input_terminated": True},
    }
    response = client.post("/docs/1/@lock", input_stream=io.BytesIO(body), **chunked)
    assert_refused(response, 413, "bytes")
    assert nothing_locked(client.application)
    small = client.post("/docs/1/@lock", input_stream=io.BytesIO(b'{"timeout": 10}'), **chunked)
    assert small.get_json()["timeout"] == 10


def test_body_size_limit_follows_config(make_app: Any) -> None:
    client = make_app(LOCKING_MAX_BODY_BYTES=32).test_client()
    padded = '{"timeout": 10}' + " " * 40
    assert_refused(
        client.post("/docs/1/@lock", data=padded, content_type="application/json"), 413, "32"
    )
    assert (
        client.post(
            "/docs/1/@lock", data='{"timeout": 10}', content_type="application/json"
        ).status_code
        == 200
    )


# -- refused changes leave a held lock alone -------------------------------------------


def test_refused_relock_refresh_and_release_change_nothing(client: Any) -> None:
    before = client.post("/docs/1/@lock", json={"timeout": 100}, headers=ALICE).get_json()
    attempts = [
        client.post("/docs/1/@lock", json={"timeout": 0}, headers=ALICE),
        client.post("/docs/1/@lock", json={"stealable": "no"}, headers=ALICE),
        client.post("/docs/1/@lock", data="{", content_type="application/json", headers=ALICE),
        client.patch("/docs/1/@lock", json={"timeout": -5}, headers=ALICE),
        client.patch("/docs/1/@lock", json={"stealable": False}, headers=ALICE),
        client.patch("/docs/1/@lock", data="[]", content_type="application/json", headers=ALICE),
        client.delete("/docs/1/@lock", json={"force": "yes"}, headers=ALICE),
        client.delete("/docs/1/@lock", json={"force": 1}, headers={"X-User": "bob"}),
        client.delete("/docs/1/@lock", json={"timeout": 5}, headers=ALICE),
        client.delete("/docs/1/@lock", data="nope", content_type="application/json", headers=ALICE),
    ]
    for response in attempts:
        assert_refused(response, 400)
    assert client.get("/docs/1/@lock", headers=ALICE).get_json() == before


def test_refused_refresh_messages_name_the_field(client: Any) -> None:
    client.post("/docs/1/@lock", headers=ALICE)
    message = assert_refused(
        client.patch("/docs/1/@lock", json={"stealable": True}, headers=ALICE), 400, "stealable"
    )
    assert "timeout" in message
    assert_refused(
        client.delete("/docs/1/@lock", json={"force": "yes"}, headers=ALICE), 400, "force"
    )


# -- paths -----------------------------------------------------------------------------

ODD_PATHS = [
    ("/docs/../docs/1/@lock", ".."),
    ("/docs/./1/@lock", "."),
    ("/docs/%2e%2e/1/@lock", ".."),
    ("/docs/" + "a" * 520 + "/@lock", "512"),
    ("/docs/a%00b/@lock", "control"),
    ("/docs/a%01b/@lock", "control"),
    ("/docs/a%1fb/@lock", "control"),
    ("/docs/a%7fb/@lock", "control"),
]


@pytest.mark.parametrize("path, word", ODD_PATHS)
@pytest.mark.parametrize("method", ["get", "post", "patch", "delete"])
def test_odd_paths_are_400(client: Any, path: str, word: str, method: str) -> None:
    response = getattr(client, method)(path, headers=ALICE)
    assert_refused(response, 400, word)
    assert nothing_locked(client.application)


def test_lock_on_a_lock_endpoint_is_404(client: Any) -> None:
    assert_refused(client.post("/docs/1/@lock/@lock", headers=ALICE), 404)
    assert nothing_locked(client.application)


def test_unicode_paths_are_fine(client: Any) -> None:
    response = client.post("/docs/%C3%A9t%C3%A9/@lock", headers=ALICE)
    assert response.status_code == 200
    assert response.get_json()["resource"] == "/docs/été"
    assert client.patch("/docs/%C3%A9t%C3%A9").status_code == 403


@pytest.mark.parametrize("method", ["put", "options"])
def test_other_methods_on_lock(client: Any, method: str) -> None:
    response = getattr(client, method)("/docs/1/@lock", headers=ALICE)
    if method == "put":
        assert_refused(response, 405, "PUT")
        assert {"GET", "POST", "PATCH", "DELETE"} <= {
            m.strip() for m in response.headers["Allow"].split(",")
        }
    else:
        assert response.status_code == 200
    assert nothing_locked(client.application)


# -- headers ---------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["x" * 10000, "<" + "y" * 50, "é" * 43, "<<>>", "\t<a>\t"])
def test_odd_lock_tokens_never_500(client: Any, token: str) -> None:
    client.post("/docs/1/@lock", headers=ALICE)
    assert client.patch("/docs/1", headers={"Lock-Token": token}).status_code == 412
    assert client.get("/docs/1/@lock", headers={"Lock-Token": token}).status_code == 200
    response = client.delete("/docs/1/@lock", headers={"Lock-Token": token, "X-User": "bob"})
    assert response.status_code == 409
    assert client.patch("/docs/2", headers={"Lock-Token": token}).status_code == 412


# -- on every backend: a refused request stores nothing -----------------------------------


def test_refused_requests_store_nothing_on_any_backend(make_app: Any, database_url: str) -> None:
    app = make_app(database_url=database_url)
    client = app.test_client()
    refused = [
        client.post("/docs/1/@lock", json={"timeout": 1.5}, headers=ALICE),
        client.post("/docs/1/@lock", json={"stealable": "yes"}, headers=ALICE),
        client.post("/docs/1/@lock", json={"timeout": 10, "x": 1}, headers=ALICE),
        client.post("/docs/1/@lock", data="[1]", content_type="application/json", headers=ALICE),
        client.post("/docs/" + "a" * 600 + "/@lock", headers=ALICE),
        client.post("/docs/a%00/@lock", headers=ALICE),
    ]
    assert [r.status_code for r in refused] == [400] * len(refused)
    assert nothing_locked(app)
