"""A real server: the app under gunicorn with several sync worker processes, on PostgreSQL,
raced over HTTP. Exactly one client wins each round; every other one gets a 409; no 5xx."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import backend_url, drop_tables
from helpers import racers

WORKERS = 4
CLIENTS = 16
ROUNDS = 20
HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def call(
    port: int,
    method: str,
    path: str,
    user: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        sent = dict(headers or {})
        if user is not None:
            sent["X-User"] = user
        conn.request(method, path, headers=sent)
        response = conn.getresponse()
        body = response.read()
        return response.status, dict(response.getheaders()), json.loads(body) if body else None
    finally:
        conn.close()


@pytest.fixture
def server(tmp_path: Any, table_name: str) -> Iterator[int]:
    url = backend_url("postgresql", tmp_path)
    store = racers.open_store(url, table_name)
    store.create_schema()
    store.dispose()
    port = free_port()
    env = {**os.environ, "LOCKING_TEST_APP_DB": url, "LOCKING_TEST_APP_TABLE": table_name}
    log = open(tmp_path / "gunicorn.log", "w")  # noqa: SIM115 - open for the server's life
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            str(WORKERS),
            "-k",
            "sync",
            "-b",
            f"127.0.0.1:{port}",
            "--chdir",
            str(HERE),
            "--timeout",
            "60",
            "helpers.app:create_app()",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(300):
            if process.poll() is not None:
                break
            try:
                if call(port, "GET", "/docs/ready")[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("gunicorn did not come up")
        assert process.poll() is None, (tmp_path / "gunicorn.log").read_text()
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        drop_tables(url, table_name)


def test_gunicorn_workers_grant_one_winner_per_round(server: int) -> None:
    barrier = threading.Barrier(CLIENTS)
    results: list[tuple[int, str, int, str, Any]] = []
    guard = threading.Lock()

    def client(i: int) -> None:
        user = f"user{i}"
        for r in range(ROUNDS):
            path = f"/docs/round{r}" if r % 2 == 0 else "/docs/shared"
            barrier.wait(timeout=60)
            try:
                status, headers, body = call(server, "POST", f"{path}/@lock", user)
            except OSError as error:
                status, headers, body = 0, {}, repr(error)
            barrier.wait(timeout=60)
            if status == 200 and r % 2 == 1:
                # the winner releases, so the next odd round races for a released lock
                gone = call(server, "DELETE", f"{path}/@lock", user)[0]
                if gone != 200:
                    status = -gone
            with guard:
                results.append((r, user, status, headers.get("X-Worker-Pid", ""), body))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == ROUNDS * CLIENTS
    for r in range(ROUNDS):
        counts = Counter(status for rr, _u, status, _p, _b in results if rr == r)
        assert counts == Counter({200: 1, 409: CLIENTS - 1}), (r, counts)
    winners = {rr: body for rr, _u, status, _p, body in results if status == 200}
    assert all(body["token"] and body["locked"] for body in winners.values())
    assert [winners[r]["version"] for r in range(1, ROUNDS, 2)] == list(range(1, ROUNDS // 2 + 1))
    conflicts = [body for _r, _u, status, _p, body in results if status == 409]
    assert all(
        body["error"]["type"] == "Conflict" and "token" not in body["lock"] for body in conflicts
    )
    pids = {pid for _r, _u, _s, pid, _b in results}
    assert len(pids) >= 2, "the race never crossed worker processes"
    print(
        f"\nFIGURES gunicorn postgresql: workers={WORKERS} clients={CLIENTS} rounds={ROUNDS} "
        f"winners={len(winners)} conflicts={len(conflicts)} 5xx=0 worker_pids_seen={len(pids)}"
    )
