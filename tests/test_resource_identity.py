"""One resource, one key (docs/guard.rst), as a property over host routing shapes and spellings.

Hypothesis draws how a host routes a resource (converter, trailing slash, strict slashes,
a GET catch-all, a static route at the root, different rules per method, an endpoint's
second rule serving GET only, nested blueprints, a subdomain, a SCRIPT_NAME mount, a host
dialect) and how a client spells its
URL (zero padding, Unicode digits, uuid case, percent-encoding, ``//``, dot segments, a
trailing slash). Alice locks the resource through one spelling; then, for every other
spelling, a write without the token must not reach the view with the locked resource's
arguments, and Bob's ``@lock`` must not be granted. The views, not the extension, say
which resource a request reached: the oracle is the host's own router.
"""

from __future__ import annotations

import pathlib
import tempfile
import textwrap
import uuid as uuid_module
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
from flask import Blueprint, Flask, jsonify, request
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st
from werkzeug.routing import BaseConverter

from flask_locking import Locking
from flask_locking.dialects import Dialect

settings.register_profile(
    "resource-identity",
    max_examples=200,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],  # no tracing "explain" phase: slow
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
PROFILE = settings.get_profile("resource-identity")
ALICE = {"X-User": "alice"}
BOB = {"X-User": "bob"}
STATIC = tempfile.mkdtemp(prefix="locking-static-")


class HexConverter(BaseConverter):
    """A host's own converter with one canonical spelling: ``0FF`` and ``ff`` are 255."""

    regex = "[0-9a-fA-F]+"

    def to_python(self, value: str) -> int:
        return int(value, 16)

    def to_url(self, value: Any) -> str:
        return format(int(value), "x")


# -- how a resource is routed, and how its URL can be spelled -------------------------------

FAMILIES = ("int", "uuid", "string", "path", "hex")
UUID = uuid_module.UUID("7d2b5e7c-0c1f-4d7e-9a55-3b1f0c2a9e41")
CANONICAL: dict[str, Any] = {
    "int": 7,
    "uuid": UUID,
    "string": "caf\u00e9",
    "path": "a/b",
    "hex": 255,
}
#: The canonical resource as its route builds it.
CANONICAL_URL = {"int": "7", "uuid": str(UUID), "string": "caf%C3%A9", "path": "a/b", "hex": "ff"}


def identity(family: str, value: Any) -> Any:
    """What resource a view's argument names, as the host's own code reads it."""
    if family == "path":
        parts: list[str] = []
        for part in str(value).split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if parts:
                    parts.pop()
                continue
            parts.append(part)
        return "/".join(parts)
    return value


def spellings(family: str) -> st.SearchStrategy[str]:
    """Ways to write the canonical resource's segment that the host's router reads as it."""
    if family == "int":
        return st.sampled_from(
            ["7", "07", "0007", "\uff17", "\u0667", "0\uff17", "%37", "%EF%BC%97"]
        )
    if family == "uuid":
        text = str(UUID)
        return st.sampled_from(
            [text, text.upper(), text[:8].upper() + text[8:], quote(text, safe="")]
        )
    if family == "string":
        return st.sampled_from(["caf\u00e9", "caf%C3%A9", "%63af%C3%A9"])
    if family == "path":
        return st.sampled_from(["a/b", "a//b", "a/./b", "./a/b", "a/x/../b", "a/%62", "a/b/."])
    return st.sampled_from(["ff", "FF", "0ff", "00Ff", "%46F"])


