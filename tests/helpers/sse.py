"""Reading Server-Sent Events in tests: from a Flask test response, or over real HTTP."""

from __future__ import annotations

import http.client
import queue
import threading
import time
from typing import Any

from flask.testing import FlaskClient

from flask_locking.client_events import ServerEvent, parse_events


class TestStream:
    """A stream opened with the Flask test client. Its generator runs on a thread of its
    own, as on a threaded server (streams keep their request context, so two streams
    iterated by one thread would pop each other's)."""

    __test__ = False  # not a pytest class

    def __init__(self, client: FlaskClient, url: str, **kwargs: Any) -> None:
        self.raw = ""
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stop = threading.Event()
        opened: queue.Queue[Any] = queue.Queue()

        def run() -> None:
            response = client.get(url, buffered=False, **kwargs)
            opened.put(response)
            try:
                for chunk in response.response:
                    self._queue.put(chunk.decode() if isinstance(chunk, bytes) else chunk)
                    if self._stop.is_set():
                        break
            finally:
                response.close()
                self._queue.put(None)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        self.response = opened.get(timeout=30)
        self.status = self.response.status_code

    def read(self, count: int, timeout: float = 10.0) -> list[ServerEvent]:
        """Up to ``count`` events (not comments), waiting at most ``timeout`` seconds (the
        app's heartbeat must be short, so that a closed stream's thread notices soon)."""
        deadline = time.monotonic() + timeout
        events: list[ServerEvent] = []
        while len(events) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                text = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if text is None:
                break
            self.raw += text
            events.extend(parse_events(text.splitlines()))
        return events

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


class HttpStream:
    """A stream over a real socket to a server on loopback."""

    def __init__(self, port: int, path: str, headers: dict[str, str] | None = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.conn.request("GET", path, headers=headers or {})
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.raw = ""
        self._block: list[str] = []  # the lines of an event not yet complete

    def read(self, count: int, timeout: float = 10.0) -> list[tuple[float, ServerEvent]]:
        """Up to ``count`` events, each with the monotonic instant its last line arrived."""
        deadline = time.monotonic() + timeout
        out: list[tuple[float, ServerEvent]] = []
        block = self._block
        while len(out) < count and time.monotonic() < deadline:
            line = self.response.readline().decode()
            if line == "":
                break  # the server closed the stream
            self.raw += line
            block.append(line)
            if line in ("\n", "\r\n"):
                arrived = time.monotonic()
                out.extend((arrived, event) for event in parse_events(block))
                block.clear()
        return out

    def close(self) -> None:
        self.conn.close()
