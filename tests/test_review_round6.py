"""Review round 6: defects found by an outside review, each with the test that shows it."""

from __future__ import annotations

from typing import Any

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


def _one_endpoint_two_rules(make_app: AppFactory) -> Any:
    """Endpoint ``doc`` served by ``/items/<id>`` (GET, PUT) and ``/files/<id>`` (PATCH,
    PUT), both PATCH and PUT guarded."""
    from flask import jsonify, request

    app = make_app(LOCKING_GUARDED_METHODS={"PATCH", "PUT"})

    def doc(id: str) -> Any:
        return jsonify(wrote=id, method=request.method)

    app.add_url_rule("/items/<id>", "doc", doc, methods=["GET", "PUT"])
    app.add_url_rule("/files/<id>", "doc", doc, methods=["PATCH", "PUT"])
    return app


def test_the_guard_key_cache_tells_methods_apart(make_app: AppFactory) -> None:
    """The guard's key cache was keyed by rule, path and arguments but not by method, while
    the key is built by the endpoint's first rule serving the method: a ``PATCH /files/1``
    cached the key ``/files/1`` for the rule, and a later ``PUT /files/1`` (keyed
    ``/items/1`` when computed) was checked against it and let through a lock on
    ``/items/1``."""
    app = _one_endpoint_two_rules(make_app)
    client = app.test_client()
    lock = client.post("/items/1/@lock", headers={"X-User": "alice"})
    assert lock.status_code == 200 and lock.json["resource"] == "/items/1"
    client.patch("/files/1", headers={"X-User": "bob"})  # fills the cache for the rule
    refused = client.put("/files/1", headers={"X-User": "bob"})
    assert refused.status_code == 403, refused.get_data(as_text=True)


def test_one_endpoint_is_one_key_whatever_method_its_rules_serve(make_app: AppFactory) -> None:
    """Keys were built by the endpoint's first rule *serving the request's method*: with
    ``GET /docs/<id>/view`` and ``PATCH /docs/<id>/edit`` on one endpoint, a lock on
    ``/docs/1/view`` (the URL ``url_for`` gives) let ``PATCH /docs/1/edit`` reach
    ``doc(id=1)``, and the same document could be locked a second time as
    ``/docs/1/edit``. Now every rule of an endpoint keys its arguments as ``url_for``
    builds them."""
    from flask import jsonify, request, url_for

    app = make_app()

    def doc(id: str) -> Any:
        return jsonify(wrote=id, method=request.method)

    app.add_url_rule("/docs/<id>/view", "doc", doc, methods=["GET"])
    app.add_url_rule("/docs/<id>/edit", "doc", doc, methods=["PATCH"])
    with app.test_request_context():
        assert url_for("doc", id="1") == "/docs/1/view"
    client = app.test_client()
    alice, bob = {"X-User": "alice"}, {"X-User": "bob"}
    lock = client.post("/docs/1/view/@lock", headers=alice)
    assert lock.status_code == 200 and lock.json["resource"] == "/docs/1/view"
    refused = client.patch("/docs/1/edit", headers=bob)
    assert refused.status_code == 403, refused.get_data(as_text=True)
    second = client.post("/docs/1/edit/@lock", headers=bob)  # the same document: a conflict
    assert second.status_code == 409, second.get_data(as_text=True)
    token = lock.json["token"]
    assert client.patch("/docs/1/edit", headers={**bob, "Lock-Token": token}).status_code == 200


def test_one_endpoint_two_guarded_methods_one_key(make_app: AppFactory) -> None:
    """The same for two guarded methods served by different rules of one endpoint: a lock
    on ``/items/1`` refuses ``PATCH /files/1`` (computed or cached) as it refuses PUT."""
    app = _one_endpoint_two_rules(make_app)
    client = app.test_client()
    assert client.post("/items/1/@lock", headers={"X-User": "alice"}).status_code == 200
    for method in ("PATCH", "PUT", "PATCH"):
        refused = client.open("/files/1", method=method, headers={"X-User": "bob"})
        assert refused.status_code == 403, (method, refused.get_data(as_text=True))


