"""The job-lock dialect on the wire (docs/dialects.rst), field by field, and the guard on job
paths."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask, jsonify

from flask_locking import current_lock
from tests.helpers.wire import (
    LOCK_FIELDS,
    assert_error,
    assert_new_lock,
    unreachable_store_app,
)

ALICE = {"X-User": "alice"}
BOB = {"X-User": "bob"}
LOCK_URL = "/api/v1.0/companies/1/jobs/2/lock/"
JOB_KEY = "/api/v1.0/companies/1/jobs/2"


def add_job_routes(app: Flask, prefix: str = "/api/v1.0") -> Flask:
    """Host routes for a job and its sub-resources, as a real jobs API would have."""

    @app.route(f"{prefix}/companies/<int:company>/jobs/<int:job>", methods=["GET", "PATCH"])
    def job(company: int, job: int) -> Any:
        return jsonify(
            company=company, job=job, version=current_lock.version if current_lock else None
        )

    @app.route(
        f"{prefix}/companies/<int:company>/jobs/<int:job>/tasks/<int:task>",
        methods=["GET", "PATCH"],
    )
    def task(company: int, job: int, task: int) -> Any:
        return jsonify(task=task, version=current_lock.version if current_lock else None)

    @app.route(
        f"{prefix}/companies/<int:company>/jobs/<int:job>/tasks/<int:task>/notes/<note>",
        methods=["PATCH"],
    )
    def note(company: int, job: int, task: int, note: str) -> Any:
        return jsonify(note=note)

    @app.route(f"{prefix}/companies/<int:company>", methods=["PATCH"])
    def company(company: int) -> Any:
        return jsonify(company=company)

    return app


@pytest.fixture
def app(make_app: Any) -> Flask:
    return add_job_routes(make_app())


@pytest.fixture
def client(app: Flask) -> Any:
    return app.test_client()


def api(app: Flask) -> Any:
    return app.extensions["locking"].extension


def lock_job(client: Any, headers: dict[str, str] | None = None, url: str = LOCK_URL) -> str:
    response = client.post(url, headers=headers or {})
    assert response.status_code in (200, 201), response.get_data(as_text=True)
    return str(response.get_json()["token"])


# -- POST ------------------------------------------------------------------------------


def test_post_creates_an_infinite_lock_on_the_job_with_every_field(client: Any) -> None:
    assert_new_lock(
        lambda: client.post(LOCK_URL, headers=ALICE), status=201, resource=JOB_KEY, depth="infinity"
    )


def test_anonymous_lock_and_anonymous_relock(client: Any) -> None:
    first = client.post(LOCK_URL)
    assert first.status_code == 201
    body = first.get_json()
    assert (body["creator"], body["creator_name"], body["creator_url"]) == (None, None, None)
    again = client.post(LOCK_URL)  # anonymous callers are one identity (docs/locks.rst)
    assert again.status_code == 200
    assert again.get_json()["token"] == body["token"]
    assert again.get_json()["version"] == body["version"]


def test_owner_again_gets_200_with_the_same_token_and_version(client: Any) -> None:
    first = client.post(LOCK_URL, headers=ALICE).get_json()
    again = client.post(LOCK_URL, headers=ALICE, json={"timeout": 120, "stealable": False})
    assert again.status_code == 200
    body = again.get_json()
    assert body["token"] == first["token"]
    assert again.headers["Lock-Token"] == first["token"]
    assert body["version"] == first["version"] == 1
    assert body["timeout"] == 120


def test_someone_else_gets_409_with_the_holder_and_no_token(client: Any) -> None:
    lock_job(client, ALICE)
    response = client.post(LOCK_URL, headers=BOB)
    body = assert_error(response, 409, "Conflict")
    assert set(body) == {"error", "lock"}
    assert "alice" in body["error"]["message"]
    holder = body["lock"]
    assert set(holder) == LOCK_FIELDS  # no token
    assert holder["creator"] == "alice"
    assert holder["resource"] == JOB_KEY
    assert holder["depth"] == "infinity"
    assert "Lock-Token" not in response.headers


def test_post_body_sets_timeout_and_stealable(client: Any) -> None:
    response = client.post(LOCK_URL, headers=ALICE, json={"timeout": 30, "stealable": False})
    assert response.status_code == 201
    body = response.get_json()
    assert body["timeout"] == 30
    assert body["stealable"] is False
    assert body["name"] == "plone.locking.unstealable"


@pytest.mark.parametrize("url", [LOCK_URL, LOCK_URL.rstrip("/")])
def test_with_and_without_the_trailing_slash(client: Any, url: str) -> None:
    response = client.post(url, headers=ALICE)
    assert response.status_code == 201  # served directly, no redirect
    assert response.get_json()["resource"] == JOB_KEY
    assert client.delete(url, headers=ALICE).status_code == 204


def test_a_lock_on_something_below_the_job_conflicts(client: Any) -> None:
    # A depth-0 content lock on a task below the job: the job's infinite lock would cover it.
    assert client.post("/api/v1.0/companies/1/jobs/2/tasks/3/@lock", headers=BOB).status_code == 200
    body = assert_error(client.post(LOCK_URL, headers=ALICE), 409, "Conflict")
    assert body["lock"]["resource"] == "/api/v1.0/companies/1/jobs/2/tasks/3"
    assert body["lock"]["creator"] == "bob"


def test_leading_zeros_address_the_same_job(client: Any) -> None:
    body = client.post("/api/v1.0/companies/001/jobs/02/lock/", headers=ALICE).get_json()
    assert body["resource"] == JOB_KEY
    assert_error(client.post(LOCK_URL, headers=BOB), 409, "Conflict")
    # ... and the guard checks /jobs/002 as /jobs/2, as the host's <int:> route reads it.
    assert_error(client.patch("/api/v1.0/companies/1/jobs/002"), 423, "Locked")


# -- DELETE ----------------------------------------------------------------------------


def test_delete_by_the_owner_is_204_with_an_empty_body(app: Flask, client: Any) -> None:
    lock_job(client, ALICE)
    response = client.delete(LOCK_URL, headers=ALICE)
    assert response.status_code == 204
    assert response.get_data() == b""
    with app.app_context():
        assert api(app).get(JOB_KEY) is None


def test_delete_without_a_lock_is_404(client: Any) -> None:
    assert_error(
        client.delete(LOCK_URL, headers=ALICE), 404, "NotFound", "Job lock does not exist."
    )
    lock_job(client, ALICE)
    assert client.delete(LOCK_URL, headers=ALICE).status_code == 204
    assert_error(
        client.delete(LOCK_URL, headers=ALICE), 404, "NotFound", "Job lock does not exist."
    )


def test_delete_of_someone_elses_lock_is_409_and_keeps_it(app: Flask, client: Any) -> None:
    lock_job(client, ALICE)
    body = assert_error(client.delete(LOCK_URL, headers=BOB), 409, "Conflict")
    assert body["lock"]["creator"] == "alice" and "token" not in body["lock"]
    assert_error(client.delete(LOCK_URL), 409, "Conflict")  # anonymous is not alice either
    with app.app_context():
        assert api(app).get(JOB_KEY) is not None


def test_delete_with_the_token_works_for_anyone(client: Any) -> None:
    token = lock_job(client, ALICE)
    assert client.delete(LOCK_URL, headers={**BOB, "Lock-Token": token}).status_code == 204


def test_delete_with_force_steals_a_stealable_lock(client: Any) -> None:
    lock_job(client, ALICE)
    assert client.delete(LOCK_URL, headers=BOB, json={"force": True}).status_code == 204
    client.post(LOCK_URL, headers=ALICE, json={"stealable": False})
    assert_error(client.delete(LOCK_URL, headers=BOB, json={"force": True}), 403, "Forbidden")


# -- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1.0/companies/abc/jobs/2/lock/",
        "/api/v1.0/companies/-1/jobs/2/lock/",
        "/api/v1.0/companies/1.5/jobs/2/lock/",
        "/api/v1.0/companies/+1/jobs/2/lock/",
        "/api/v1.0/companies/%EF%BC%91/jobs/2/lock/",  # a full-width digit one
        "/api/v1.0/companies/1/jobs/x/lock/",
        "/api/v1.0/companies/1/jobs/-2/lock/",
        "/api/v1.0/companies/1/jobs/2e3/lock/",
        "/api/v1.0/companies/1/jobs/1234567890123456789/lock/",  # 19 digits: not an id
    ],
)
@pytest.mark.parametrize("method", ["POST", "DELETE"])
def test_ids_that_are_not_whole_numbers_are_404(client: Any, url: str, method: str) -> None:
    body = assert_error(client.open(url, method=method, headers=ALICE), 404, "NotFound")
    # what is wrong, and the limit a 19-digit id broke
    assert "must be a whole number >= 0 of at most 18 digits" in body["error"]["message"]


def test_company_zero_is_a_valid_id(client: Any) -> None:
    response = client.post("/api/v1.0/companies/0/jobs/0/lock/")
    assert response.status_code == 201
    assert response.get_json()["resource"] == "/api/v1.0/companies/0/jobs/0"


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "HEAD"])
def test_other_methods_are_405_in_the_dialect_format(client: Any, method: str) -> None:
    response = client.open(LOCK_URL, method=method, headers=ALICE)
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST, DELETE"
    if method != "HEAD":
        assert_error(response, 405, "MethodNotAllowed")


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ('{"timeout": ', "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('"text"', "must be a JSON object"),
        ('{"stealable": "yes"}', "stealable must be true or false"),
        ('{"stealable": 1}', "stealable must be true or false"),
        ('{"timeout": "abc"}', "timeout must be a whole number"),
        ('{"timeout": true}', "timeout must be a whole number"),
        ('{"timeout": null}', "timeout must be a whole number"),
        ('{"timeout": 1.5}', "timeout must be a whole number"),
        ('{"timeout": 0}', "between 1 and"),
        ('{"timeout": -5}', "between 1 and"),
        ('{"timeout": 1e30}', "between 1 and"),
        ('{"timeout": NaN}', "not a valid JSON number"),
        ('{"owner": "alice"}', "Unknown field 'owner'"),
    ],
)
def test_bad_post_bodies_are_400(app: Flask, client: Any, body: str, needle: str) -> None:
    response = client.post(LOCK_URL, headers=ALICE, data=body, content_type="application/json")
    assert needle in assert_error(response, 400, "BadRequest")["error"]["message"]
    with app.app_context():
        assert api(app).get(JOB_KEY) is None


def test_bad_delete_body_is_400(client: Any) -> None:
    lock_job(client, ALICE)
    response = client.delete(LOCK_URL, headers=BOB, json={"force": "yes"})
    assert (
        "force must be true or false"
        in assert_error(response, 400, "BadRequest")["error"]["message"]
    )


def test_oversized_body_is_413(make_app: Any) -> None:
    client = make_app(LOCKING_MAX_BODY_BYTES=64).test_client()
    payload = '{"timeout": 60, "stealable": true}' + " " * 100
    response = client.post(LOCK_URL, data=payload, content_type="application/json")
    assert_error(response, 413, "PayloadTooLarge")


# -- host hooks --------------------------------------------------------------------------


def test_job_exists_hook_makes_unknown_jobs_404(app: Flask, client: Any) -> None:
    asked: list[tuple[Any, Any]] = []

    @api(app).job_exists
    def job_exists(company_id: int, job_id: int) -> bool:
        asked.append((company_id, job_id))
        return (company_id, job_id) == (1, 2)

    assert client.post(LOCK_URL, headers=ALICE).status_code == 201
    for method in ("POST", "DELETE"):
        response = client.open("/api/v1.0/companies/1/jobs/3/lock/", method=method, headers=ALICE)
        assert_error(response, 404, "NotFound", "Job 3 of company 1 does not exist.")
    assert asked == [(1, 2), (1, 3), (1, 3)]
    assert all(isinstance(c, int) and isinstance(j, int) for c, j in asked)


def test_authorizer_refusal_is_403_whatever_the_lock_state(app: Flask, client: Any) -> None:
    lock_job(client, ALICE)

    @api(app).authorizer
    def authorize(action: str, resource: str, identity: Any) -> bool:
        return identity is not None and identity.id == "alice"

    assert_error(client.post(LOCK_URL, headers=BOB), 403, "Forbidden")
    assert_error(client.delete(LOCK_URL, headers=BOB), 403, "Forbidden")
    assert client.delete(LOCK_URL, headers=ALICE).status_code == 204
    assert_error(client.delete(LOCK_URL, headers=BOB), 403, "Forbidden")  # unlocked: still 403


def test_unexpected_error_is_500_without_internals(app: Flask, client: Any) -> None:
    @api(app).job_exists
    def job_exists(company_id: int, job_id: int) -> bool:
        raise RuntimeError("database password is hunter2")

    response = client.post(LOCK_URL, headers=ALICE)
    assert_error(response, 500, "InternalServerError", "Internal server error.")
    assert "hunter2" not in response.get_data(as_text=True)


def test_unreachable_store_is_503_and_the_guard_fails_closed(tmp_path: Any) -> None:
    app = add_job_routes(unreachable_store_app(tmp_path))
    client = app.test_client()
    response = client.post(LOCK_URL, headers=ALICE)
    assert_error(response, 503, "ServiceUnavailable")
    assert response.headers["Retry-After"] == "5"
    assert_error(client.patch("/api/v1.0/companies/1/jobs/2/tasks/3"), 503, "ServiceUnavailable")


# -- the guard ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1.0/companies/1/jobs/2",
        "/api/v1.0/companies/1/jobs/2/",
        "/api/v1.0/companies/1/jobs/2/tasks/3",
        "/api/v1.0/companies/1/jobs/2/tasks/3/notes/n1",
        "/api/v1.0/companies/1/jobs/2/tasks/9/../3",
    ],
)
def test_guard_refuses_writes_to_the_job_and_below_with_423(client: Any, path: str) -> None:
    token = lock_job(client, ALICE)
    assert_error(client.patch(path, headers=ALICE), 423, "Locked", "Resource is locked.")
    assert_error(
        client.patch(path, headers={"Lock-Token": "not-the-token"}), 412, "PreconditionFailed"
    )
    allowed = client.patch(path, headers={"Lock-Token": token})
    # Through the guard; the host routes neither "/jobs/2/" nor ".." paths, so its 404.
    assert allowed.status_code == (404 if path.endswith("/") or ".." in path else 200)


def test_the_right_token_lets_the_write_through_with_the_version(client: Any) -> None:
    token = lock_job(client, BOB)
    for header in (token, f"<{token}>"):
        response = client.patch(
            "/api/v1.0/companies/1/jobs/2/tasks/3", headers={"Lock-Token": header}
        )
        assert response.status_code == 200
        assert response.get_json() == {"task": 3, "version": 1}


def test_guard_412_for_stale_tokens(client: Any) -> None:
    token = lock_job(client, ALICE)
    other = lock_job(client, ALICE, "/api/v1.0/companies/1/jobs/3/lock/")
    path = "/api/v1.0/companies/1/jobs/2/tasks/3"
    body = assert_error(
        client.patch(path, headers={"Lock-Token": other}), 412, "PreconditionFailed"
    )
    assert set(body) == {"error"}
    assert client.delete(LOCK_URL, headers=ALICE).status_code == 204
    # Released: the old token opens nothing, even though nobody holds the job now.
    assert_error(client.patch(path, headers={"Lock-Token": token}), 412, "PreconditionFailed")
    # Someone else locked it since: the old token is still stale, not a pass.
    lock_job(client, BOB)
    assert_error(client.patch(path, headers={"Lock-Token": token}), 412, "PreconditionFailed")


def test_guard_leaves_other_jobs_parents_and_reads_alone(client: Any) -> None:
    lock_job(client, ALICE)
    assert client.patch("/api/v1.0/companies/1/jobs/3").status_code == 200
    assert client.patch("/api/v1.0/companies/2/jobs/2/tasks/3").status_code == 200
    assert client.patch("/api/v1.0/companies/1").status_code == 200
    assert client.get("/api/v1.0/companies/1/jobs/2/tasks/3").status_code == 200


def test_guard_refusal_format_comes_from_the_jobs_dialect_even_for_content_locks(
    client: Any,
) -> None:
    # A content @lock on a task: the path is a job path, so the refusal is the job's 423.
    client.post("/api/v1.0/companies/1/jobs/2/tasks/3/@lock", headers=ALICE)
    assert_error(client.patch("/api/v1.0/companies/1/jobs/2/tasks/3"), 423, "Locked")
    # Outside job paths the content dialect answers (403).
    client.post("/docs/1/@lock", headers=ALICE)
    assert_error(client.patch("/docs/1"), 403, "Forbidden")


def test_lifecycle_on_every_backend(make_app: Any, database_url: str) -> None:
    client = add_job_routes(make_app(database_url=database_url)).test_client()
    token = lock_job(client, ALICE)
    assert client.post(LOCK_URL, headers=ALICE).status_code == 200
    assert client.post(LOCK_URL, headers=BOB).status_code == 409
    assert client.patch("/api/v1.0/companies/1/jobs/2/tasks/3").status_code == 423
    assert (
        client.patch(
            "/api/v1.0/companies/1/jobs/2/tasks/3", headers={"Lock-Token": token}
        ).status_code
        == 200
    )
    assert client.delete(LOCK_URL, headers=BOB).status_code == 409
    assert client.delete(LOCK_URL, headers=ALICE).status_code == 204
    assert client.delete(LOCK_URL, headers=ALICE).status_code == 404
    assert (
        client.patch(
            "/api/v1.0/companies/1/jobs/2/tasks/3", headers={"Lock-Token": token}
        ).status_code
        == 412
    )


# -- configuration -------------------------------------------------------------------------


def test_switched_off(make_app: Any) -> None:
    app = add_job_routes(make_app(LOCKING_JOBS_ENABLED=False))
    client = app.test_client()
    assert client.post(LOCK_URL, headers=ALICE).status_code == 404  # no such endpoint
    assert "locking_jobs" not in app.blueprints
    with app.app_context():
        api(app).acquire(JOB_KEY, "alice", depth="infinity")
    # The guard still protects the path; refusals fall back to the content format.
    response = client.patch("/api/v1.0/companies/1/jobs/2/tasks/3")
    assert response.status_code == 403
    assert response.get_json()["error"]["type"] == "Forbidden"


def test_re_prefixed(make_app: Any) -> None:
    app = add_job_routes(make_app(LOCKING_JOBS_URL_PREFIX="/jobs-api/v9/"), prefix="/jobs-api/v9")
    client = app.test_client()
    assert client.post(LOCK_URL, headers=ALICE).status_code == 404
    response = client.post("/jobs-api/v9/companies/1/jobs/2/lock", headers=ALICE)
    assert response.status_code == 201
    assert response.get_json()["resource"] == "/jobs-api/v9/companies/1/jobs/2"
    assert_error(client.patch("/jobs-api/v9/companies/1/jobs/2/tasks/3"), 423, "Locked")
    assert client.delete("/jobs-api/v9/companies/1/jobs/2/lock/", headers=ALICE).status_code == 204


def test_prefix_at_the_root(make_app: Any) -> None:
    app = add_job_routes(make_app(LOCKING_JOBS_URL_PREFIX="/"), prefix="")
    client = app.test_client()
    response = client.post("/companies/4/jobs/5/lock/", headers=ALICE)
    assert response.status_code == 201
    assert response.get_json()["resource"] == "/companies/4/jobs/5"
    assert_error(client.patch("/companies/4/jobs/5/tasks/1"), 423, "Locked")


# -- a free-form host dialect (a Dialect subclass, no template) -------------------------


def test_a_host_dialect_in_a_few_lines(make_app: Any) -> None:
    from flask import Blueprint, Response, request

    from flask_locking.dialects import Dialect, EnvelopeErrorFormat

    class OrderLocks(Dialect):
        """PUT/DELETE <prefix>/orders/<id>/lock; the guard answers 423; envelope errors."""

        name = "order_locks"
        locked_status = 423
        stale_status = 412
        errors = EnvelopeErrorFormat()

        def owns(self, key: str) -> bool:
            return key.startswith(f"{self.prefix}/orders/")

        def create_blueprint(self) -> Blueprint:
            bp = Blueprint(self.name, __name__)
            bp.add_url_rule(
                f"{self.prefix}/orders/<int:order_id>/lock",
                "lock",
                self.endpoint(self.view),
                methods=["PUT", "DELETE"],
            )
            return bp

        def view(self, order_id: int) -> Response:
            key = f"{self.prefix}/orders/{order_id}"
            if request.method == "PUT":
                lock, granted = self.acquire(key, depth="infinity")
                return self.lock_response(lock, 201 if granted else 200)
            self.release(key)
            return Response(status=204)

    app = make_app()
    dialect = api(app).add_dialect(OrderLocks, "/shop/", app=app)
    assert dialect.prefix == "/shop"

    @app.patch("/shop/orders/<int:order_id>/lines/<int:line>")
    def line(order_id: int, line: int) -> Any:
        return jsonify(line=line)

    client = app.test_client()
    created = client.put("/shop/orders/9/lock", headers=ALICE)
    assert created.status_code == 201
    assert created.get_json()["resource"] == "/shop/orders/9"
    assert client.put("/shop/orders/9/lock", headers=ALICE).status_code == 200
    assert client.put("/shop/orders/9/lock", headers=BOB).get_json() == {
        "status": "error",
        "code": 409,
        "message": "Conflict",
        "details": "Locking conflict",
    }
    refused = client.patch("/shop/orders/9/lines/1")
    assert refused.status_code == 423
    assert refused.get_json() == {
        "status": "error",
        "code": 423,
        "message": "Locked",
        "details": "Resource is locked.",
    }
    token = created.get_json()["token"]
    assert client.patch("/shop/orders/9/lines/1", headers={"Lock-Token": token}).status_code == 200
    assert client.delete("/shop/orders/9/lock", headers=ALICE).status_code == 204
    assert client.patch("/shop/orders/9/lines/1").status_code == 200
