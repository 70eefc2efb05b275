"""Lock events across processes: two gunicorn gthread servers on one store (SQLite file,
PostgreSQL, MariaDB). A change made through one reaches a stream held by the other within a
second (the latency is measured and printed, only loosely bounded here), nothing is lost
when a listener reconnects with Last-Event-ID, a listener the authorizer refuses sees
nothing, and each expiry is one event even with both servers watching."""

from __future__ import annotations

import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import backend_url, drop_tables
from helpers.sse import HttpStream
from test_gunicorn import call, free_port

HERE = Path(__file__).parent
ROUNDS = 20
#: A generous bound: the promise is one second; a loaded CI machine gets slack.
BOUND = 5.0


def start_server(url: str, table: str, log_path: Path) -> tuple[subprocess.Popen[bytes], int, Any]:
    port = free_port()
    env = {**os.environ, "LOCKING_TEST_APP_DB": url, "LOCKING_TEST_APP_TABLE": table}
    log = open(log_path, "w")  # noqa: SIM115 - open for the server's life
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            "1",
            "-k",
            "gthread",
            "--threads",
            "16",
            "-b",
            f"127.0.0.1:{port}",
            "--chdir",
            str(HERE),
            "--timeout",
            "60",
            "helpers.events_app:create_app()",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    for _ in range(300):
        if process.poll() is not None:
            break
        try:
            if call(port, "GET", "/docs/ready")[0] == 200:
                return process, port, log
        except OSError:
            time.sleep(0.1)
    process.kill()
    log.close()
    pytest.fail(f"gunicorn did not come up: {log_path.read_text()}")


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def servers(
    request: pytest.FixtureRequest, tmp_path: Path, table_name: str
) -> Iterator[tuple[int, int, str]]:
    backend = str(request.param)
    url = backend_url(backend, tmp_path)
    started = []
    try:
        for name in ("a", "b"):
            started.append(start_server(url, table_name, tmp_path / f"gunicorn-{name}.log"))
        yield started[0][1], started[1][1], backend
    finally:
        for process, _port, log in started:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()
        if backend != "sqlite":
            drop_tables(url, table_name)


