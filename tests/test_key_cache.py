"""The guard's per-rule key cache never hands one request another request's key.

The cache skips building a rule back for a request seen before. View arguments alone do not
tell requests apart: Flask's documented tenant pattern pops the tenant from them in a
``url_value_preprocessor`` before the guard runs, so ``/acme/docs/1`` and ``/globex/docs/1``
reach the guard with the same rule and the same arguments (found by review: the second
tenant's locked document took a write without a token).
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Blueprint, Flask, g
from hypothesis import given, settings
from hypothesis import strategies as st

from flask_locking import Locking


def tenant_app(tmp_path: Any) -> Flask:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(TESTING=True, SECRET_KEY="s")
    bp = Blueprint("tenant", __name__, url_prefix="/<tenant>")

    @bp.url_value_preprocessor
    def pop_tenant(_endpoint: str | None, values: dict[str, Any] | None) -> None:
        g.tenant = (values or {}).pop("tenant", None)

    @bp.route("/docs/<int:doc_id>", methods=["GET", "PATCH"])
    def doc(doc_id: int) -> Any:
        return {"tenant": g.tenant, "doc": doc_id}

    app.register_blueprint(bp)
    Locking(app)
    return app


@pytest.mark.parametrize("first", ["acme", "globex"])
def test_a_popped_tenant_does_not_share_the_cached_key(tmp_path: Any, first: str) -> None:
    app = tenant_app(tmp_path)
    client = app.test_client()
    assert client.patch(f"/{first}/docs/1").status_code == 200  # fills the cache
    locked = client.post("/globex/docs/1/@lock")
    assert locked.status_code == 200, locked.get_json()
    assert client.patch("/globex/docs/1").status_code == 403  # no token: refused
    assert client.patch("/acme/docs/1").status_code == 200  # another tenant's document


@settings(max_examples=40, deadline=None)
@given(
    tenants=st.lists(
        st.text(alphabet="abcdefgh", min_size=1, max_size=4), min_size=2, max_size=4, unique=True
    ),
    order=st.randoms(use_true_random=False),
)
def test_every_tenant_is_keyed_on_its_own(
    tmp_path_factory: Any, tenants: list[str], order: Any
) -> None:
    """Whatever tenants write first (and fill the cache), a lock of one tenant refuses a
    tokenless write to that tenant's document only."""
    app = tenant_app(tmp_path_factory.mktemp("t"))
    client = app.test_client()
    locked = tenants[0]
    assert client.post(f"/{locked}/docs/1/@lock").status_code == 200
    writes = [t for t in tenants for _ in range(2)]
    order.shuffle(writes)
    for tenant in writes:
        expected = 403 if tenant == locked else 200
        assert client.patch(f"/{tenant}/docs/1").status_code == expected, tenant


def _many_routes_app(tmp_path: Any, routes: int) -> Flask:
    app = Flask(__name__, instance_path=str(tmp_path / "many"))
    app.config.update(TESTING=True, SECRET_KEY="s")
    for index in range(routes):
        app.add_url_rule(f"/r{index}/<item>", f"r{index}", lambda item: {"item": item},
                         methods=["GET", "PATCH"])
    Locking(app)
    return app


def test_a_guarded_request_never_lists_every_rule(tmp_path: Any, monkeypatch: Any) -> None:
    """The caches' validity check costs the same with 300 routes as with 3: the guard must
    not build the list of every rule per request (it did: ``len(url_map._rules)``)."""
    from werkzeug.routing import Map

    app = _many_routes_app(tmp_path, 300)
    client = app.test_client()
    assert client.patch("/r7/a").status_code == 200  # the caches are filled
    assert client.post("/r7/b/@lock").status_code == 200

    def every_rule(self: Map) -> Any:
        raise AssertionError("the guard listed every rule of the app")

    monkeypatch.setattr(Map, "_rules", property(every_rule))
    for _ in range(3):
        assert client.patch("/r7/a").status_code == 200
        assert client.patch("/r7/b").status_code == 403
        assert client.get("/r7/b/@lock").status_code == 200


def test_a_rule_added_after_requests_starts_the_caches_anew(tmp_path: Any) -> None:
    """Every rule enters a map through ``Map.add``, also one added directly after the app
    served requests (Flask refuses ``add_url_rule`` then, not ``url_map.add``): the key of a
    path it changes is computed again, never served from the cache."""
    from werkzeug.routing import Rule

    from flask_locking.keys import rules_version

    app = Flask(__name__, instance_path=str(tmp_path / "late"))
    app.config.update(TESTING=True, SECRET_KEY="s")

    @app.route("/docs/<doc_id>", methods=["GET", "PATCH"])
    def doc(doc_id: str) -> Any:
        return {"doc": doc_id}

    Locking(app)
    client = app.test_client()
    assert client.post("/docs/1/@lock").status_code == 200
    assert client.patch("/docs/1").status_code == 403
    # Unrouted so far: no rule serves /files/1, so a PATCH there is a 405/404, unguarded.
    assert client.patch("/files/1").status_code in (404, 405)
    before = rules_version(app.url_map)
    # A second spelling of the same document, added to the same endpoint directly.
    app.url_map.add(Rule("/files/<doc_id>", endpoint="doc", methods=["GET", "PATCH"]))
    assert rules_version(app.url_map) == before + 1
    # The new spelling reaches the locked document's view: it must be refused too.
    assert client.patch("/files/1").status_code == 403
    assert client.patch("/docs/1").status_code == 403