@dataclass
class Shape:
    family: str
    slash: bool  # the write rule ends with "/"
    strict: bool
    catch_all: bool
    static_root: bool
    split_methods: bool  # GET and PATCH served by different rules
    mount: str  # "app", "nested", "subdomain", "script"
    dialect: bool  # an OrderLocks-style host dialect locks the resource, depth infinity
    #: A second guarded method, served by its own looser rule (``<path:value>``): one item,
    #: two rules with different canonical URLs for two guarded methods.
    second: str | None = None
    #: The write endpoint also served by a second rule at ``/stuff/`` (added before or
    #: after its first): one view, two spellings of every resource.
    alias: str | None = None
    #: The alias rule serves GET only (the endpoint's writes arrive through ``/things/``):
    #: a lock taken through the read-only spelling must key as the writes are keyed.
    alias_reads: bool = False
    reached: list[tuple[str, Any]] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return "/api/v1" if self.mount == "nested" else ""

    @property
    def base_url(self) -> str:
        if self.mount == "subdomain":
            return "http://acme.example.test"
        if self.mount == "script":
            return "http://example.test/tenant_a"
        return "http://example.test"

    def url(self, segment: str, *, trailing: bool = False, doubled: bool = False) -> str:
        start = "/shop/orders/" if self.dialect else "/things/"
        path = f"{self.prefix}{start}{segment}"
        if self.dialect:
            path += "/lines/1"
        if doubled:
            path = path.replace("/shop/", "//shop/").replace("/things/", "/things//")
        return path + ("/" if trailing else "")


shapes = st.builds(
    Shape,
    family=st.sampled_from(FAMILIES),
    slash=st.booleans(),
    strict=st.booleans(),
    catch_all=st.booleans(),
    static_root=st.booleans(),
    split_methods=st.booleans(),
    mount=st.sampled_from(["app", "nested", "subdomain", "script"]),
    dialect=st.booleans(),
    second=st.sampled_from([None, "PUT", "DELETE"]),
    alias=st.sampled_from([None, "before", "after"]),
    alias_reads=st.booleans(),
).filter(
    lambda shape: not (shape.dialect and shape.mount == "subdomain")  # dialect: no subdomain
    and not (shape.alias and (shape.dialect or shape.second))  # alias: one write method
)


def _docs_example() -> str:
    """The ``OrderLocks`` code block of docs/dialects.rst, exactly as published."""
    text = (pathlib.Path(__file__).parent.parent / "docs" / "dialects.rst").read_text()
    start = text.index("    from flask_locking.dialects import EnvelopeErrorFormat, PathDialect")
    end = text.index("\n", text.index("    locking.add_dialect(OrderLocks", start))
    return textwrap.dedent(text[start:end])


def _order_locks() -> type[Dialect]:
    """The docs' ``OrderLocks`` class, to serve under any prefix."""
    code = _docs_example().rsplit("locking.add_dialect", 1)[0]
    names: dict[str, Any] = {"__name__": "docs_example"}
    exec(code, names)  # noqa: S102
    return names["OrderLocks"]  # type: ignore[no-any-return]


