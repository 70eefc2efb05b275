"""A Python client for flask-locking servers (extra ``[client]``, built on httpx).

::

    from flask_locking.client import LockingClient

    headers = {"Authorization": "Bearer ..."}
    with LockingClient("https://api.example.com", headers=headers) as client:
        with client.lock("/docs/1") as lock:          # POST /docs/1/@lock
            doc = lock.get().json()
            lock.patch(json={"title": "New"})         # sends Lock-Token
        # released on exit (DELETE /docs/1/@lock)

While the ``with`` block runs, a background thread refreshes the lock at a third of its
timeout. When the lock is lost (it expired, or someone stole it), the next write through
``lock`` raises :class:`LockLost` instead of sending a request the guard would refuse;
a write the server refuses as stale raises it too.

Releasing keeps the token until the server confirms (a 2xx, or the lock is gone) and
retries a 503 after its ``Retry-After``: see :meth:`HeldLock.release`.

Job and reference-data locks have no refresh endpoint: pass their lock URL and refresh by
locking again (the owner locking again refreshes)::

    client.lock("/api/v1.0/companies/1/jobs/2",
                lock_url="/api/v1.0/companies/1/jobs/2/lock/", refresh_method="POST")
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any

import httpx

from .client_events import ServerEvent, parse_events
from .dialects.base import REFUSAL_HEADER

log = logging.getLogger("flask_locking.client")

#: Methods that are never guarded: sent without a check for a lost lock.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class LockingClientError(Exception):
    """Root of the client's errors. :attr:`response` is the server's answer, if any."""

    def __init__(self, message: str, response: httpx.Response | None = None) -> None:
        super().__init__(message)
        self.response = response


class LockConflictError(LockingClientError):
    """Someone else holds the lock. :attr:`holder` is their lock JSON (no token), if sent."""

    def __init__(self, message: str, response: httpx.Response, holder: dict[str, Any] | None):
        super().__init__(message, response)
        self.holder = holder


class LockLost(LockingClientError):
    """The lock is no longer ours: it expired, was released, or was stolen."""


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _refused_as_stale(response: httpx.Response) -> bool:
    """True when the guard refused a write because the token is no longer the live lock's:
    it says so in its ``Lock-Refused: stale`` header, whatever the dialect's status (the
    reference dialect answers 409 to locked and stale alike). Without the header (a proxy
    dropped it), the status alone tells: 412."""
    refusal = response.headers.get(REFUSAL_HEADER)
    if refusal is not None:
        return str(refusal).strip().lower() == "stale"
    return response.status_code == 412


def _token_of(response: httpx.Response) -> str | None:
    """The lock token a lock response shows (its body's ``token``, else its ``Lock-Token``
    header): ``None`` when the lock it shows is not the caller's, or there is none."""
    body = _json(response)
    token = body.get("token") if isinstance(body, dict) else None
    token = token or response.headers.get("Lock-Token")
    return str(token) if token else None


def _error_message(response: httpx.Response) -> str:
    body = _json(response)
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if body.get("details") or body.get("message"):
            return str(body.get("details") or body.get("message"))
    return f"HTTP {response.status_code}"


def _retry_delay(response: httpx.Response, attempt: int, max_wait: float) -> float:
    """Seconds to wait before retrying after ``response`` (a 503): its ``Retry-After`` in
    seconds or as an HTTP date, else 0.5 s doubling per attempt; at most ``max_wait``."""
    header = response.headers.get("Retry-After", "").strip()
    delay: float = 0.5 * 2**attempt
    if header.isdigit():
        delay = float(header)
    elif header:
        with contextlib.suppress(TypeError, ValueError, IndexError, OverflowError):
            delay = float(parsedate_to_datetime(header).timestamp() - time.time())
    return min(max(delay, 0.0), max_wait)


