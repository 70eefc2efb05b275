"""``LOCKING_DATABASE_URI = "sqlite://"``: one in-memory database for the whole process.

SQLAlchemy's default for an in-memory SQLite URL is one connection, so one database, per
thread; a lock taken in one thread was then invisible to the others (which had no table at
all and answered 503). Requests are served by many threads, so every thread must see one
database.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from conftest import AppFactory

THREADS = 8


@pytest.mark.parametrize("uri", ["sqlite://", "sqlite:///:memory:"])
def test_every_thread_sees_one_database(make_app: AppFactory, uri: str) -> None:
    app = make_app(database_url=uri)
    barrier = threading.Barrier(THREADS)
    results: list[tuple[str, int, Any]] = []
    guard = threading.Lock()

    def contender(i: int) -> None:
        client = app.test_client()
        barrier.wait(timeout=30)
        # every thread races for one shared resource, and takes one of its own
        for path in ("/docs/shared", f"/docs/own-{i}"):
            response = client.post(f"{path}/@lock", headers={"X-User": f"user{i}"})
            with guard:
                results.append((path, response.status_code, response.get_json()))

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    shared = [r for r in results if r[0] == "/docs/shared"]
    assert sorted(status for _, status, _ in shared) == [200] + [409] * (THREADS - 1), shared
    assert all(status == 200 for path, status, _ in results if path != "/docs/shared")
    # and a thread that took no part sees every lock
    seen: dict[str, Any] = {}

    def reader() -> None:
        client = app.test_client()
        seen.update(
            {f"own-{i}": client.get(f"/docs/own-{i}/@lock").get_json() for i in range(THREADS)}
        )

    thread = threading.Thread(target=reader)
    thread.start()
    thread.join(30)
    assert all(body["locked"] for body in seen.values()), seen
    assert len(app.extensions["locking"].engine.locks()) == THREADS + 1