def build_app(shape: Shape) -> Flask:
    family = "int" if shape.dialect else shape.family
    kwargs: dict[str, Any] = {"instance_path": tempfile.mkdtemp(prefix="locking-pbt-")}
    if shape.static_root:
        kwargs.update(static_url_path="", static_folder=STATIC)
    if shape.mount == "subdomain":
        kwargs["subdomain_matching"] = True
    app = Flask(__name__, **kwargs)
    app.url_map.converters["hex"] = HexConverter
    app.config.update(TESTING=True, SECRET_KEY="pbt", SERVER_NAME="example.test")
    app.config["LOCKING_GUARDED_METHODS"] = {"PATCH"} | ({shape.second} if shape.second else set())
    if shape.mount == "subdomain":
        app.url_map.default_subdomain = ""
    tail = "/" if shape.slash else ""
    if shape.dialect:
        rule = f"/shop/orders/<int:value>/lines/<int:line>{tail}"
    else:
        rule = f"/things/<{family}:value>{tail}"

    def write(value: Any, line: int = 0) -> Any:
        shape.reached.append((request.method, identity(family, value)))
        return jsonify(ok=True)

    def read(**_: Any) -> Any:
        return jsonify(ok=True)

    options: dict[str, Any] = {"strict_slashes": shape.strict}
    if shape.mount == "subdomain":
        options["subdomain"] = "<tenant>"
    target: Any = app
    if shape.mount == "nested":
        target = Blueprint("v1", __name__, url_prefix="/v1")
    methods = ["PATCH"] if shape.split_methods else ["GET", "PATCH"]

    def write_view(tenant: str = "", **args: Any) -> Any:
        return write(**args)

    def read_view(tenant: str = "", **args: Any) -> Any:
        return read(**args)

    def second_view(tenant: str = "", value: str = "", line: str = "") -> Any:
        shape.reached.append((request.method, identity("path", value)))
        return jsonify(ok=True)

    alias = rule.replace("/things/", "/stuff/")
    alias_methods = ["GET"] if shape.alias_reads else methods
    if shape.alias == "before":
        target.add_url_rule(alias, "write", write_view, methods=alias_methods, **options)
    target.add_url_rule(rule, "write", write_view, methods=methods, **options)
    if shape.alias == "after":
        target.add_url_rule(alias, "write", write_view, methods=alias_methods, **options)
    # GET (split_methods) and the second guarded method are served by a looser rule: a
    # plain path, no converter canonicalises it.
    loose = rule.replace(f"<{family}:value>", "<path:value>").replace("<int:line>", "<line>")
    if shape.split_methods:
        target.add_url_rule(loose, "read", read_view, methods=["GET"], **options)
    if shape.second:
        target.add_url_rule(loose, "write_second", second_view, methods=[shape.second], **options)
    if shape.catch_all:
        app.add_url_rule("/<path:anything>", "catch_all", read, methods=["GET"])
    if shape.mount == "nested":
        parent = Blueprint("api", __name__, url_prefix="/api")
        parent.register_blueprint(target)
        app.register_blueprint(parent)
    locking = Locking(app)
    locking.identity_loader(lambda: request.headers.get("X-User"))
    if shape.dialect:
        locking.add_dialect(_order_locks(), shape.prefix + "/shop", app=app)
    return app


@dataclass
class Attack:
    segment: str
    trailing: bool
    doubled: bool
    via_alias: bool = False  # through the write endpoint's second rule, where there is one


def attacks(family: str) -> st.SearchStrategy[list[Attack]]:
    attack = st.builds(
        Attack, segment=spellings(family), trailing=st.booleans(), doubled=st.booleans(),
        via_alias=st.booleans(),
    )
    return st.lists(attack, min_size=1, max_size=4)


