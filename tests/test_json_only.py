"""Lock endpoints read JSON bodies only: anything a cross-site page can send without a CORS
preflight (an HTML form: urlencoded, multipart, ``text/plain``; ``fetch`` with a typeless
body) is refused with 415 in the dialect's format, so it cannot lock with the victim's
cookies. An empty body without a Content-Type stays fine (``curl -X POST``, ``DELETE``)."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from test_reference_dialect import add_reference_routes

ATTACK = '{"stealable": false, "timeout": 86400}'
FORM_TYPES = [
    "text/plain",
    "text/plain; charset=utf-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    None,  # fetch(url, {body: new Blob([...])}) sends no Content-Type at all
]
JSON_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/merge-patch+json",
    "Application/JSON",
]


@pytest.fixture
def app(make_app: Any) -> Flask:
    return add_reference_routes(make_app())


def send(
    app: Flask,
    method: str,
    url: str,
    body: str,
    content_type: str | None,
    headers: dict[str, str] | None = None,
) -> Any:
    all_headers = dict(headers or {})
    if content_type is not None:
        all_headers["Content-Type"] = content_type
    return app.test_client().open(url, method=method, data=body, headers=all_headers)


@pytest.mark.parametrize("content_type", FORM_TYPES)
def test_content_lock_refuses_a_non_json_body(app: Flask, content_type: str | None) -> None:
    response = send(app, "POST", "/docs/1/@lock", ATTACK, content_type, {"X-User": "victim"})
    assert response.status_code == 415, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["type"] == "UnsupportedMediaType" and "application/json" in error["message"]
    assert app.test_client().get("/docs/1/@lock").get_json()["locked"] is False
    for method in ("PATCH", "DELETE"):
        assert send(app, method, "/docs/1/@lock", ATTACK, content_type).status_code == 415


@pytest.mark.parametrize("content_type", FORM_TYPES)
def test_job_and_reference_locks_refuse_a_non_json_body(
    app: Flask, content_type: str | None
) -> None:
    jobs = send(app, "POST", "/api/v1.0/companies/1/jobs/2/lock/", ATTACK, content_type)
    assert jobs.status_code == 415 and jobs.get_json()["error"]["type"] == "UnsupportedMediaType"
    reference = send(
        app, "POST", "/api/v2/clients/5/reference/lock", ATTACK, content_type, {"X-User": "alice"}
    )
    assert reference.status_code == 415
    body = reference.get_json()
    assert set(body) == {"status", "code", "message", "details"}
    assert (body["code"], body["message"]) == (415, "Unsupported media type")


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x"],
)
def test_an_empty_form_is_refused_too(app: Flask, content_type: str) -> None:
    """A cross-site form with no fields posts an empty body, typed as a form: it would
    lock with the defaults."""
    assert send(app, "POST", "/docs/1/@lock", "", content_type).status_code == 415


@pytest.mark.parametrize("content_type", JSON_TYPES)
def test_json_bodies_are_read(app: Flask, content_type: str) -> None:
    response = send(app, "POST", "/docs/1/@lock", '{"timeout": 77}', content_type)
    assert response.status_code == 200 and response.get_json()["timeout"] == 77


def test_an_empty_body_needs_no_content_type(app: Flask) -> None:
    assert send(app, "POST", "/docs/1/@lock", "", None).status_code == 200
    assert send(app, "DELETE", "/docs/1/@lock", "", None).status_code == 200


@pytest.mark.parametrize("terminated", [False, True])
def test_a_body_without_a_length_is_read_as_werkzeug_reads_it(app: Flask, terminated: bool) -> None:
    """No Content-Length (``curl -X POST``, a chunked upload): a server that terminates the
    input (``wsgi.input_terminated``: gunicorn, Werkzeug's server for chunked bodies) has the
    body read, and refused when it is a form; without it Werkzeug sees no body at all, and
    neither does the lock endpoint (an empty body still needs a JSON type or none)."""
    import io

    def post(body: bytes, content_type: str | None) -> Any:
        environ: dict[str, Any] = {"wsgi.input": io.BytesIO(body)}
        if terminated:
            environ["wsgi.input_terminated"] = True
        headers = {"Content-Type": content_type} if content_type else {}
        return app.test_client().post(
            "/docs/1/@lock", environ_overrides=environ, headers={"X-User": "ann", **headers}
        )

    sized = post(b'{"timeout": 77}', "application/json")
    assert sized.status_code == 200, sized.get_data(as_text=True)
    assert sized.get_json()["timeout"] == (77 if terminated else 600)
    assert post(b"", "application/x-www-form-urlencoded").status_code == 415
    if terminated:
        assert post(ATTACK.encode(), "text/plain").status_code == 415
