"""The lock listing API (GET/DELETE /@locks, /@locks/events) in tenants sharing one store:
each request sees and acts on its own namespace only (SPEC §4a), and the bulk release keys
a path exactly as ``<path>/@lock`` does (docs/events.rst, "The lock listing API")."""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, request
from helpers.sse import TestStream
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_locking import Locking
from flask_locking.resources import is_within, split_namespace
from tests.conftest import AppFactory

ALICE, BOB, MALLORY = {"X-User": "alice"}, {"X-User": "bob"}, {"X-User": "mallory"}
FAST = {"LOCKING_EVENTS_HEARTBEAT": 0.1, "LOCKING_EVENTS_POLL_INTERVAL": 0.05}
HOST = "http://example.test"
#: Mount point → the namespace its keys live in ("" is the app served unmounted).
MOUNTS = {"": "", "/a": "[/a]", "/b": "[/b]", "/a/b": "[/a/b]"}


def tenants_app(make_app: AppFactory, **config: Any) -> Flask:
    """The test app with an ``<int:>`` route too (``/n/01`` and ``/n/1`` are one key)."""
    app = make_app(**FAST, **config)

    @app.route("/n/<int:n>", methods=["GET", "PATCH"])
    def number(n: int) -> Any:
        return jsonify(n=n)

    return app


def listed(client: Any, mount: str, query: str = "", headers: dict[str, str] = ALICE) -> list[str]:
    response = client.get(f"/@locks?{query}", headers=headers, base_url=HOST + mount)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json["next"] is None
    return [item["resource"] for item in response.json["items"]]


