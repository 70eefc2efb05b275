"""docs/dialect-howto.rst, run as published: the fourth dialect (one small file) locks,
refuses and releases on the wire, owns its paths for the guard, and is in the OpenAPI
document."""

from __future__ import annotations

import json
import re
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.helpers.wire import LOCK_FIELDS, assert_error, assert_new_lock, assert_refused

HOWTO = Path(__file__).resolve().parent.parent / "docs" / "dialect-howto.rst"
TICKET_ID = "0c3a9f3e-8d8c-4d55-9a40-5ad1b7c2e001"
TICKET = f"/helpdesk/queues/billing/tickets/{TICKET_ID}"
KEY = TICKET
ALICE, BOB = {"X-User": "alice"}, {"X-User": "bob"}


def code_block(caption: str) -> str:
    """The Python code block of the how-to page with ``:caption: <caption>``, dedented."""
    text = HOWTO.read_text()
    found = re.search(
        rf"\.\. code-block:: python\n   :caption: {re.escape(caption)}\n\n((?:   .*\n|\n)+)", text
    )
    assert found is not None, f"no code block captioned {caption} in {HOWTO.name}"
    return textwrap.dedent(found.group(1))


def run_module(name: str, source: str) -> types.ModuleType:
    """Execute ``source`` as the module ``name`` (importable while the test runs)."""
    module = types.ModuleType(name)
    sys.modules[name] = module
    exec(compile(source, f"<{HOWTO.name}: {name}.py>", "exec"), module.__dict__)  # noqa: S102
    return module


@pytest.fixture
def howto() -> Iterator[types.ModuleType]:
    """``app.py`` of the page (it imports ``ticket_locks``, the page's other file)."""
    try:
        run_module("ticket_locks", code_block("ticket_locks.py"))
        yield run_module("helpdesk_app", code_block("app.py"))
    finally:
        sys.modules.pop("ticket_locks", None)
        sys.modules.pop("helpdesk_app", None)


@pytest.fixture
def make(howto: types.ModuleType, tmp_path: Path) -> Iterator[Any]:
    apps: list[Flask] = []

    def make(**config: Any) -> Flask:
        database = tmp_path / f"locks{len(apps)}.sqlite3"
        app: Flask = howto.create_app(
            {
                "TESTING": True,
                "SECRET_KEY": "howto",
                "LOCKING_DATABASE_URI": f"sqlite:///{database}",
                **config,
            }
        )
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["locking"].close()


def test_the_dialect_file_is_one_small_declaration() -> None:
    source = code_block("ticket_locks.py")
    assert len(source.strip().splitlines()) <= 20
    assert "def " not in source  # no code: everything derives from the declaration


def test_lock_refuse_release_through_the_fourth_dialect(make: Any) -> None:
    client = make().test_client()
    body = assert_new_lock(
        lambda: client.post(f"{TICKET}/lock", headers=ALICE),
        status=201,
        resource=KEY,
        depth="infinity",
    )
    token = body["token"]
    again = client.post(f"{TICKET}/lock/", headers=ALICE)  # the owner again: same lock
    assert again.status_code == 200 and again.get_json()["token"] == token
    holder = assert_error(client.post(f"{TICKET}/lock", headers=BOB), 409, "Conflict")["lock"]
    assert set(holder) == LOCK_FIELDS  # the holder, without its token

    # The guard: the ticket's replies are below the lock, in any spelling the route reads.
    reply = f"{TICKET}/replies/1"
    locked = client.patch(reply, headers=BOB)
    assert_error(locked, 423, "Locked", "Resource is locked.")
    assert_refused(locked, 423, "locked")
    upper = f"/helpdesk/queues/billing/tickets/{TICKET_ID.upper()}/replies/01"
    assert_refused(client.patch(upper, headers=BOB), 423, "locked")
    stale = client.patch(reply, headers={"Lock-Token": "not-the-token"})
    assert_error(stale, 409, "Conflict")
    assert_refused(stale, 409, "stale")
    allowed = client.patch(reply, headers={"Lock-Token": token})
    assert allowed.status_code == 200 and allowed.get_json() == {"reply": 1, "version": 1}

    read = client.get(f"{TICKET}/lock", headers=BOB)
    assert read.status_code == 200 and "token" not in read.get_json()
    assert client.patch(f"{TICKET}/lock", headers=ALICE).get_json()["token"] == token  # refresh
    not_served = client.put(f"{TICKET}/lock", headers=ALICE)
    assert_error(not_served, 405, "MethodNotAllowed")
    assert not_served.headers["Allow"] == "GET, POST, PATCH, DELETE"

    assert client.delete(f"{TICKET}/lock", headers=ALICE).status_code == 204
    assert client.patch(reply, headers=BOB).status_code == 200
    assert_error(
        client.delete(f"{TICKET}/lock", headers=ALICE), 404, "NotFound", "Nobody holds this ticket."
    )