class Listener:
    """Reads a stream on a thread of its own, stamping each event's arrival."""

    def __init__(self, port: int, path: str, headers: dict[str, str] | None = None) -> None:
        self.stream = HttpStream(port, path, headers)
        self.events: list[tuple[float, Any]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        if self.stream.status == 200:
            self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                got = self.stream.read(1, timeout=1.0)
            except OSError:
                return
            self.events.extend(got)

    def wait_for(self, count: int, timeout: float = 15.0) -> list[tuple[float, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.events)

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=5)
        self.stream.close()


def figures(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p90 = ordered[max(0, int(len(ordered) * 0.9) - 1)]
    return (
        f"n={len(ordered)} min={ordered[0] * 1000:.0f}ms "
        f"p50={statistics.median(ordered) * 1000:.0f}ms "
        f"p90={p90 * 1000:.0f}ms max={ordered[-1] * 1000:.0f}ms"
    )


def test_events_cross_processes_in_order_and_survive_a_reconnect(
    servers: tuple[int, int, str],
) -> None:
    port_a, port_b, backend = servers
    listener = Listener(port_b, "/@locks/events?prefix=/docs", {"X-User": "bob"})
    single = Listener(port_b, "/docs/lat0/@lock/events", {"X-User": "bob"})
    spy = Listener(port_b, "/@locks/events", {"X-User": "mallory"})
    refused = HttpStream(port_b, "/docs/lat0/@lock/events", {"X-User": "mallory"})
    assert (listener.stream.status, single.stream.status, spy.stream.status) == (200, 200, 200)
    assert refused.status == 403
    refused.close()
    time.sleep(0.5)  # the streams are open on B before A changes anything

    sent: list[tuple[float, str, str]] = []
    for i in range(ROUNDS):
        resource = f"/docs/lat{i % 4}"
        # Alternate acquire and release, each through server A.
        method, name = ("POST", "acquired") if (i // 4) % 2 == 0 else ("DELETE", "released")
        started = time.monotonic()
        status = call(port_a, method, f"{resource}/@lock", "alice")[0]
        assert status == 200
        sent.append((started, name, resource))
        time.sleep(0.05)
    got = listener.wait_for(ROUNDS)
    assert [(e.event, e.data["resource"]) for _t, e in got] == [(n, r) for _s, n, r in sent]
    ids = [int(e.id) for _t, e in got]
    assert ids == list(range(ids[0], ids[0] + ROUNDS))
    latencies = [
        arrived - started for (arrived, _e), (started, _n, _r) in zip(got, sent, strict=True)
    ]
    assert max(latencies) < BOUND, figures(latencies)
    assert [e.data["resource"] for _t, e in single.wait_for(5)] == ["/docs/lat0"] * 5
    assert "token" not in listener.stream.raw

    # Reconnect: B's listener goes away; A keeps changing locks; a new stream on B that
    # presents the last id it saw gets exactly the missed events, then live ones.
    listener.close()
    last = got[-1][1].id
    for method, resource, user in [
        ("POST", "/docs/re0", "alice"),
        ("POST", "/docs/re1", "alice"),
        ("DELETE", "/docs/re0", "alice"),
        ("DELETE", "/docs/re1", "alice"),
        ("POST", "/docs/re0", "alice"),
        ("POST", "/docs/re1", "carol"),
    ]:
        assert call(port_a, method, f"{resource}/@lock", user)[0] == 200
    again = Listener(
        port_b, "/@locks/events?prefix=/docs", {"X-User": "bob", "Last-Event-ID": last}
    )
    again.wait_for(6)
    call(port_a, "DELETE", "/docs/re0/@lock", "alice")  # and then a live one
    replay = again.wait_for(7)
    again.close()
    names = [(e.event, e.data["resource"]) for _t, e in replay]
    assert names == [
        ("acquired", "/docs/re0"),
        ("acquired", "/docs/re1"),
        ("released", "/docs/re0"),
        ("released", "/docs/re1"),
        ("acquired", "/docs/re0"),
        ("acquired", "/docs/re1"),
        ("released", "/docs/re0"),
    ]
    assert [int(e.id) for _t, e in replay] == list(range(int(last) + 1, int(last) + 8))
    assert replay[5][1].data["lock"]["creator"] == "carol"

    # The listener the authorizer refuses saw nothing at all.
    spy.close()
    single.close()
    assert spy.events == [] and "id:" not in spy.stream.raw and "data:" not in spy.stream.raw
    print(
        f"\nFIGURES events {backend}: cross-process latency (request sent on A -> event "
        f"read on B) {figures(latencies)}"
    )


def test_an_expiry_is_one_event_seen_by_both_servers(servers: tuple[int, int, str]) -> None:
    port_a, port_b, backend = servers
    on_a = Listener(port_a, "/docs/exp/@lock/events")
    on_b = Listener(port_b, "/@locks/events?prefix=/docs/exp")
    time.sleep(0.5)
    conn = http.client.HTTPConnection("127.0.0.1", port_a, timeout=30)
    conn.request(
        "POST",
        "/docs/exp/@lock",
        body=json.dumps({"timeout": 1}),
        headers={"X-User": "alice", "Content-Type": "application/json"},
    )
    response = conn.getresponse()
    body = json.loads(response.read())
    conn.close()
    assert response.status == 200 and body["timeout"] == 1
    granted = time.monotonic()
    a_events = on_a.wait_for(2, timeout=15)
    b_events = on_b.wait_for(2, timeout=15)
    time.sleep(2.0)  # would a second process record the same expiry again?
    on_a.close()
    on_b.close()
    for events in (on_a.events, on_b.events):
        assert [e.event for _t, e in events] == ["acquired", "expired"], events
    assert a_events[1][1].id == b_events[1][1].id
    after = min(a_events[1][0], b_events[1][0]) - granted
    print(
        f"\nFIGURES events {backend}: expiry of a 1 s lock seen {after * 1000:.0f}ms after "
        f"the grant (expiry look every 1 s), one event for both servers"
    )


def test_postgresql_listeners_are_woken_by_notify(
    make_app: Any, tmp_path: Path, table_name: str
) -> None:
    """With polling and the expiry look both 30 s apart, an event made by another process
    can only arrive within the bound through LISTEN/NOTIFY."""
    from helpers.sse import TestStream

    url = backend_url("postgresql", tmp_path)
    app = make_app(
        database_url=url,
        LOCKING_EVENTS_POLL_INTERVAL=30,
        LOCKING_EVENTS_EXPIRY_INTERVAL=30,
        LOCKING_EVENTS_HEARTBEAT=0.2,
    )
    client = app.test_client()
    stream = TestStream(client, "/docs/n/@lock/events")
    time.sleep(0.5)
    script = (
        "from helpers.app import create_app\n"
        "app = create_app()\n"
        "with app.app_context():\n"
        "    app.extensions['locking'].extension.acquire('/docs/n', 'other-process')\n"
        "    app.extensions['locking'].close()\n"
    )
    env = {**os.environ, "LOCKING_TEST_APP_DB": url, "LOCKING_TEST_APP_TABLE": table_name}
    subprocess.run([sys.executable, "-c", script], cwd=HERE, env=env, check=True, timeout=60)
    done = time.monotonic()
    events = stream.read(1, timeout=BOUND)
    waited = time.monotonic() - done
    stream.close()
    assert [(e.event, e.data["lock"]["creator"]) for e in events] == [("acquired", "other-process")]
    print(
        f"\nFIGURES events postgresql: NOTIFY woke the listener {waited * 1000:.0f}ms after "
        "the other process exited (poll interval 30 s)"
    )
