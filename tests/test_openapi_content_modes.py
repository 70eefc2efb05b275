"""The OpenAPI document of ``<path>/@lock`` tells, in each ``LOCKING_CONTENT_COMPAT`` mode,
exactly the statuses the endpoint answers: every request below runs against the real
endpoints, and the set of statuses seen per operation must equal the set documented (and
each body must match the documented schema). The expected statuses are nowhere written
down here: a scenario added or a status that changes shows up as a difference."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask, has_request_context, request

from tests.conftest import AppFactory

pytest.importorskip("apispec")
openapi_schema_validator = pytest.importorskip("openapi_schema_validator")

from flask_locking import Locking  # noqa: E402
from flask_locking.openapi import build_spec  # noqa: E402

CONTENT = "/{path}/@lock"
METHODS = ("GET", "POST", "PATCH", "DELETE")
ALICE, BOB = {"X-User": "alice"}, {"X-User": "bob"}
MAX_BODY = 1024


def content_app(make_app: AppFactory, mode: str) -> Flask:
    app = make_app(LOCKING_CONTENT_COMPAT=mode, LOCKING_MAX_BODY_BYTES=MAX_BODY)
    locking: Locking = app.extensions["locking"].extension

    @locking.authorizer
    def authorize(action: str, resource: str, identity: Any) -> bool:
        if not has_request_context():  # the Python API setting the scene
            return True
        if "X-Crash" in request.headers:
            raise RuntimeError("a bug in the host's authorizer")
        return "X-Deny" not in request.headers and action != "steal"

    return app


def requests_of(method: str) -> list[tuple[str, dict[str, Any]]]:
    """Every kind of request to ``method <path>/@lock``: (path, test-client arguments)."""
    write = method != "GET"
    tried: list[tuple[str, dict[str, Any]]] = [
        ("/docs/free", {"headers": ALICE}),  # nothing locked
        ("/docs/held", {"headers": ALICE}),  # the holder
        ("/docs/held", {"headers": BOB}),  # another identity
        ("/docs/held", {}),  # anonymous
        ("/docs/held", {"headers": BOB, "json": {"force": True}}),  # a denied steal
        ("/docs/held", {"headers": {**BOB, "X-Deny": "1"}}),  # the authorizer says no
        ("/docs/held", {"headers": {**ALICE, "X-Crash": "1"}}),  # the host's bug
        ("/docs/.", {"headers": ALICE}),  # no such key
        ("/nowhere/at/all", {"headers": ALICE}),  # not routed
        ("/api/v2/clients/1/reference", {}),  # reference data needs a caller
    ]
    if write:
        tried += [
            ("/docs/free", {"headers": ALICE, "json": {"timeout": "abc"}}),
            ("/docs/free", {"headers": ALICE, "data": "x", "content_type": "text/plain"}),
            ("/docs/free", {"headers": ALICE, "data": "{" + " " * MAX_BODY + "}",
                            "content_type": "application/json"}),
        ]
    return tried


def resolve(document: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in obj:
        node: Any = document
        for part in obj["$ref"].lstrip("#/").split("/"):
            node = node[part]
        obj = node
    return obj


def check_body(document: dict[str, Any], method: str, status: int, response: Any) -> None:
    documented = resolve(
        document, document["paths"][CONTENT][method.lower()]["responses"][str(status)]
    )
    schema = dict(documented["content"]["application/json"]["schema"])
    schema["components"] = document["components"]
    openapi_schema_validator.validate(
        response.get_json(), schema, cls=openapi_schema_validator.OAS31Validator
    )


@pytest.mark.parametrize("mode", ["strict", "plone"])
def test_content_lock_statuses_are_the_documented_ones(make_app: AppFactory, mode: str) -> None:
    app = content_app(make_app, mode)
    locking: Locking = app.extensions["locking"].extension
    document = build_spec(app)
    client = app.test_client()
    seen: dict[str, set[int]] = {method: set() for method in METHODS}
    for method in METHODS:
        for path, arguments in requests_of(method):
            with app.app_context():
                for lock in locking.locks():
                    locking.release(lock.resource, force=True)
                locking.acquire("/docs/held", "alice", stealable=False)
            response = client.open(f"{path}/@lock", method=method, **arguments)
            seen[method].add(response.status_code)
            if response.status_code in {
                int(code) for code in document["paths"][CONTENT][method.lower()]["responses"]
            }:
                check_body(document, method, response.status_code, response)
    # The store gone: every operation answers 503.
    engine = sa.create_engine(app.config["LOCKING_DATABASE_URI"] or locking_url(app))
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE {app.config['LOCKING_TABLE_NAME']}"))
    engine.dispose()
    for method in METHODS:
        response = client.open("/docs/free/@lock", method=method, headers=ALICE)
        seen[method].add(response.status_code)
        check_body(document, method, response.status_code, response)
    documented = {
        method: {int(code) for code in document["paths"][CONTENT][method.lower()]["responses"]}
        for method in METHODS
    }
    assert seen == documented


def locking_url(app: Flask) -> str:
    return str(app.extensions["locking"].engine.store.engine.url)
