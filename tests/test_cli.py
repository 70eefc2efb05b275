"""``flask locks ...`` through Flask's CLI runner, against a real store."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.conftest import AppFactory


def run(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["locks", *args])


@pytest.fixture
def locked_app(make_app: AppFactory) -> tuple[Flask, dict[str, str]]:
    """An app with three locks; returns it and the tokens."""
    app = make_app()
    locking = app.extensions["locking"].extension
    with app.app_context():
        a = locking.acquire("/docs/1", "alice", timeout=600)
        b = locking.acquire("/docs/2", "bob", timeout=300, stealable=False)
        c = locking.acquire("/reports/9", None, depth="infinity")
    return app, {"/docs/1": a.token, "/docs/2": b.token, "/reports/9": c.token}


def test_list_empty(app: Flask) -> None:
    result = run(app, "list")
    assert result.exit_code == 0, result.output
    assert "No live locks." in result.output
    result = run(app, "list", "--json")
    assert json.loads(result.output) == []


def test_list_table_and_json(locked_app: tuple[Flask, dict[str, str]]) -> None:
    app, tokens = locked_app
    result = run(app, "list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == [
        "RESOURCE",
        "OWNER",
        "EXPIRES",
        "LEFT",
        "STEALABLE",
        "DEPTH",
        "VERSION",
    ]
    body = "\n".join(lines[2:])
    assert "/docs/1" in body and "alice" in body
    assert "/docs/2" in body and "bob" in body
    assert "(anonymous)" in body and "infinity" in body
    assert "3 live locks." in result.output
    for token in tokens.values():
        assert token not in result.output

    result = run(app, "list", "--json")
    data = json.loads(result.output)
    assert sorted(item["resource"] for item in data) == ["/docs/1", "/docs/2", "/reports/9"]
    assert all("token" not in item and item["locked"] is True for item in data)
    bob = next(item for item in data if item["creator"] == "bob")
    assert bob["stealable"] is False and bob["timeout"] == 300


def test_list_prefix(locked_app: tuple[Flask, dict[str, str]]) -> None:
    app, _ = locked_app
    data = json.loads(run(app, "list", "--prefix", "/docs", "--json").output)
    assert sorted(item["resource"] for item in data) == ["/docs/1", "/docs/2"]
    result = run(app, "list", "--prefix", "/nothing/here")
    assert result.exit_code == 0
    assert "No live locks on /nothing/here or below." in result.output


def test_show(locked_app: tuple[Flask, dict[str, str]]) -> None:
    app, tokens = locked_app
    result = run(app, "show", "/docs/2")
    assert result.exit_code == 0, result.output
    assert "bob" in result.output and "stealable  no" in result.output
    assert "version" in result.output and tokens["/docs/2"] not in result.output

    data = json.loads(run(app, "show", "/docs/2/", "--json").output)
    assert data["resource"] == "/docs/2" and data["creator"] == "bob" and "token" not in data

    result = run(app, "show", "/docs/404")
    assert result.exit_code == 0 and "/docs/404 is not locked." in result.output
    assert json.loads(run(app, "show", "/docs/404", "--json").output) == {
        "locked": False,
        "stealable": True,
    }


def test_bad_resource_is_an_error_not_a_traceback(app: Flask) -> None:
    result = run(app, "show", "/docs/../etc")
    assert result.exit_code == 1
    assert "Error:" in result.output and "'..'" in result.output
    assert "Traceback" not in result.output


def test_release_needs_a_way(locked_app: tuple[Flask, dict[str, str]]) -> None:
    app, _ = locked_app
    result = run(app, "release", "/docs/1")
    assert result.exit_code == 2
    assert "--force" in result.output


def test_release_as_other_owner_is_refused(locked_app: tuple[Flask, dict[str, str]]) -> None:
    app, _ = locked_app
    result = run(app, "release", "/docs/1", "--owner", "mallory")
    assert result.exit_code == 1
    assert "locked by alice" in result.output
    with app.app_context():
        assert app.extensions["locking"].engine.get("/docs/1") is not None


def test_release_as_owner_with_token_and_force(locked_app: tuple[Flask, dict[str, str]]) -> None:
    app, tokens = locked_app
    engine = app.extensions["locking"].engine
    result = run(app, "release", "/docs/1", "--owner", "alice")
    assert result.exit_code == 0, result.output
    assert "Released the lock on /docs/1 held by alice." in result.output

    result = run(app, "release", "/reports/9", "--token", "wrong")
    assert result.exit_code == 1
    result = run(app, "release", "/reports/9", "--token", tokens["/reports/9"])
    assert result.exit_code == 0, result.output

    # non-stealable: the console operator may still force it
    result = run(app, "release", "/docs/2", "--force")
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert engine.locks() == []

    result = run(app, "release", "/docs/2", "--force")
    assert result.exit_code == 0 and "/docs/2 was not locked." in result.output


def test_purge(make_app: AppFactory) -> None:
    app = make_app()
    locking = app.extensions["locking"].extension
    with app.app_context():
        locking.acquire("/docs/short", "alice", timeout=0.05)
        locking.acquire("/docs/long", "alice", timeout=600)
    time.sleep(0.15)
    result = run(app, "purge")
    assert result.exit_code == 0, result.output
    assert "Purged 1 expired lock." in result.output
    assert "Purged 0 expired locks." in run(app, "purge").output
    assert [item["resource"] for item in json.loads(run(app, "list", "--json").output)] == [
        "/docs/long"
    ]


def test_create_table(make_app: AppFactory, table_name: str, tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/cli.sqlite3"
    app = make_app(database_url=url, LOCKING_CREATE_TABLE=False)
    engine = sa.create_engine(url)
    try:
        assert not sa.inspect(engine).has_table(table_name)
        result = run(app, "create-table")
        assert result.exit_code == 0, result.output
        assert table_name in result.output
        assert sa.inspect(engine).has_table(table_name)
        # idempotent
        assert run(app, "create-table").exit_code == 0
    finally:
        engine.dispose()
    result = run(app, "list")
    assert result.exit_code == 0 and "No live locks." in result.output


def test_group_is_registered_per_app(make_app: AppFactory) -> None:
    app = make_app()
    result = app.test_cli_runner().invoke(args=["locks", "--help"])
    assert result.exit_code == 0
    for command in ("list", "show", "release", "purge", "create-table", "openapi"):
        assert command in result.output
