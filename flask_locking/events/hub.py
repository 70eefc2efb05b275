"""The per-process event hub: one thread per lock store reads new events for every stream.

However many streams a process holds, it asks the database one small question per poll
interval ("events after id n?", a primary-key range) — or, on PostgreSQL, waits on
``LISTEN`` and asks only when woken. The same thread notices expiries on the database clock
(a conditional wipe, so exactly one process records each ``expired`` event) and prunes the
log. It runs only while a stream is open.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from collections.abc import Callable

from ..errors import TooManyStreams
from ..store.events import EventLog
from .model import LockEvent
from .settings import EventsSettings

log = logging.getLogger("flask_locking")

#: Events kept in memory for streams that fall a little behind.
BUFFER = 2048
#: Rows read per query when catching up.
BATCH = 500
#: Seconds between two prunes of the log by a hub.
PRUNE_INTERVAL = 60.0


class EventHub:
    """Delivers the events of one :class:`EventLog` to the streams of this process."""

    def __init__(
        self, event_log: EventLog, settings: EventsSettings, *, expire: Callable[[], object],
    ) -> None:
        self.log = event_log
        self.settings = settings
        self._expire = expire
        self._cond = threading.Condition()
        self._buffer: collections.deque[LockEvent] = collections.deque(maxlen=BUFFER)
        self._last = 0  # the highest id read from the log (every id up to it is buffered or gone)
        self._streams = 0
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- streams -----------------------------------------------------------------------

    @property
    def open_streams(self) -> int:
        """Streams currently open in this process."""
        return self._streams

    def open(self) -> None:
        """Count a new stream (raise :class:`TooManyStreams` past the limit); start the
        thread if it is not running."""
        with self._cond:
            if self._streams >= self.settings.max_streams:
                raise TooManyStreams()
            self._streams += 1
            self._stopping = False
            if self._thread is None or not self._thread.is_alive():
                self._last = self.log.head()
                self._buffer.clear()
                self._thread = threading.Thread(
                    target=self._run, name="flask-locking-events", daemon=True
                )
                self._thread.start()

    def close(self) -> None:
        """A stream ended (the thread stops with the last one)."""
        with self._cond:
            self._streams = max(0, self._streams - 1)
            self._cond.notify_all()

    def take(self, cursor: int, timeout: float) -> list[LockEvent] | None:
        """Events after id ``cursor``, waiting up to ``timeout`` seconds for the first.

        ``[]``: nothing new yet. ``None``: the buffer no longer reaches back to ``cursor``
        (a stream that fell behind, or replays from an old id): read the log instead.
        """
        with self._cond:
            if self._last <= cursor:
                self._cond.wait_for(lambda: self._last > cursor, timeout)
            if self._last <= cursor:
                return []
            if not self._buffer or self._buffer[0].id > cursor + 1:
                return None
            # Ids are consecutive, so the first wanted event sits at a known index.
            return list(itertools.islice(self._buffer, cursor + 1 - self._buffer[0].id, None))

    @property
    def last_id(self) -> int:
        """The highest event id this hub has read."""
        return self._last

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread and wait for it (app teardown: it must not outlive the store)."""
        with self._cond:
            self._stopping = True
            thread = self._thread
            self._cond.notify_all()
        self.log.appended.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # -- the thread --------------------------------------------------------------------

    def _run(self) -> None:
        listener = self.log.listener()
        next_expiry = next_prune = time.monotonic()
        try:
            while True:
                with self._cond:
                    if self._streams == 0 or self._stopping:
                        self._thread = None
                        return
                try:
                    self._read_new()
                    now = time.monotonic()
                    if now >= next_expiry:
                        next_expiry = now + self.settings.expiry_interval
                        self._expire()  # records expired events; read on the next turn
                    if now >= next_prune:
                        next_prune = now + PRUNE_INTERVAL
                        self.log.prune()
                    until_expiry = max(0.0, next_expiry - time.monotonic())
                    wait = min(self.settings.poll_interval, until_expiry)
                    listener.wait(wait)
                except Exception:
                    log.exception("flask-locking: the event hub could not read the event log")
                    time.sleep(1.0)
        finally:
            listener.close()

    def _read_new(self) -> None:
        while True:
            rows = self.log.after(self._last, BATCH)
            if not rows:
                return
            events = [LockEvent.from_row(row) for row in rows]
            with self._cond:
                self._buffer.extend(events)
                self._last = events[-1].id
                self._cond.notify_all()
            if len(rows) < BATCH:
                return
