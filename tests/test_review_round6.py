"""Review round 6: defects found by an outside review, each with the test that shows it."""

from __future__ import annotations

import pytest

from tests.conftest import AppFactory


@pytest.mark.parametrize("indent", ["-1", "17", "1000"])
def test_openapi_command_refuses_an_indent_out_of_range(make_app: AppFactory, indent: str) -> None:
    """``flask locks openapi --indent N`` took any integer: a negative one silently, and a
    large one made the document gigabytes of spaces (``--indent 99999999`` hung the
    command until memory ran out). Out of range is now click's usage error (exit 2)."""
    pytest.importorskip("apispec")
    app = make_app()
    result = app.test_cli_runner().invoke(args=["locks", "openapi", "--indent", indent])
    assert result.exit_code == 2, result.output[:200]
    assert "--indent" in result.output
    ok = app.test_cli_runner().invoke(args=["locks", "openapi", "--indent", "4"])
    assert ok.exit_code == 0 and ok.output.startswith('{\n    "')


def test_bulk_release_415_is_documented(make_app: AppFactory) -> None:
    """``DELETE /@locks`` with a body that is not JSON answers 415, as every lock endpoint
    does; the OpenAPI document listed no 415 for it."""
    pytest.importorskip("apispec")
    pytest.importorskip("openapi_schema_validator")
    from tests.test_openapi import Checker

    check = Checker(make_app())
    check("DELETE", "/@locks", 415, data="{", content_type="text/plain")
    check("DELETE", "/@locks", 400, data="{", content_type="application/json")