class LockingClient:
    """An httpx client that knows how to take locks.

    :param base_url: the server's root URL.
    :param client: an existing :class:`httpx.Client` to use instead (its base URL, auth and
        transport are kept; it is not closed by :meth:`close`).
    :param httpx_options: passed to :class:`httpx.Client` when ``client`` is not given
        (``headers``, ``auth``, ``transport``, ``timeout``, ...).
    """

    def __init__(
        self, base_url: str = "", *, client: httpx.Client | None = None, **httpx_options: Any
    ) -> None:
        self._owns_http = client is None
        if client is None:
            client = httpx.Client(base_url=base_url, **httpx_options)
        self.http = client

    def lock(
        self,
        url: str,
        *,
        timeout: int | None = None,
        stealable: bool | None = None,
        lock_url: str | None = None,
        refresh_method: str = "PATCH",
        refresh_interval: float | None = None,
        auto_refresh: bool = True,
    ) -> HeldLock:
        """A lock on ``url``, taken when the ``with`` block starts (or by
        :meth:`HeldLock.acquire`).

        :param timeout: seconds; the server's default when ``None``.
        :param stealable: whether others may force-release it; server default when ``None``.
        :param lock_url: the lock endpoint (default ``<url>/@lock``, the content dialect).
        :param refresh_method: ``PATCH`` (content locks) or ``POST`` (lock again).
        :param refresh_interval: seconds between refreshes (default: a third of the lock's
            timeout as the server reports it).
        :param auto_refresh: set ``False`` to refresh only by calling :meth:`HeldLock.refresh`.
        """
        return HeldLock(
            self,
            url,
            lock_url=lock_url if lock_url is not None else url.rstrip("/") + "/@lock",
            timeout=timeout,
            stealable=stealable,
            refresh_method=refresh_method.upper(),
            refresh_interval=refresh_interval,
            auto_refresh=auto_refresh,
        )

    def list_locks(
        self, *, prefix: str | None = None, owner: str | None = None,
        dialect: str | None = None, page_size: int | None = None, locks_url: str = "/@locks",
    ) -> list[dict[str, Any]]:
        """Every live lock the server lets this caller view (``GET /@locks``, following
        ``next`` to the last page), each as the lock JSON without a token. ``owner="me"``:
        this caller's locks."""
        params = {
            key: value for key, value in
            {"prefix": prefix, "owner": owner, "dialect": dialect, "limit": page_size}.items()
            if value is not None
        }
        items: list[dict[str, Any]] = []
        for _ in range(100_000):  # bounded: a page is never empty while "next" is set twice
            response = self.http.get(locks_url, params=params)
            if response.status_code != 200:
                raise LockingClientError(_error_message(response), response)
            body = _json(response)
            items.extend(body["items"])
            if not body.get("next"):
                break
            params["cursor"] = body["next"]
        return items

    def release_locks(
        self, resources: list[str], *, force: bool = False, locks_url: str = "/@locks",
    ) -> dict[str, Any]:
        """Release several locks (``DELETE /@locks``); return ``{"released": [...],
        "not_locked": [...], "refused": [{"resource", "status", "message"}]}``. ``force``
        steals others' locks where the server's authorizer allows it."""
        response = self.http.request(
            "DELETE", locks_url, json={"resources": list(resources), "force": force}
        )
        if response.status_code != 200:
            raise LockingClientError(_error_message(response), response)
        return _json(response)  # type: ignore[no-any-return]

    def events(
        self, url: str | None = None, *, prefix: str | None = None, owner: str | None = None,
        last_event_id: str | None = None, locks_url: str = "/@locks", reconnect: bool = True,
        retry: float = 2.0,
    ) -> Iterator[ServerEvent]:
        """Lock events as they happen: of ``url``'s lock (``<url>/@lock/events``), or of
        every lock at or below ``prefix`` (``/@locks/events``). A dropped connection is
        resumed with ``Last-Event-ID`` (so no event is lost) unless ``reconnect`` is False.
        Stop by breaking out of the loop."""
        target = url.rstrip("/") + "/@lock/events" if url is not None else locks_url + "/events"
        params = {k: v for k, v in {"prefix": prefix, "owner": owner}.items() if v is not None}
        while True:
            headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
            try:
                with self.http.stream(
                    "GET", target, params=params, headers=headers,
                    timeout=httpx.Timeout(10.0, read=None),
                ) as response:
                    if response.status_code != 200:
                        response.read()
                        raise LockingClientError(_error_message(response), response)
                    for event in parse_events(response.iter_lines()):
                        if event.id is not None:
                            last_event_id = event.id
                        yield event
            except httpx.TransportError:
                if not reconnect:
                    raise
            if not reconnect:
                return
            time.sleep(retry)

    def close(self) -> None:
        """Close the underlying httpx client (when this object created it)."""
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> LockingClient:  # noqa: PYI034 - Python 3.10 has no typing.Self
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class HeldLock:
    """One lock held through a :class:`LockingClient`; use it as a context manager."""

    def __init__(
        self,
        client: LockingClient,
        url: str,
        *,
        lock_url: str,
        timeout: int | None,
        stealable: bool | None,
        refresh_method: str,
        refresh_interval: float | None,
        auto_refresh: bool,
    ) -> None:
        self.client = client
        self.url = url
        self.lock_url = lock_url
        self.timeout = timeout
        self.stealable = stealable
        self.refresh_method = refresh_method
        self.refresh_interval = refresh_interval
        self.auto_refresh = auto_refresh
        #: The token, once acquired.
        self.token: str | None = None
        #: The latest lock JSON the server sent.
        self.info: dict[str, Any] = {}
        #: Why the lock was lost, once it is (``None`` while it is held).
        self.lost_reason: str | None = None
        self._last_refresh = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._state_lock = threading.Lock()

    # -- state ---------------------------------------------------------------------------

    @property
    def held(self) -> bool:
        """True while the lock is believed to be ours (acquired, not lost, not released)."""
        return self.token is not None and self.lost_reason is None

    @property
    def version(self) -> int | None:
        """The lock's fencing ``version``."""
        value = self.info.get("version")
        return int(value) if value is not None else None

    def _lose(self, reason: str) -> None:
        with self._state_lock:
            if self.lost_reason is None:
                self.lost_reason = reason
                log.warning("flask-locking client: lost the lock on %s: %s", self.url, reason)
        self._stop.set()

    def _check(self) -> None:
        if self.token is None:
            raise LockingClientError(f"The lock on {self.url} is not held: acquire it first.")
        if self.lost_reason is not None:
            raise LockLost(f"The lock on {self.url} was lost: {self.lost_reason}")
        expires = self._last_refresh + float(self.info.get("timeout") or 0)
        if self.info.get("timeout") and time.monotonic() >= expires:
            self._lose("it expired before it could be refreshed")
            raise LockLost(f"The lock on {self.url} was lost: it expired.")

    # -- lock operations -----------------------------------------------------------------

    def _body(self, *, with_stealable: bool) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if self.timeout is not None:
            body["timeout"] = self.timeout
        if with_stealable and self.stealable is not None:
            body["stealable"] = self.stealable
        return body

    def acquire(self) -> HeldLock:
        """Take the lock; raise :class:`LockConflictError` when someone else holds it."""
        started = time.monotonic()
        response = self.client.http.post(self.lock_url, json=self._body(with_stealable=True))
        if response.status_code == 409:
            body = _json(response)
            holder = body.get("lock") if isinstance(body, dict) else None
            raise LockConflictError(_error_message(response), response, holder)
        if response.status_code not in (200, 201):
            raise LockingClientError(
                f"Could not lock {self.url}: {_error_message(response)}", response
            )
        body = _json(response)
        if _token_of(response) is None and isinstance(body, dict) and body.get("locked"):
            # Plone compatibility answers 200 with the holder's lock (no token), not 409.
            raise LockConflictError(f"{self.url} is locked by someone else.", response, body)
        self._take(response, started)
        if self.token is None:
            raise LockingClientError(f"The server sent no token for {self.url}.", response)
        self.lost_reason = None
        if self.auto_refresh:
            self._start_refreshing()
        return self

    def _take(self, response: httpx.Response, started: float) -> None:
        body = _json(response)
        if isinstance(body, dict):
            self.info = body
        token = _token_of(response)
        if token:
            self.token = token
        self._last_refresh = started

    def refresh(self) -> None:
        """Restart the lock's timeout now; raise :class:`LockLost` if it is gone."""
        self._check()
        started = time.monotonic()
        if self.refresh_method == "POST":
            response = self.client.http.post(
                self.lock_url, json=self._body(with_stealable=True),
                headers={"Lock-Token": self.token or ""},
            )
        else:
            response = self.client.http.request(
                self.refresh_method, self.lock_url, json=self._body(with_stealable=False),
                headers={"Lock-Token": self.token or ""},
            )
        if response.status_code in (200, 201):
            if _token_of(response) is None:
                # The lock as it stands, and not ours: Plone compatibility answers 200 with
                # the unlocked body or another's lock (token withheld) where the strict
                # contract answers 409.
                reason = "refresh answered with a lock that is not ours (released or taken over)"
                self._lose(reason)
                raise LockLost(f"The lock on {self.url} was lost: {reason}.", response)
            previous = self.token
            self._take(response, started)
            if previous is not None and self.token != previous:
                # Locking again after an expiry would be a new grant with a new token: the
                # old lock was lost in between, whatever we hold now.
                self._lose("it expired and was granted again with a new token")
                raise LockLost(f"The lock on {self.url} was lost in between refreshes.")
            return
        if response.status_code in (404, 409, 412, 423):
            self._lose(f"refresh refused: {_error_message(response)}")
            raise LockLost(f"The lock on {self.url} was lost: {_error_message(response)}", response)
        raise LockingClientError(
            f"Could not refresh the lock on {self.url}: {_error_message(response)}", response
        )

    def release(self, *, attempts: int = 4, max_wait: float = 30.0) -> None:
        """Release the lock, keeping the token until the server confirms.

        Done when the server answers 2xx, or says the lock is no longer ours to release
        (404: no lock; 409 or 412: it expired and someone else holds it now, or it was
        taken over), which marks it lost. A 503 (the lock store is unavailable) is retried,
        up to ``attempts`` requests in all, after the ``Retry-After`` the server sends (at
        most ``max_wait`` seconds) or an exponential backoff. When no confirmation comes
        (503 after the last attempt, another status, or a network error), this raises
        :class:`LockingClientError` (or the :class:`httpx.HTTPError`) and the token is
        kept: :attr:`held` stays true, and calling :meth:`release` again retries. Nothing
        is sent when the lock is already known to be lost or was never taken.
        """
        self._stop_refreshing()
        for attempt in range(max(1, attempts)):
            if self.token is None or self.lost_reason is not None:
                return
            response = self.client.http.request(
                "DELETE", self.lock_url, headers={"Lock-Token": self.token}
            )
            if 200 <= response.status_code < 300:
                self.token = None
                return
            if response.status_code in (404, 409, 412):
                # It ended meanwhile (expired, or stolen before a refresh noticed): not ours.
                self._lose(f"it was gone at release: {_error_message(response)}")
                self.token = None
                return
            if response.status_code != 503 or attempt + 1 >= attempts:
                raise LockingClientError(
                    f"Could not release the lock on {self.url}: {_error_message(response)}",
                    response,
                )
            time.sleep(_retry_delay(response, attempt, max_wait))

    # -- background refresh --------------------------------------------------------------

    def _interval(self) -> float:
        if self.refresh_interval is not None:
            return self.refresh_interval
        return max(0.05, float(self.info.get("timeout") or 60) / 3)

    def _start_refreshing(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._refresh_loop, name=f"flask-locking refresh {self.url}", daemon=True
        )
        self._thread.start()

    def _stop_refreshing(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._thread = None

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self._interval()):
            try:
                self.refresh()
            except LockLost:
                return
            except (LockingClientError, httpx.HTTPError) as error:
                # A transient failure: try again at the next tick; _check() declares the
                # lock lost once its timeout has passed without a successful refresh.
                log.warning("flask-locking client: refreshing %s failed: %s", self.url, error)

    # -- requests carrying the token -------------------------------------------------------

    def request(self, method: str, url: str | None = None, **kwargs: Any) -> httpx.Response:
        """Send a request with the lock's token (default URL: the locked resource).

        A write (anything but GET/HEAD/OPTIONS) raises :class:`LockLost` when the lock is
        lost, before sending; one the guard refuses as stale (its ``Lock-Refused: stale``
        header, whatever the status) raises it too.
        """
        method = method.upper()
        if method not in SAFE_METHODS:
            self._check()
        headers = dict(kwargs.pop("headers", None) or {})
        if self.token is not None:
            headers["Lock-Token"] = self.token
        response = self.client.http.request(
            method, url if url is not None else self.url, headers=headers, **kwargs
        )
        if method not in SAFE_METHODS and _refused_as_stale(response):
            self._lose(f"the server refused the token: {_error_message(response)}")
            raise LockLost(f"The lock on {self.url} was lost: {_error_message(response)}", response)
        return response

    def get(self, url: str | None = None, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def put(self, url: str | None = None, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str | None = None, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", url, **kwargs)

    def post(self, url: str | None = None, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def delete(self, url: str | None = None, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)

    # -- context manager ---------------------------------------------------------------

    def __enter__(self) -> HeldLock:  # noqa: PYI034
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self.release()
        except (LockingClientError, httpx.HTTPError):
            if exc is None:
                raise
            log.warning("flask-locking client: could not release %s", self.url, exc_info=True)