@pytest.mark.parametrize("spelling", ["/acme/docs/7", "/acme/docs/07", "/acme/docs/%D9%A7"])
def test_a_popped_view_argument_keys_the_rule_as_matched(
    make_app: AppFactory, spelling: str
) -> None:
    """Flask's ``url_value_preprocessor`` pattern (a tenant or language popped from the view
    arguments before the guard runs) left the guard arguments the rule could not be built
    from, so it keyed the raw spelling: ``PATCH /acme/docs/07`` reached ``doc(id=7)`` of
    ``acme`` past a lock on ``/acme/docs/7``."""
    from flask import g, jsonify

    app = make_app()

    @app.url_value_preprocessor
    def pull_tenant(endpoint: str | None, values: dict[str, Any] | None) -> None:
        if values and "tenant" in values:
            g.tenant = values.pop("tenant")

    @app.route("/<tenant>/docs/<int:id>", methods=["GET", "PATCH"])
    def tenant_doc(id: int) -> Any:
        return jsonify(tenant=g.tenant, wrote=id)

    client = app.test_client()
    lock = client.post("/acme/docs/07/@lock", headers={"X-User": "alice"})
    assert lock.status_code == 200 and lock.json["resource"] == "/acme/docs/7"
    for _ in range(2):  # computed, then from the guard's key cache
        refused = client.patch(spelling, headers={"X-User": "bob"})
        assert refused.status_code == 403, refused.get_data(as_text=True)
    token = {"X-User": "bob", "Lock-Token": lock.json["token"]}
    assert client.patch(spelling, headers=token).json == {"tenant": "acme", "wrote": 7}
    assert client.patch("/other/docs/07", headers={"X-User": "bob"}).status_code == 200


def test_a_rewritten_view_argument_keys_what_the_view_gets(make_app: AppFactory) -> None:
    """A ``url_value_preprocessor`` that rewrites an argument in place (a slug lowercased)
    made the guard key what the view gets (``/docs/abc``) while ``@lock`` keyed what the
    rule matched (``/docs/ABC``): a lock taken on ``/docs/ABC`` did not refuse even
    ``PATCH /docs/ABC``. Both now key what the view gets."""
    from flask import jsonify

    app = make_app()

    @app.url_value_preprocessor
    def lower_slug(endpoint: str | None, values: dict[str, Any] | None) -> None:
        if values and "slug" in values:
            values["slug"] = values["slug"].lower()

    @app.route("/pages/<slug>", methods=["GET", "PATCH"])
    def page(slug: str) -> Any:
        return jsonify(wrote=slug)

    client = app.test_client()
    lock = client.post("/pages/ABC/@lock", headers={"X-User": "alice"})
    assert lock.status_code == 200 and lock.json["resource"] == "/pages/abc"
    for spelling in ("/pages/ABC", "/pages/abc", "/pages/ABC"):
        refused = client.patch(spelling, headers={"X-User": "bob"})
        assert refused.status_code == 403, (spelling, refused.get_data(as_text=True))
    assert client.post("/pages/Abc/@lock", headers={"X-User": "bob"}).status_code == 409
    with app.app_context():
        locking = app.extensions["locking"].extension
        assert locking.get("/pages/aBc") is not None  # the Python API keys it the same way


