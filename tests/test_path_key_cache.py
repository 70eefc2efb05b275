"""The key caches never hand one request another request's key.

:func:`flask_locking.keys.path_key` (``@lock``) keeps its answer per app, by the path and
the URL adapter's binding (host, subdomain, ``SCRIPT_NAME``, scheme);
:func:`flask_locking.keys.request_key` (the guard) by the rule, path, view arguments and
the same binding, namespace included. Tenants routed by host or subdomain or mounted under
a ``SCRIPT_NAME`` address the same path and must still get keys in their own namespace,
whatever request filled the cache first.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask, g, jsonify
from hypothesis import given, settings
from hypothesis import strategies as st

from flask_locking import Locking
from flask_locking.keys import _path_key, _request_key, path_key, request_key
from flask_locking.state import locking_state

TENANTS = ["acme", "globex", "ACME", "www"]
MOUNTS = ["", "/a", "/b", "/a/b"]
PATHS = ["/docs/1", "/docs/01", "/docs/1/", "/docs/x", "/other/1", "/", "/docs//1"]


def pop_tenant(_endpoint: str | None, values: dict[str, Any] | None) -> None:
    # Flask's documented tenant pattern: the view arguments no longer tell tenants apart
    g.tenant = (values or {}).pop("tenant", None)


def subdomain_app(tmp_path: Any) -> Flask:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"), subdomain_matching=True)
    app.config.update(TESTING=True, SECRET_KEY="s", SERVER_NAME="example.com")

    app.url_value_preprocessor(pop_tenant)

    @app.route("/docs/<int:doc_id>", methods=["GET", "PATCH"], subdomain="<tenant>")
    def document(doc_id: int) -> Any:
        return jsonify(id=doc_id, tenant=g.tenant)

    @app.route("/docs/<int:doc_id>", methods=["GET", "PATCH"])
    def root_document(doc_id: int) -> Any:
        return jsonify(id=doc_id)

    Locking(app)
    return app


def host_app(tmp_path: Any) -> Flask:
    app = Flask(
        __name__, instance_path=str(tmp_path / "instance"), host_matching=True,
        static_host="static.test",
    )
    app.config.update(TESTING=True, SECRET_KEY="s")

    app.url_value_preprocessor(pop_tenant)

    @app.route("/docs/<int:doc_id>", methods=["GET", "PATCH"], host="<tenant>.test")
    def document(doc_id: int) -> Any:
        return jsonify(id=doc_id, tenant=g.tenant)

    Locking(app)
    return app


def mounted_app(tmp_path: Any) -> Flask:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(TESTING=True, SECRET_KEY="s")

    @app.route("/docs/<int:doc_id>", methods=["GET", "PATCH"])
    def document(doc_id: int) -> Any:
        return jsonify(id=doc_id)

    Locking(app)
    return app


requests = st.lists(
    st.tuples(
        st.sampled_from(TENANTS + [""]),
        st.sampled_from(MOUNTS),
        st.sampled_from(PATHS),
        st.sampled_from(["http", "https"]),
    ),
    min_size=1,
    max_size=12,
)


def _answers_match(app: Flask, calls: list[tuple[str, str, str, str]], host: bool) -> None:
    state = locking_state(app)
    for tenant, mount, path, scheme in calls:
        server = f"{tenant}.example.com" if host and tenant else "example.com"
        if not host:  # a host-matching app, or one that ignores the host
            server = f"{tenant or 'www'}.test"
        base = f"{scheme}://{server}{mount}/"
        with app.test_request_context(path.rstrip("/") + "/@lock", base_url=base, method="POST"):
            cached = path_key(state, path)
            assert cached == _path_key(state, path), (tenant, mount, path, scheme)
            assert path_key(state, path) == cached


def _guard_keys_match(app: Flask, calls: list[tuple[str, str, str, str]], host: bool) -> None:
    """The guard's cached key of each write is the one computed afresh for it."""
    state = locking_state(app)
    for tenant, mount, path, scheme in calls:
        server = f"{tenant}.example.com" if host and tenant else "example.com"
        if not host:
            server = f"{tenant or 'www'}.test"
        base = f"{scheme}://{server}{mount}/"
        with app.test_request_context(path, base_url=base, method="PATCH") as ctx:
            app.preprocess_request()  # the url_value_preprocessor pops the tenant
            cached = request_key(state)
            assert cached == _request_key(state, ctx.url_adapter), (tenant, mount, path)
            assert request_key(state) == cached


@settings(max_examples=60, deadline=None)
@given(calls=requests, kind=st.sampled_from(["subdomain", "host", "mount"]))
def test_the_guard_never_shares_a_cached_key(
    tmp_path_factory: Any, calls: Any, kind: str
) -> None:
    make = {"subdomain": subdomain_app, "host": host_app, "mount": mounted_app}[kind]
    _guard_keys_match(make(tmp_path_factory.mktemp(kind)), calls, host=kind == "subdomain")


@settings(max_examples=60, deadline=None)
@given(calls=requests)
def test_subdomain_tenants_never_share_a_cached_key(tmp_path_factory: Any, calls: Any) -> None:
    """Whatever order requests arrive in, each gets the key computed afresh for it."""
    _answers_match(subdomain_app(tmp_path_factory.mktemp("s")), calls, host=True)


@settings(max_examples=60, deadline=None)
@given(calls=requests)
def test_host_tenants_never_share_a_cached_key(tmp_path_factory: Any, calls: Any) -> None:
    _answers_match(host_app(tmp_path_factory.mktemp("h")), calls, host=False)


@settings(max_examples=60, deadline=None)
@given(calls=requests)
def test_mounts_never_share_a_cached_key(tmp_path_factory: Any, calls: Any) -> None:
    _answers_match(mounted_app(tmp_path_factory.mktemp("m")), calls, host=False)


@pytest.mark.parametrize(
    ("build", "here", "there", "key"),
    [
        (subdomain_app, "http://acme.example.com/", "http://globex.example.com/",
         "[globex.example.com]/docs/1"),
        (mounted_app, "http://localhost/a/", "http://localhost/b/", "[/b]/docs/1"),
    ],
    ids=["subdomain", "mount"],
)
def test_a_lock_in_one_tenant_leaves_the_other_unlocked(
    tmp_path: Any, build: Any, here: str, there: str, key: str
) -> None:
    """Through HTTP: the cache filled by one tenant's ``@lock`` does not key another's."""
    client = build(tmp_path).test_client()
    assert client.get("/docs/1/@lock", base_url=here).get_json()["locked"] is False
    held = client.post("/docs/1/@lock", base_url=there)
    assert held.status_code == 200, held.get_json()
    assert held.get_json()["resource"] == key
    assert client.get("/docs/1/@lock", base_url=here).get_json()["locked"] is False
    assert client.patch("/docs/1", base_url=here).status_code == 200
    assert client.patch("/docs/1", base_url=there).status_code == 403
