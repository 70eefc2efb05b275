"""Review round 8: defects found by an outside review, each with the test that shows it."""

from __future__ import annotations

import pytest
from flask import request
from werkzeug.routing import BaseConverter

from tests.conftest import AppFactory

VICTIM = {"X-User": "victim"}


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
@pytest.mark.parametrize("url", ["/docs/1/@lock", "/api/v1.0/companies/1/jobs/2/lock/"])
def test_a_cross_site_page_cannot_lock_with_an_empty_untyped_post(
    make_app: AppFactory, url: str, site: str
) -> None:
    """``fetch(url, {method: "POST", credentials: "include"})`` from another site sends no
    body and no Content-Type: a CORS "simple" request, sent without a preflight and with
    the user's cookies. The lock endpoints took that empty untyped body (accepted for
    ``curl -X POST``) and locked in the victim's name, the one thing the JSON-only rule was
    there to stop (docs/identity.rst, "Cookies and cross-site requests"). The browser says
    where the request comes from (``Sec-Fetch-Site``): only a same-origin page (or a client
    that is no browser) may leave the body untyped."""
    app = make_app()
    client = app.test_client()
    attack = client.post(url, headers={**VICTIM, "Sec-Fetch-Site": site})
    assert attack.status_code == 415, attack.get_data(as_text=True)
    assert attack.get_json()["error"]["type"] == "UnsupportedMediaType"
    assert client.get("/@locks").get_json()["items"] == []
    # The page's own origin, a client that is no browser, and JSON (which needs a CORS
    # preflight cross-site) still lock.
    own = client.post(url, headers={**VICTIM, "Sec-Fetch-Site": "same-origin"})
    assert own.status_code in (200, 201), own.get_data(as_text=True)
    assert client.post(url, headers=VICTIM).status_code == 200
    typed = client.post(url, headers={**VICTIM, "Sec-Fetch-Site": site}, json={})
    assert typed.status_code == 200, typed.get_data(as_text=True)
    # DELETE is no "simple" method: a browser asks the CORS policy first, so an editor of
    # another origin that the policy lets in may still release without a body.
    released = client.delete(url, headers={**VICTIM, "Sec-Fetch-Site": site})
    assert released.status_code in (200, 204), released.get_data(as_text=True)


def test_a_deep_unrouted_patch_matches_no_more_rules_than_a_get(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In an app where some endpoint has several rules, the guard resolved every ancestor of
    a write's path as ``<ancestor>/@lock`` would (a URL match per guarded method and per
    method of the app, each), also for a path no rule serves: one unauthenticated ``PATCH``
    of a 250-segment path cost about 50 ms of matching where a ``GET`` costs 0.4 ms. Such a
    request reaches no view, so no alias of an ancestor can matter to it."""
    from werkzeug.routing import MapAdapter

    app = make_app()
    app.add_url_rule("/files/<doc_id>", "document", methods=["GET", "PATCH"])  # an alias
    client = app.test_client()
    assert client.patch("/docs/1").status_code == 200  # warm up: the store is open
    matches = 0
    match = MapAdapter.match

    def counted(self: MapAdapter, *args: object, **kwargs: object) -> object:
        nonlocal matches
        matches += 1
        return match(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(MapAdapter, "match", counted)
    path = "/nowhere" + "/a" * 250
    assert client.get(path).status_code == 404
    get_matches, matches = matches, 0
    assert client.patch(path).status_code == 404
    assert matches <= get_matches + 1, (get_matches, matches)


def test_head_is_guarded_where_get_is(make_app: AppFactory) -> None:
    """Werkzeug serves ``HEAD`` with a rule's ``GET`` view: an app whose ``GET`` views write
    (``LOCKING_GUARDED_METHODS = ["GET", "PATCH"]``) had each of them run past the lock by
    a ``HEAD`` request, which the guard did not count."""
    app = make_app(LOCKING_GUARDED_METHODS=["get", "PATCH"])
    ran: list[str] = []

    @app.get("/docs/<int:doc_id>/publish")
    def publish(doc_id: int) -> str:
        ran.append(request.method)
        return "published"

    client = app.test_client()
    assert client.post("/docs/1/publish/@lock", headers=VICTIM).status_code == 200
    assert client.get("/docs/1/publish").status_code == 403
    assert client.head("/docs/1/publish").status_code == 403
    assert ran == []
    token = client.get("/docs/1/publish/@lock", headers=VICTIM).get_json()["token"]
    assert client.head("/docs/1/publish", headers={"Lock-Token": token}).status_code == 200
    assert ran == ["HEAD"]


class _Document:
    """What a host's converter may load for an id: an object whose text is its address."""

    def __init__(self, number: int) -> None:
        self.number = number


class _DocumentConverter(BaseConverter):
    """Loads the document for a URL; no ``to_url`` (only ever matched, never built), so
    Werkzeug's default spells a value as ``str(value)``."""

    regex = r"\d+"

    def to_python(self, value: str) -> _Document:
        return _Document(int(value))


class _BuildingConverter(_DocumentConverter):
    def to_url(self, value: _Document) -> str:
        return str(value.number)


@pytest.mark.parametrize("builds", [False, True])
def test_a_converter_that_cannot_build_its_value_back_still_keys_the_url(
    make_app: AppFactory, builds: bool
) -> None:
    """A host converter loading an object for the URL, without a ``to_url``, has Werkzeug
    spell the value as ``str(value)``: ``<...Document object at 0x7f...>``, another text for
    every request. ``/docs/7/@lock`` locked that text, and ``PATCH /docs/7`` (keyed by its
    own object's address) went through: the lock protected nothing. Such a value keys as
    the URL that was matched; a converter that builds its value back still canonicalises
    (``/docs/007`` is ``/docs/7``)."""
    app = make_app()
    app.url_map.converters["document"] = _BuildingConverter if builds else _DocumentConverter
    written: list[int] = []

    @app.route("/documents/<document:doc>", methods=["GET", "PATCH"])
    def edit(doc: _Document) -> str:
        written.append(doc.number)
        return "saved"

    client = app.test_client()
    lock = client.post("/documents/7/@lock", headers=VICTIM)
    assert lock.status_code == 200, lock.get_data(as_text=True)
    assert lock.get_json()["resource"] == "/documents/7"
    assert client.patch("/documents/7").status_code == 403
    assert client.patch("/documents/7", headers={"Lock-Token": "x" * 43}).status_code == 412
    if builds:
        assert client.patch("/documents/007").status_code == 403
    assert written == []
    token = lock.get_json()["token"]
    assert client.patch("/documents/7", headers={"Lock-Token": token}).status_code == 200
