"""Defects found by an independent audit, each pinned by a test that failed before its fix."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask, jsonify

ALICE = {"X-User": "alice"}
BOB = {"X-User": "bob"}


def _integer_routes(app: Flask) -> Flask:
    """Host routes with Werkzeug's int converters, as a real jobs / reference API has."""

    @app.route("/api/v1.0/companies/<int:company>/jobs/<int:job>", methods=["PATCH"])
    def job(company: int, job: int) -> Any:
        return jsonify(company=company, job=job)

    @app.route("/api/v2/clients/<int(signed=True):client>/reference", methods=["PATCH"])
    def reference(client: int) -> Any:
        return jsonify(client=client)

    return app


# -- the guard must read an id the way the host's router reads it ------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1.0/companies/1/jobs/%EF%BC%97",  # full-width 7: Werkzeug's int converter says 7
        "/api/v1.0/companies/1/jobs/\u0667",  # Arabic-Indic 7
        "/api/v1.0/companies/%EF%BC%91/jobs/7",  # full-width 1
        "/api/v1.0/companies/1/jobs/" + "0" * 30 + "7",  # zero-padded past 18 digits
    ],
)
def test_guard_reads_job_ids_as_the_host_router_does(make_app: Any, path: str) -> None:
    app = _integer_routes(make_app())
    client = app.test_client()
    assert client.post("/api/v1.0/companies/1/jobs/7/lock/", headers=ALICE).status_code == 201
    assert client.patch("/api/v1.0/companies/1/jobs/7", headers=BOB).status_code == 423
    # The host routes this path to job 7 of company 1: the guard must refuse it too.
    response = client.patch(path, headers=BOB)
    assert response.status_code == 423, response.get_data(as_text=True)


@pytest.mark.parametrize(
    "path", ["/api/v2/clients/%EF%BC%95/reference", "/api/v2/clients/" + "0" * 25 + "5/reference"]
)
def test_guard_reads_client_ids_as_the_host_router_does(make_app: Any, path: str) -> None:
    app = _integer_routes(make_app())
    client = app.test_client()
    assert client.post("/api/v2/clients/5/reference/lock", headers=ALICE).status_code == 201
    response = client.patch(path, headers=BOB)
    assert response.status_code == 409, response.get_data(as_text=True)
