"""Unlock on save: release the lock once a guarded write has succeeded.

A client saving its last edit sends the lock's token and asks for the release in the same
request, instead of a second ``DELETE .../@lock`` that could be lost::

    PATCH /docs/1
    Lock-Token: <token>
    Lock-Release: true

The guard verifies the token as usual. After the view has answered, the lock is released
only when the final response status is 2xx and the authorizer lets the caller ``unlock``
the resource (as ``DELETE .../@lock`` would); any other outcome (a 4xx or 5xx from the
view, an exception turned into an error page, a refused ``unlock``) keeps the lock, so a
failed save never loses it. The response says what happened in ``Lock-Released: true`` or
``Lock-Released: false`` (expose it to browsers with CORS if they need it). A request
without a lock verified by the guard for that very request, or without the header, is left
untouched.

On by default (it only acts when a client asks); ``LOCKING_UNLOCK_ON_SAVE = False`` turns
it off. The guard registers :func:`release_after_save` for the one request that asks
(``after_this_request``), so other requests pay nothing for it.
"""

from __future__ import annotations

import logging

from flask import Response, request

from .errors import LockingError
from .identity import current_identity, is_allowed
from .state import locking_state
from .verified import verified_lock

log = logging.getLogger("flask_locking")

#: The request header that asks for the release.
REQUEST_HEADER = "Lock-Release"
#: The response header that reports it.
RESPONSE_HEADER = "Lock-Released"


def wants_release() -> bool:
    """True when the request carries ``Lock-Release: true`` (case-insensitive)."""
    return request.headers.get(REQUEST_HEADER, "").strip().lower() == "true"


def release_after_save(response: Response) -> Response:
    """After the view: release the guard-verified lock after a 2xx answer (the guard
    registers it with ``after_this_request`` when the request asks for it)."""
    lock = verified_lock()
    if lock is None or lock.token is None or not wants_release():
        return response
    if not 200 <= response.status_code < 300:
        response.headers[RESPONSE_HEADER] = "false"
        return response
    state = locking_state()
    released = None
    try:
        # The same permission as DELETE .../@lock: the write went through, the release not.
        if is_allowed(state, "unlock", lock.resource, current_identity(state)):
            released = state.engine.release(lock.resource, token=lock.token)
    except LockingError as error:
        # The save itself succeeded: report, never turn it into an error. A lock taken over
        # meanwhile is someone else's now and is left alone.
        log.warning("flask-locking: could not release %s after save: %s", lock.resource, error)
    response.headers[RESPONSE_HEADER] = "true" if released is not None else "false"
    return response