def test_an_argument_replaced_by_an_object_keys_what_was_matched(make_app: AppFactory) -> None:
    """A preprocessor that loads a model in place of its id left the guard building the
    key from the object (``/things/<Thing object at 0x...>``, another key per request):
    no lock on the thing ever refused a write to it."""
    from flask import jsonify

    class Thing:
        def __init__(self, ident: str) -> None:
            self.ident = ident

    app = make_app()

    @app.url_value_preprocessor
    def load_thing(endpoint: str | None, values: dict[str, Any] | None) -> None:
        if values and "thing" in values:
            values["thing"] = Thing(values["thing"])

    @app.route("/things/<thing>", methods=["GET", "PATCH"])
    def thing_view(thing: Thing) -> Any:
        return jsonify(wrote=thing.ident)

    client = app.test_client()
    lock = client.post("/things/1/@lock", headers={"X-User": "alice"})
    assert lock.status_code == 200 and lock.json["resource"] == "/things/1"
    for _ in range(2):
        refused = client.patch("/things/1", headers={"X-User": "bob"})
        assert refused.status_code == 403, refused.get_data(as_text=True)
    assert client.patch("/things/2", headers={"X-User": "bob"}).json == {"wrote": "2"}


_DIGITS = {"0": "0０٠", "1": "1１١", "2": "2２٢", "7": "7７٧"}


def _spell(number: str, data: Any) -> str:
    """A spelling of ``number`` that Werkzeug's int converter reads as the same number:
    leading zeros, full-width or Arabic-Indic digits."""
    from hypothesis import strategies as st

    zeros = data.draw(st.integers(0, 2))
    return "0" * zeros + "".join(data.draw(st.sampled_from(_DIGITS[c])) for c in number)