def release(client: Any, mount: str, resources: list[str], **body: Any) -> dict[str, Any]:
    response = client.delete(
        "/@locks", json={"resources": resources, **body}, headers=ALICE, base_url=HOST + mount
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.json  # type: ignore[no-any-return]


def streamed(client: Any, mount: str, until: str, most: int) -> list[str]:
    """The resources of the events the mount's ``/@locks/events`` replays from the start,
    read until the event on ``until`` (at most ``most`` events, or a short wait)."""
    stream = TestStream(
        client, "/@locks/events", headers={"Last-Event-ID": "0", **ALICE}, base_url=HOST + mount
    )
    assert stream.status == 200
    seen: list[str] = []
    try:
        while until not in seen and len(seen) < most:
            events = stream.read(1, timeout=2)
            if not events:
                break
            seen += [event.data["resource"] for event in events]
    finally:
        stream.close()
    return seen


def test_tenants_neither_see_nor_release_each_others_locks(
    make_app: AppFactory, database_url: str
) -> None:
    app = tenants_app(make_app, database_url=database_url)
    client = app.test_client()
    held = client.post("/docs/1/@lock", headers=ALICE, base_url=HOST + "/a")
    assert held.json["resource"] == "[/a]/docs/1"
    client.post("/docs/2/@lock", headers=ALICE, base_url=HOST)  # the unmounted app's
    assert listed(client, "/a") == ["[/a]/docs/1"]
    for mount in ("/b", ""):  # another mount, and the app served unmounted
        assert "[/a]/docs/1" not in listed(client, mount, headers=BOB)
        assert "[/a]/docs/1" not in listed(client, mount, "prefix=/", headers=BOB)
        answer = client.delete(
            "/@locks", json={"resources": ["[/a]/docs/1"], "force": True}, headers=BOB,
            base_url=HOST + mount,
        ).json
        assert answer["released"] == [] and answer["not_locked"] == []
        [refused] = answer["refused"]
        assert refused["resource"] == "[/a]/docs/1" and refused["status"] == 400
        assert "namespace" in refused["message"]
        for url in ("/@locks?prefix=[/a]/docs", "/@locks/events?prefix=[/a]/docs"):
            bad = client.get(url, headers=BOB, base_url=HOST + mount)
            assert bad.status_code == 400 and bad.json["error"]["type"] == "BadRequest"
    assert listed(client, "") == ["/docs/2"]
    assert listed(client, "/b") == []
    assert client.get("/docs/1/@lock", base_url=HOST + "/a").json["locked"] is True
    assert client.patch("/docs/1", headers=MALLORY, base_url=HOST + "/a").status_code == 403
    # b's stream: its own lock is the last event; nothing of a's came before it
    client.post("/docs/9/@lock", headers=BOB, base_url=HOST + "/b")
    assert streamed(client, "/b", "[/b]/docs/9", most=10) == ["[/b]/docs/9"]
    assert streamed(client, "", "/docs/2", most=10) == ["/docs/2"]


def test_bulk_release_keys_as_at_lock(make_app: AppFactory, database_url: str) -> None:
    app = tenants_app(make_app, database_url=database_url)
    client = app.test_client()
    assert client.post("/n/01/@lock", headers=ALICE).json["resource"] == "/n/1"
    assert listed(client, "", "prefix=/n/01") == ["/n/1"]
    assert release(client, "", ["/n/01", "/n/001", "/n/2"]) == {
        "released": ["/n/1"],  # one outcome per key, whatever the spellings
        "not_locked": ["/n/2"],  # nobody held it: not reported as released
        "refused": [],
    }
    assert client.get("/n/1/@lock").json["locked"] is False
    # in a mount: paths are keyed into its namespace; its own keys are accepted as listed
    for spelling in ("/docs/1", "[/a]/docs/1"):
        client.post("/docs/1/@lock", headers=ALICE, base_url=HOST + "/a")
        assert listed(client, "/a", "prefix=/docs") == ["[/a]/docs/1"]
        assert listed(client, "/a", "prefix=[/a]/docs/1") == ["[/a]/docs/1"]
        assert release(client, "/a", [spelling]) == {
            "released": ["[/a]/docs/1"], "not_locked": [], "refused": []
        }
        assert client.get("/docs/1/@lock", base_url=HOST + "/a").json["locked"] is False


def test_dialect_filter_in_a_mount(make_app: AppFactory) -> None:
    app = tenants_app(make_app)
    client = app.test_client()
    job = client.post("/api/v1.0/companies/1/jobs/2/lock/", headers=ALICE, base_url=HOST + "/a")
    assert job.json["resource"] == "[/a]/api/v1.0/companies/1/jobs/2"
    client.post("/docs/1/@lock", headers=ALICE, base_url=HOST + "/a")
    assert listed(client, "/a", "dialect=jobs") == ["[/a]/api/v1.0/companies/1/jobs/2"]
    assert listed(client, "/a", "dialect=content") == ["[/a]/docs/1"]


def test_host_routed_tenants(tmp_path: Any, table_name: str) -> None:
    """The listing is not routed on tenant hosts; where it is served (the bare
    ``SERVER_NAME`` host of an app with subdomain tenants) it is that host's namespace."""
    app = Flask(__name__, instance_path=str(tmp_path / "hosts"))
    app.config.update(
        TESTING=True, SECRET_KEY="s", SERVER_NAME="example.test", LOCKING_TABLE_NAME=table_name,
    )
    app.subdomain_matching = True

    @app.route("/docs/<d>", subdomain="<tenant>", methods=["GET", "PATCH"])
    def document(tenant: str, d: str) -> Any:
        return jsonify(tenant=tenant, d=d)

    Locking(app).identity_loader(lambda: request.headers.get("X-User"))
    client = app.test_client()
    acme, bare = "http://acme.example.test", "http://example.test"
    try:
        held = client.post("/docs/1/@lock", headers=ALICE, base_url=acme).json["resource"]
        assert held == "[acme.example.test]/docs/1"
        assert client.get("/@locks", base_url="http://other.example.test").status_code == 404
        assert client.get("/@locks", headers=BOB, base_url=bare).json["items"] == []
        answer = client.delete(
            "/@locks", json={"resources": [held], "force": True}, headers=BOB, base_url=bare
        ).json
        assert answer["released"] == [] and answer["refused"][0]["status"] == 400
        assert client.patch("/docs/1", headers=MALLORY, base_url=acme).status_code == 403
    finally:
        app.extensions["locking"].close()

    hosts = Flask(__name__, host_matching=True, static_host="static.test",
                  instance_path=str(tmp_path / "host_matching"))
    hosts.config.update(TESTING=True, SECRET_KEY="s", LOCKING_TABLE_NAME=table_name)
    hosts.add_url_rule("/docs/<d>", "doc", lambda tenant, d: "", host="<tenant>.test",
                       methods=["GET", "PATCH"])
    Locking(hosts)
    try:
        for base in ("http://acme.test", "http://static.test"):
            assert hosts.test_client().get("/@locks", base_url=base).status_code == 404
    finally:
        hosts.extensions["locking"].close()


# -- the property ------------------------------------------------------------------------

#: Spellings of lockable paths → the key ``<path>/@lock`` gives them (no namespace).
PATHS = {
    "/docs/1": "/docs/1",
    "/docs/2": "/docs/2",
    "/docs/1/parts/x": "/docs/1/parts/x",
    "/n/1": "/n/1",
    "/n/07": "/n/7",
    "/docs/3/parts/07": "/docs/3/parts/07",
}
PREFIXES = [None, "/", "/docs", "/docs/1", "/n", "/n/07", "/nothing"]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    taken=st.sets(st.tuples(st.sampled_from(sorted(MOUNTS)), st.sampled_from(sorted(PATHS)))),
    prefix=st.sampled_from(PREFIXES),
    asked=st.lists(
        st.tuples(st.sampled_from(sorted(MOUNTS)), st.sampled_from(sorted(PATHS)), st.booleans()),
        max_size=6,
    ),
)
def test_every_tenant_lists_releases_and_streams_its_own(
    make_app: AppFactory,
    taken: set[tuple[str, str]],
    prefix: str | None,
    asked: list[tuple[str, str, bool]],
) -> None:
    """Locks taken in random mounts of one app on one store: each mount's listing (under
    any prefix), bulk release and event stream concern exactly its own namespace."""
    app = tenants_app(make_app)
    client = app.test_client()
    held: set[str] = set()
    for mount, path in sorted(taken):
        key = MOUNTS[mount] + PATHS[path]
        response = client.post(f"{path}/@lock", headers=ALICE, base_url=HOST + mount)
        assert response.status_code == 200 and response.json["resource"] == key
        held.add(key)
    events = {space: len({k for k in held if split_namespace(k)[0] == space})
              for space in MOUNTS.values()}

    def own(mount: str, under: str | None = None) -> list[str]:
        space = MOUNTS[mount]
        root = space + (PATHS.get(under, under) if under else "/")
        return sorted((k for k in held if is_within(k, root)), key=lambda k: k.encode())

    query = f"prefix={prefix}" if prefix else ""
    for mount in MOUNTS:
        assert listed(client, mount, query) == own(mount, prefix)
    # Each mount names resources by its own paths, its own keys, and others' keys.
    for mount, path, as_key in asked:
        space = MOUNTS[mount]
        others = [k for k in held if split_namespace(k)[0] not in ("", space)]
        names = [space + path if as_key else path, *others]
        answer = release(client, mount, names)
        key = space + PATHS[path]
        assert answer["released"] == ([key] if key in held else [])
        assert answer["not_locked"] == ([] if key in held else [key])
        assert sorted(r["resource"] for r in answer["refused"]) == sorted(names[1:])
        assert {r["status"] for r in answer["refused"]} <= {400}
        if key in held:
            held.discard(key)
            events[space] += 1
    for mount in MOUNTS:
        assert listed(client, mount) == own(mount)
    # The streams, replayed from the start: a last lock in each mount ends each one's.
    for mount in MOUNTS:
        last = client.post("/docs/end/@lock", headers=ALICE, base_url=HOST + mount)
        assert last.status_code == 200
    for mount, space in MOUNTS.items():
        seen = streamed(client, mount, space + "/docs/end", most=events[space] + 1)
        assert seen[-1:] == [space + "/docs/end"] and len(seen) == events[space] + 1
        assert all(split_namespace(resource)[0] == space for resource in seen)
    app.extensions["locking"].close()