def test_the_existence_check_and_bad_ids_are_404(make: Any) -> None:
    client = make().test_client()
    missing = f"/helpdesk/queues/sales/tickets/{TICKET_ID}/lock"
    assert_error(
        client.post(missing, headers=ALICE),
        404,
        "NotFound",
        f"Queue sales has no ticket {TICKET_ID}.",
    )
    body = assert_error(client.post("/helpdesk/queues/billing/tickets/42/lock"), 404, "NotFound")
    assert body["error"]["message"] == "ticket_id must be a UUID, not '42'."


def test_its_config_keys_switch_and_move_it(make: Any) -> None:
    moved = make(LOCKING_TICKETS_URL_PREFIX="/desk/").test_client()
    response = moved.post(TICKET.replace("/helpdesk", "/desk") + "/lock", headers=ALICE)
    assert response.status_code == 201
    assert response.get_json()["resource"] == KEY.replace("/helpdesk", "/desk")
    off = make(LOCKING_TICKETS_ENABLED=False)
    assert off.test_client().post(f"{TICKET}/lock", headers=ALICE).status_code == 404
    # Switched off, it owns nothing: a lock made another way gets the content answers.
    with off.app_context():
        off.extensions["locking"].extension.acquire(KEY, "alice", depth="infinity")
    assert_error(off.test_client().patch(f"{TICKET}/replies/1"), 403, "Forbidden")


def test_it_is_in_the_openapi_document(make: Any) -> None:
    pytest.importorskip("apispec")
    validator = pytest.importorskip("openapi_spec_validator")
    from flask_locking.openapi import build_spec

    app = make(LOCKING_OPENAPI_URL="/locking/openapi.json")
    document = app.test_client().get("/locking/openapi.json").get_json()
    validator.validate(document)
    assert document == json.loads(json.dumps(build_spec(app)))
    path = document["paths"]["/helpdesk/queues/{queue}/tickets/{ticket_id}/lock"]
    assert set(path) == {"get", "post", "patch", "delete", "put", "parameters"}
    assert set(path["put"]["responses"]) == {"405"}
    assert set(path["post"]["responses"]) >= {"200", "201", "409"}
    assert set(path["delete"]["responses"]) >= {"204", "404", "409"}
    assert path["post"]["summary"] == "Claim the ticket and its thread."
    assert path["post"]["tags"] == ["ticket_locks"]
    assert {p["name"]: p["schema"] for p in path["parameters"]} == {
        "queue": {"type": "string"},
        "ticket_id": {"type": "string", "format": "uuid"},
    }
    responses = document["components"]["responses"]
    assert responses["TicketLocksLocked"]["description"].startswith("423. Guard refusal.")
    assert responses["TicketLocksStale"]["description"].startswith("409. Guard refusal.")


@pytest.mark.parametrize(
    ("declaration", "error"),
    [
        ({"template": "/t/<hex:id>"}, "converter 'hex'"),
        ({"actions": {"POST": "grab"}}, "unknown ['grab']"),
        ({"missing_message": "No {ticket}."}, "missing_message"),
    ],
)
def test_declaration_mistakes_surface_when_the_dialect_is_added(
    howto: types.ModuleType,
    make: Any,
    declaration: dict[str, Any],
    error: str,
) -> None:
    broken = type("Broken", (sys.modules["ticket_locks"].TicketLocks,), declaration)
    app = make()
    with pytest.raises(ValueError, match=re.escape(error)):
        app.extensions["locking"].extension.add_dialect(broken, "/broken", app=app)


def test_a_template_may_use_the_hosts_own_converter(make: Any) -> None:
    from werkzeug.routing import BaseConverter

    from flask_locking.dialects import PathDialect, Statuses

    class HexConverter(BaseConverter):
        regex = "[0-9a-fA-F]+"

        def to_python(self, value: str) -> int:
            return int(value, 16)

        def to_url(self, value: int) -> str:
            return format(value, "x")

    class Parts(PathDialect):
        name = "parts"
        template = "/parts/<hex:part>"
        converters = {"hex": HexConverter}
        statuses = Statuses(locked=423)

    app = make()
    app.url_map.converters["hex"] = HexConverter
    app.add_url_rule("/parts/<hex:part>/specs", "specs", lambda part: "", methods=["PATCH"])
    app.extensions["locking"].extension.add_dialect(Parts, app=app)
    client = app.test_client()
    assert client.post("/parts/00FF/lock").get_json()["resource"] == "/parts/ff"
    assert_refused(client.patch("/parts/0ff/specs"), 423, "locked")
    assert_error(
        client.post("/parts/xyz/lock"),
        404,
        "NotFound",
        "part must be a valid <hex> value, not 'xyz'.",
    )