def test_every_spelling_of_one_view_call_is_one_key(make_app: AppFactory) -> None:
    """Property: whatever spelling a lock is taken through and a write arrives by (a popped
    tenant, a lowercased slug, any digits the int converter reads; keyed by the
    endpoint's first rule, a GET one), a write reaching the locked view call is refused
    and one reaching another goes on."""
    from flask import g, jsonify
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    app = make_app()

    @app.url_value_preprocessor
    def tenant_and_slug(endpoint: str | None, values: dict[str, Any] | None) -> None:
        if values and "tenant" in values:
            g.tenant = values.pop("tenant")
        if values and "slug" in values:
            values["slug"] = values["slug"].lower()

    def article(id: int, slug: str) -> Any:
        return jsonify(tenant=g.tenant, id=id, slug=slug)

    app.add_url_rule("/<tenant>/articles/<int:id>/<slug>", "article", article, methods=["GET"])
    app.add_url_rule(
        "/<tenant>/edit/<int:id>/<slug>", "article", article, methods=["PATCH"]
    )
    client = app.test_client()
    alice, bob = {"X-User": "alice"}, {"X-User": "bob"}

    @settings(
        max_examples=40, deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(data=st.data())
    def prove(data: Any) -> None:
        number = data.draw(st.sampled_from(["7", "12", "20"]))
        slug = data.draw(st.sampled_from(["Ab", "ab", "AB"]))
        url = f"/acme/edit/{_spell(number, data)}/{slug}"
        lock = client.post(f"{url}/@lock", headers=alice)
        assert lock.status_code == 200, lock.get_data(as_text=True)
        try:
            same = data.draw(st.booleans())
            other = number if same else data.draw(
                st.sampled_from([n for n in ("7", "12", "20") if n != number]))
            case = data.draw(st.sampled_from([slug.lower(), slug.upper(), slug.title()]))
            write = f"/acme/edit/{_spell(other, data)}/{case}"
            response = client.patch(write, headers=bob)
            assert response.status_code == (403 if same else 200), (url, write)
        finally:
            assert client.delete(f"{url}/@lock", headers=alice).status_code == 200

    prove()


def _read_and_edit_rules(make_app: AppFactory) -> Any:
    """Endpoint ``article`` served by ``GET /articles/<int:id>`` (its first rule, the URL
    ``url_for`` gives) and ``PATCH /edit/<int:id>``."""
    from flask import jsonify

    app = make_app()

    def article(id: int) -> Any:
        return jsonify(wrote=id)

    app.add_url_rule("/articles/<int:id>", "article", article, methods=["GET"])
    app.add_url_rule("/edit/<int:id>", "article", article, methods=["PATCH"])
    return app


def test_lock_on_a_read_only_spelling_keys_as_its_endpoint_writes(make_app: AppFactory) -> None:
    """``POST /articles/07/@lock`` found no rule serving a guarded method at
    ``/articles/07`` and keyed the normalised path ``/articles/07``, while the guard keys
    ``PATCH /edit/7`` by the endpoint (``/articles/7``): Bob's write went through Alice's
    lock, and Bob could lock ``/articles/7`` a second time. A path served for reads by an
    endpoint that another rule writes is now keyed by that endpoint, as the guard keys it."""
    app = _read_and_edit_rules(make_app)
    client = app.test_client()
    alice, bob = {"X-User": "alice"}, {"X-User": "bob"}
    lock = client.post("/articles/07/@lock", headers=alice)
    assert lock.status_code == 200 and lock.json["resource"] == "/articles/7"
    for _ in range(2):  # computed, then from the guard's key cache
        refused = client.patch("/edit/7", headers=bob)
        assert refused.status_code == 403, refused.get_data(as_text=True)
    second = client.post("/articles/7/@lock", headers=bob)
    assert second.status_code == 409, second.get_data(as_text=True)
    again = client.post("/articles/07/@lock", headers=bob)  # the @lock key cache
    assert again.status_code == 409, again.get_data(as_text=True)
    token = {**bob, "Lock-Token": lock.json["token"]}
    assert client.patch("/edit/07", headers=token).json == {"wrote": 7}
    assert client.patch("/edit/8", headers=bob).json == {"wrote": 8}
    with app.app_context():
        locking = app.extensions["locking"].extension
        assert locking.get("/articles/007").resource == "/articles/7"  # the Python API too


def test_a_get_only_catch_all_still_keys_the_normalised_path(make_app: AppFactory) -> None:
    """The endpoint rule applies only to an endpoint some rule writes: a ``GET``
    catch-all (no guarded rule of its endpoint) keeps keying the normalised path, and
    the write rule still decides where it serves the path."""
    from flask import jsonify

    app = make_app()
    app.add_url_rule("/<path:anything>", "front", lambda anything: jsonify(page=anything))

    @app.patch("/items/<int:item_id>")
    def item(item_id: int) -> Any:
        return jsonify(item=item_id)

    client = app.test_client()
    lock = client.post("/pages/07/@lock", headers={"X-User": "alice"})
    assert lock.status_code == 200 and lock.json["resource"] == "/pages/07"
    other = client.post("/pages/7/@lock", headers={"X-User": "bob"})
    assert other.status_code == 200 and other.json["resource"] == "/pages/7"
    assert client.post("/items/07/@lock", headers={"X-User": "bob"}).json["resource"] == "/items/7"


def test_a_read_only_trailing_slash_rule_is_routed(make_app: AppFactory) -> None:
    """Werkzeug answers 404, not 405, for a method a trailing-slash rule does not serve on
    the spelling without the slash, so ``POST /ro/7/@lock`` (``GET /ro/<int:id>/`` only)
    was refused as a path the app does not route. Every method is asked now."""
    from flask import jsonify

    app = make_app()
    app.add_url_rule("/ro/<int:id>/", "ro", lambda id: jsonify(id=id), methods=["GET"])
    app.add_url_rule(
        "/lax/<int:id>/", "lax", lambda id: jsonify(id=id), methods=["GET"], strict_slashes=False
    )
    client = app.test_client()
    for url in ("/ro/7/@lock", "/lax/7/@lock", "/lax/7//@lock"):
        lock = client.post(url, headers={"X-User": "alice"})
        assert lock.status_code == 200, (url, lock.get_data(as_text=True))
    assert client.post("/nothing/7/@lock", headers={"X-User": "alice"}).status_code == 404
