"""One lock key per item whatever guarded method writes it, and the Python API's keys in
host-routed apps (docs/guard.rst; the review of the one-key-function work)."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask, jsonify, request

from flask_locking import InvalidResource, Locking
from flask_locking.keys import path_key

ALICE = {"X-User": "alice"}
BOB = {"X-User": "bob"}
CAROL = {"X-User": "carol"}


def _app(tmp_path: Any, **config: Any) -> Flask:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"), subdomain_matching=True)
    app.config.update(TESTING=True, SECRET_KEY="x", **config)
    return app


def _locking(app: Flask) -> Locking:
    locking = Locking(app)
    locking.identity_loader(lambda: request.headers.get("X-User"))
    return locking


def _two_rules(tmp_path: Any) -> tuple[Flask, Locking, list[tuple[str, Any]]]:
    """PATCH by ``<int:item_id>``, DELETE by ``<path:p>``: the review's reproduction."""
    app = _app(tmp_path, LOCKING_GUARDED_METHODS={"PATCH", "DELETE"})
    written: list[tuple[str, Any]] = []

    @app.patch("/items/<int:item_id>")
    def patch_item(item_id: int) -> Any:
        written.append(("PATCH", item_id))
        return jsonify(item=item_id)

    @app.delete("/items/<path:p>")
    def delete_item(p: str) -> Any:
        written.append(("DELETE", p))
        return jsonify(item=p)

    return app, _locking(app), written


def test_lock_refused_where_guarded_rules_key_the_path_differently(tmp_path: Any) -> None:
    app, _, written = _two_rules(tmp_path)
    client = app.test_client()
    refused = client.post("/items/07/@lock", headers=ALICE)
    assert refused.status_code == 400, refused.get_data(as_text=True)
    message = refused.get_json()["error"]["message"]
    assert "DELETE /items/<path:p> → /items/07" in message
    assert "PATCH /items/<int:item_id> → /items/7" in message
    # No lock was taken: nobody holds item 7 or "07".
    assert client.get("/items/7/@lock").get_json() == {"locked": False, "stealable": True}
    assert client.get("/items/07/@lock").status_code == 400


def test_a_lock_where_the_rules_agree_protects_every_guarded_method(tmp_path: Any) -> None:
    app, _, written = _two_rules(tmp_path)
    client = app.test_client()
    held = client.post("/items/7/@lock", headers=ALICE)
    assert held.status_code == 200 and held.get_json()["resource"] == "/items/7"
    token = held.get_json()["token"]
    assert client.patch("/items/7", headers=CAROL).status_code == 403
    assert client.patch("/items/07", headers=CAROL).status_code == 403
    assert client.delete("/items/7", headers=CAROL).status_code == 403
    assert client.post("/items/7/@lock", headers=BOB).status_code == 409
    assert client.post("/items/07/@lock", headers=BOB).status_code == 400  # never a second holder
    assert client.patch("/items/07", headers={**ALICE, "Lock-Token": token}).status_code == 200
    assert client.delete("/items/7", headers={**ALICE, "Lock-Token": token}).status_code == 200
    assert written == [("PATCH", 7), ("DELETE", "7")]


def test_python_api_refuses_a_key_the_rules_disagree_on(tmp_path: Any) -> None:
    app, locking, _ = _two_rules(tmp_path)
    with app.app_context():
        with pytest.raises(InvalidResource, match="key it differently"):
            locking.acquire("/items/07", "alice")
        assert locking.acquire("/items/7", "alice").resource == "/items/7"


# -- the Python API in host- and subdomain-routed apps ------------------------------------------


def _tenants(tmp_path: Any, **config: Any) -> tuple[Flask, Locking]:
    app = _app(tmp_path, **config)

    @app.route("/docs/<int:doc_id>", methods=["GET", "PATCH"], subdomain="<tenant>")
    def document(doc_id: int, tenant: str) -> Any:
        return jsonify(id=doc_id, tenant=tenant)

    return app, _locking(app)


