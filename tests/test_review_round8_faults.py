"""Review round 8 (bad input and faults, SPEC §6): defects found by an outside review, each
with the test that shows it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import AppFactory

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