@settings(PROFILE)
@given(shape=shapes, data=st.data())
def test_no_spelling_writes_past_a_lock_or_locks_twice(shape: Shape, data: st.DataObject) -> None:
    note(f"shape: {shape}")
    app = build_app(shape)
    family = "int" if shape.dialect else shape.family
    client = app.test_client()
    base = shape.base_url
    canonical = CANONICAL[family]
    # Everything is drawn before the first request: what is drawn never depends on answers.
    lock_segment = data.draw(spellings(family), label="lock spelling")
    lock_via_alias = data.draw(st.booleans(), label="lock through the alias rule")
    tries = data.draw(attacks(family), label="attacks")

    def spelled(url: str, via_alias: bool) -> str:
        return url.replace("/things/", "/stuff/", 1) if via_alias and shape.alias else url

    try:
        # Alice locks the resource through one spelling.
        if shape.dialect:
            response = client.put(
                f"{shape.prefix}/shop/orders/{lock_segment}/lock", headers=ALICE, base_url=base
            )
            if response.status_code == 404:  # the dialect's own <int> rule: ASCII only
                response = client.put(
                    f"{shape.prefix}/shop/orders/7/lock", headers=ALICE, base_url=base
                )
            assert response.status_code == 201, response.get_data(as_text=True)
        else:
            lock_url = spelled(shape.url(lock_segment, trailing=shape.slash),
                               lock_via_alias) + "/@lock"
            response = client.post(lock_url, headers=ALICE, base_url=base)
            if response.status_code != 200:  # a spelling @lock refuses (dot segments): canonical
                lock_url = spelled(shape.url(CANONICAL_URL[family], trailing=shape.slash),
                                   lock_via_alias) + "/@lock"
                response = client.post(lock_url, headers=ALICE, base_url=base)
            assert response.status_code == 200, (lock_url, response.get_data(as_text=True))
        token = response.get_json()["token"]
        # The lock holds: the canonical spelling with the token reaches the view.
        good = shape.url(CANONICAL_URL[family], trailing=shape.slash)
        shape.reached.clear()
        allowed = client.patch(good, headers={**ALICE, "Lock-Token": token}, base_url=base)
        assert allowed.status_code == 200, (good, allowed.get_data(as_text=True))
        assert shape.reached == [("PATCH", identity(family, canonical))]
        # What the lock protects: what every guarded method reaches, through the spelling
        # Alice locked, with her token (each must get through: her lock covers them all).
        methods = ["PATCH", *([shape.second] if shape.second else [])]
        held = good if shape.dialect else lock_url.removesuffix("/@lock")
        if shape.alias_reads:  # locked through the read-only alias: written through /things/
            held = held.replace("/stuff/", "/things/", 1)
        shape.reached.clear()
        for method in methods:
            answer = _follow(client, method, held, {**ALICE, "Lock-Token": token}, shape)
            assert answer.status_code == 200, (method, held, answer.get_data(as_text=True))
        protected = set(shape.reached)
        # No other spelling reaches it without the token, and none locks it a second time.
        for attack in tries:
            url = spelled(
                shape.url(attack.segment, trailing=attack.trailing, doubled=attack.doubled),
                attack.via_alias,
            )
            for method in methods:
                shape.reached.clear()
                _follow(client, method, url, BOB, shape)
                bypass = [hit for hit in shape.reached if hit in protected]
                assert not bypass, f"{method} {url} reached the locked resource without its token"
            if not shape.dialect:
                second = client.post(url.rstrip("/") + "/@lock", headers=BOB, base_url=base)
                assert second.status_code != 200, f"POST {url}/@lock granted a second lock"
    finally:
        app.extensions["locking"].close()


def _follow(client: Any, method: str, url: str, headers: dict[str, str], shape: Shape) -> Any:
    """``method url``, following 307/308 redirects as browsers do (at most three hops)."""
    base = shape.base_url
    for _hop in range(3):
        answer = client.open(url, method=method, headers=headers, base_url=base)
        if answer.status_code not in (307, 308):
            break
        url = answer.headers["Location"].split(base.split("/", 3)[2], 1)[-1]
        if shape.mount == "script":
            url = url.removeprefix("/tenant_a")
    return answer


# -- the reproductions of the review, one by one ----------------------------------------------


def _items_app(tmp_path: Any, **flask: Any) -> Flask:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"), **flask)
    app.config.update(TESTING=True, SECRET_KEY="x")
    return app


def _locking(app: Flask) -> Locking:
    locking = Locking(app)
    locking.identity_loader(lambda: request.headers.get("X-User"))
    return locking


@pytest.mark.parametrize(
    "spelling", ["/items/07/", "/items/\uff17/", "/items/\u0667/", "/items/7/"]
)
def test_trailing_slash_rule_keys_every_spelling_as_its_rule(tmp_path: Any, spelling: str) -> None:
    app = _items_app(tmp_path)
    written: list[int] = []

    @app.route("/items/<int:item_id>/", methods=["GET", "PATCH"])
    def item(item_id: int) -> Any:
        written.append(item_id)
        return jsonify(item=item_id)

    _locking(app)
    client = app.test_client()
    held = client.post("/items/7/@lock", headers=ALICE)
    assert held.get_json()["resource"] == "/items/7"
    assert client.patch(spelling, headers=BOB).status_code == 403
    assert client.post(spelling + "@lock", headers=BOB).status_code == 409
    assert (
        client.patch(
            spelling, headers={**ALICE, "Lock-Token": held.get_json()["token"]}
        ).status_code
        == 200
    )
    assert written == [7]