@pytest.mark.parametrize("server_name", [None, "example.com"])
def test_python_api_refuses_a_bare_path_outside_a_request_in_a_host_routed_app(
    tmp_path: Any, server_name: str | None
) -> None:
    app, locking = _tenants(tmp_path, SERVER_NAME=server_name)
    with app.app_context():
        with pytest.raises(InvalidResource, match=r"\[acme.example.com\]/docs/1"):
            locking.acquire("/docs/07", "alice")
        assert locking.locks() == []


def test_python_api_canonicalises_a_namespaced_key_as_that_host_routes_it(tmp_path: Any) -> None:
    app, locking = _tenants(tmp_path, SERVER_NAME="example.com")
    with app.app_context():
        lock = locking.acquire("[acme.example.com]/docs/07", "alice")
        assert lock.resource == "[acme.example.com]/docs/7"
        assert locking.get("[acme.example.com]/docs/\uff17").resource == lock.resource
    client = app.test_client()
    assert (
        client.patch("/docs/7", headers=BOB, base_url="http://acme.example.com").status_code == 403
    )
    assert (
        client.patch("/docs/07", headers=BOB, base_url="http://acme.example.com").status_code == 403
    )
    assert (
        client.patch("/docs/7", headers=BOB, base_url="http://globex.example.com").status_code
        == 200
    )


def test_python_api_inside_a_request_keys_into_the_request_host(tmp_path: Any) -> None:
    app, locking = _tenants(tmp_path, SERVER_NAME="example.com")
    with app.test_request_context("/", base_url="http://acme.example.com"):
        assert locking.acquire("/docs/007", "alice").resource == "[acme.example.com]/docs/7"
        key, routed = path_key(app.extensions["locking"], "[globex.example.com]/docs/08")
        assert (key, routed) == ("[globex.example.com]/docs/8", True)


def test_namespaced_key_with_a_mount_point_is_canonicalised_under_it(tmp_path: Any) -> None:
    app = _app(tmp_path)

    @app.patch("/docs/<int:doc_id>/")
    def document(doc_id: int) -> Any:
        return jsonify(id=doc_id)

    locking = _locking(app)
    with app.app_context():
        assert locking.acquire("[/tenant_a]/docs/07", "alice").resource == "[/tenant_a]/docs/7"
    client = app.test_client()
    refused = client.patch("/docs/07/", headers=BOB, base_url="http://localhost/tenant_a")
    assert refused.status_code == 403
    assert (
        client.patch("/docs/7/", headers=BOB).status_code == 200
    )  # the unmounted app: another tenant


# -- each key resolved once per request -------------------------------------------------------


def test_lock_endpoint_resolves_its_key_once(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from werkzeug.routing import MapAdapter

    from flask_locking.dialects.content import ContentDialect

    app = _app(tmp_path)

    @app.patch("/items/<int:item_id>")
    def item(item_id: int) -> Any:
        return jsonify(item=item_id)

    _locking(app)
    client = app.test_client()
    calls = {"match": 0, "claims": 0, "resource_key": 0}
    match, claims, resource_key = (
        MapAdapter.match,
        ContentDialect.claims_request,
        ContentDialect.resource_key,
    )

    def counting(name: str, real: Any) -> Any:
        def spy(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return real(*args, **kwargs)

        return spy

    monkeypatch.setattr(MapAdapter, "match", counting("match", match))
    monkeypatch.setattr(ContentDialect, "claims_request", counting("claims", claims))
    monkeypatch.setattr(ContentDialect, "resource_key", counting("resource_key", resource_key))

    def cost(send: Any) -> dict[str, int]:
        for name in calls:
            calls[name] = 0
        assert send().status_code in (200, 403)
        return dict(calls)

    patch = cost(lambda: client.patch("/items/07", headers=BOB))
    for number, method in enumerate(("post", "get", "patch", "delete")):
        lock = cost(lambda method=method: getattr(client, method)("/items/07/@lock", headers=ALICE))
        # Flask's own routing, plus the one key resolution of the path (the dialect's
        # rewrite applied once) the first time; then the path's key comes from the cache.
        resolved = 1 if number == 0 else 0
        assert lock["match"] == patch["match"] + resolved, (method, lock, patch)
        assert lock["resource_key"] == resolved, (method, lock)
        assert lock["claims"] == 1, (method, lock)
    assert patch["claims"] == 1 and patch["resource_key"] == 1