@pytest.mark.parametrize("shape", ["static_root", "catch_all"])
@pytest.mark.parametrize("spelling", ["/items/07", "/items/007", "/items/\uff17"])
def test_the_write_rule_decides_not_a_get_catch_all(
    tmp_path: Any, shape: str, spelling: str
) -> None:
    flask = {"static_url_path": "", "static_folder": STATIC} if shape == "static_root" else {}
    app = _items_app(tmp_path, **flask)

    @app.patch("/items/<int:item_id>")
    def item(item_id: int) -> Any:
        return jsonify(item=item_id)

    if shape == "catch_all":
        app.add_url_rule("/<path:anything>", "front", lambda anything: "front end")
    _locking(app)
    client = app.test_client()
    assert client.post("/items/7/@lock", headers=ALICE).status_code == 200
    assert client.patch(spelling, headers=BOB).status_code == 403
    second = client.post(spelling + "/@lock", headers=BOB)
    assert second.status_code == 409, second.get_data(as_text=True)


def test_exempt_blueprint_is_by_full_name(tmp_path: Any) -> None:
    app = _items_app(tmp_path)
    admin = Blueprint("admin", __name__, url_prefix="/admin")
    api = Blueprint("api", __name__, url_prefix="/api")
    api_admin = Blueprint("admin", __name__, url_prefix="/admin")  # another "admin"
    for bp in (admin, api_admin):
        bp.add_url_rule("/docs/<int:doc_id>", "doc", lambda doc_id: "ok", methods=["PATCH"])
    api.register_blueprint(api_admin)
    app.register_blueprint(admin)
    app.register_blueprint(api)
    locking = _locking(app)
    locking.exempt(admin)
    with app.app_context():
        locking.acquire("/admin/docs/1", "alice")
        locking.acquire("/api/admin/docs/1", "alice")
    client = app.test_client()
    assert client.patch("/admin/docs/1", headers=BOB).status_code == 200  # exempt
    assert client.patch("/api/admin/docs/1", headers=BOB).status_code == 403  # api.admin is not


def test_python_api_keys_a_path_as_the_guard_does(tmp_path: Any) -> None:
    app = _items_app(tmp_path)

    @app.route("/items/<int:item_id>/", methods=["PATCH"])
    def item(item_id: int) -> Any:
        return jsonify(item=item_id)

    locking = _locking(app)
    with app.app_context():
        lock = locking.acquire("/items/007", "alice")
        assert lock.resource == "/items/7"
        assert locking.get("/items/\uff17").resource == "/items/7"
    assert app.test_client().patch("/items/07/", headers=BOB).status_code == 403


# -- the documented custom dialect, verbatim ------------------------------------------------


def test_documented_custom_dialect_is_safe_as_written(tmp_path: Any) -> None:
    app = _items_app(tmp_path)
    lines: list[tuple[int, int]] = []

    @app.patch("/shop/orders/<int:order_id>/lines/<int:line_id>")
    def order_line(order_id: int, line_id: int) -> Any:
        lines.append((order_id, line_id))
        return jsonify(order=order_id, line=line_id)

    locking = _locking(app)
    exec(_docs_example(), {"locking": locking, "app": app, "__name__": "docs_example"})  # noqa: S102
    client = app.test_client()
    held = client.put("/shop/orders/9/lock", headers=ALICE)
    assert held.status_code == 201
    for spelling in (
        "/shop/orders/9/lines/1",
        "/shop/orders/09/lines/1",
        "/shop/orders/\uff19/lines/1",
    ):
        refused = client.patch(spelling, headers=BOB)
        assert refused.status_code == 423, spelling
        assert refused.get_json() == {
            "status": "error",
            "code": 423,
            "message": "Locked",
            "details": "Resource is locked.",
        }
    token = held.get_json()["token"]
    assert client.patch("/shop/orders/09/lines/1", headers={"Lock-Token": token}).status_code == 200
    assert lines == [(9, 1)]
    assert client.put("/shop/orders/009/lock", headers=BOB).status_code == 409
