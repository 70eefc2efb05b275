"""What every dialect shares: error formats, the guard's refusals, and the lock actions.

A dialect maps URLs, bodies, status codes and error bodies onto the one engine; it never
implements locking itself. Most dialects are declared by a route template
(:class:`~flask_locking.dialects.path.PathDialect`); a free-form one subclasses
:class:`Dialect` with ``owns``, ``create_blueprint`` and, if its error body differs, an
:class:`ErrorFormat` (see ``docs/dialects.rst``).
"""

from __future__ import annotations

import functools
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from ..errors import AuthenticationRequired, LockPermissionDenied, http_status
from ..errors import NotFoundError as _NotFoundError
from ..identity import current_identity, is_allowed
from ..jwt_auth import bearer_token
from ..keys import ResolvedKey, resolve
from ..lock import Lock, Owner
from ..tokens import parse_token_header
from .body import boolean, json_object, parse_fields, whole_seconds

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..openapi import OpenAPIBuilder
    from ..state import LockingState

log = logging.getLogger("flask_locking")

#: Defined in :mod:`flask_locking.errors`; still importable from here.
NotFoundError = _NotFoundError

#: Standard reason phrases, used as error types.
ERROR_TYPES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    412: "PreconditionFailed",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
    423: "Locked",
    500: "InternalServerError",
    503: "ServiceUnavailable",
}


def integer_segment(value: str, *, signed: bool = False, routed: bool = False) -> int | None:
    """``value`` as an integer when it is one in ASCII digits (a leading ``-`` only when
    ``signed``; at most 18 digits), else ``None``. For ids in lock URLs.

    With ``routed`` (the guard reading a path), any spelling a host's router turns into
    that integer counts: Werkzeug's ``int`` converter takes any Unicode decimal digits and
    any number of leading zeros, so a full-width ``7`` is job 7 and must be guarded as such.
    """
    if routed:
        digits = value.removeprefix("-")
        if not digits.isdecimal() or len(digits) > 4000:
            return None
        number = int(value)
        return number if signed or number >= 0 else None
    digits = value[1:] if signed and value.startswith("-") else value
    if not digits or len(digits) > 18 or not (digits.isascii() and digits.isdigit()):
        return None
    return int(value)


#: The response header naming why the guard refused a write: ``locked`` (no token for a
#: locked resource) or ``stale`` (a token that is not the live lock's). Clients tell the
#: two apart by it where a dialect answers both with one status and body (reference: 409).
REFUSAL_HEADER = "Lock-Refused"


class ErrorFormat:
    """``{"error": {"type": ..., "message": ...}}`` plus the holder under ``"lock"``
    (Plone REST API style; content and job locks)."""

    #: The name of the body's schema in the OpenAPI document (``components.schemas``).
    schema_name: ClassVar[str] = "Error"

    def body(self, status: int, message: str, lock: Lock | None) -> dict[str, Any]:
        error = {"type": ERROR_TYPES.get(status, "Error"), "message": message}
        body: dict[str, Any] = {"error": error}
        if lock is not None:
            body["lock"] = lock.without_token().to_json()
        return body


class EnvelopeErrorFormat(ErrorFormat):
    """``{"status": "error", "code": N, "message": ..., "details": ...}`` (reference locks).

    ``message`` is a fixed title per status; ``details`` is a fixed phrase for the statuses
    in :attr:`details` and otherwise the specific message. No holder lock: the envelope has
    exactly these four keys.
    """

    schema_name = "EnvelopeError"

    titles: ClassVar[dict[int, str]] = {
        400: "Bad request", 401: "Authentication failed", 403: "Access denied",
        404: "Not found", 405: "Method not allowed", 409: "Conflict",
        412: "Precondition failed", 413: "Payload too large", 415: "Unsupported media type",
        423: "Locked",
        500: "Internal server error", 503: "Service unavailable",
    }
    details: ClassVar[dict[int, str]] = {
        403: "Insufficient permissions",
        409: "Locking conflict",
        500: "The server could not complete the request.",
    }

    def body(self, status: int, message: str, lock: Lock | None) -> dict[str, Any]:
        return {
            "status": "error",
            "code": status,
            "message": self.titles.get(status, "Error"),
            "details": self.details.get(status, message),
        }


class Dialect(ABC):
    """One HTTP surface over the engine."""

    #: Blueprint name (also the dialect's name in config and docs).
    name: ClassVar[str]
    #: Status of a guarded write to a locked resource without a token.
    locked_status: ClassVar[int]
    #: Status of a guarded write whose token is not the live lock's.
    stale_status: ClassVar[int] = 412
    #: How errors look on the wire.
    errors: ClassVar[ErrorFormat] = ErrorFormat()
    #: True: a caller without an identity is refused with 401 (see :meth:`identity`).
    requires_identity: ClassVar[bool] = False
    #: ``LOCKING_<config_name>_ENABLED`` (default ``True``) switches the dialect on and
    #: ``LOCKING_<config_name>_URL_PREFIX`` (default :attr:`default_prefix`) moves it;
    #: ``None``: no keys, always served where it is added.
    config_name: ClassVar[str | None] = None
    #: The URL prefix when neither ``add_dialect`` nor the config names one.
    default_prefix: ClassVar[str] = ""
    #: The dialect's name in the OpenAPI document's guard responses (``<label>Locked``);
    #: default: :attr:`name` without ``locking_``, in title case.
    label: ClassVar[str] = ""

    def __init__(self, state: LockingState, prefix: str) -> None:
        self.state = state
        self.prefix = prefix

    # -- registration (see flask_locking.dialects.registry) ----------------------------------

    @classmethod
    def config_defaults(cls, prefix: str | None = None) -> dict[str, Any]:
        """This dialect's configuration keys and their defaults (``prefix``: the default
        URL prefix instead of :attr:`default_prefix`)."""
        if cls.config_name is None:
            return {}
        switch, url_prefix = cls.config_keys()
        return {switch: True, url_prefix: cls.default_prefix if prefix is None else prefix}

    @classmethod
    def config_keys(cls) -> tuple[str, str]:
        """The names of the switch and the URL prefix keys (for a ``config_name``)."""
        return f"LOCKING_{cls.config_name}_ENABLED", f"LOCKING_{cls.config_name}_URL_PREFIX"

    @classmethod
    def configured(cls, config: Mapping[str, Any], prefix: str | None = None) -> str | None:
        """The URL prefix (not yet normalised) the app's ``config`` serves this dialect
        under, or ``None`` when its switch is off."""
        if cls.config_name is None:
            return cls.default_prefix if prefix is None else prefix
        defaults = cls.config_defaults(prefix)
        switch, url_prefix = cls.config_keys()
        if not config.get(switch, defaults[switch]):
            return None
        return str(config.get(url_prefix, defaults[url_prefix]) or "")

    def attach(self, state: LockingState) -> None:
        """Take this dialect's place in ``state``: asked which paths it owns before every
        dialect attached earlier (a host's dialects before the built-in ones)."""
        state.dialects.insert(0, self)

    def openapi(self, document: OpenAPIBuilder) -> None:
        """Add this dialect's lock endpoints to the OpenAPI document (default: none)."""
        del document  # a free-form dialect describes its endpoints by overriding this

    @classmethod
    def openapi_label(cls) -> str:
        """:attr:`label`, or the name in title case."""
        return cls.label or cls.name.removeprefix("locking_").title().replace("_", "")

    @abstractmethod
    def owns(self, key: str) -> bool:
        """True when refusals on the normalised path ``key`` should use this dialect."""

    @abstractmethod
    def create_blueprint(self) -> Blueprint:
        """The blueprint serving this dialect's lock endpoints."""

    def resource_key(self, key: str) -> str:
        """The lock key for a normalised path this dialect owns, as its lock endpoints write
        it (e.g. ids without leading zeros); the guard and ``@lock`` use it too.

        It receives the path already built back from the host's route (see
        :mod:`flask_locking.keys`) and without its namespace; the default keeps it."""
        return key

    def lock_key(self, path: str) -> str:
        """The key the actions below lock for ``path``: the one key function's answer
        (canonical route, this request's namespace), so a view may pass the path it
        builds, e.g. ``f"{self.prefix}/orders/{order_id}"``. A key already resolved
        (``@lock`` resolves it once to check the route) is taken as is."""
        if isinstance(path, ResolvedKey):
            return str(path)  # a plain str for the store and the signals
        return resolve(self.state, path)

    # -- responses ---------------------------------------------------------------------

    def error(
        self, status: int, message: str, *, lock: Lock | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """An error response in this dialect's format."""
        response = jsonify(self.errors.body(status, message, lock))
        response.status_code = status
        for name, value in (headers or {}).items():
            response.headers[name] = value
        return response

    def ignores_unheld_token(self) -> bool:
        """Whether the guard lets a write through that carries a ``Lock-Token`` while no
        live lock covers the resource. Default ``False``: refused as stale (``docs/guard.rst``)."""
        return False

    def refuse_locked(self, lock: Lock) -> Response:
        """The guard's answer to a write without a token on a locked resource."""
        return self.error(
            self.locked_status, "Resource is locked.", lock=None,
            headers={REFUSAL_HEADER: "locked"},
        )

    def refuse_stale(self, lock: Lock | None) -> Response:
        """The guard's answer to a token that is not the live lock's token."""
        return self.error(
            self.stale_status,
            "The lock token is not valid for this resource: the lock expired, was released "
            "or was taken over. Reload before writing.",
            headers={REFUSAL_HEADER: "stale"},
        )

    def unavailable(self) -> Response:
        """503 with Retry-After: the lock store cannot be reached."""
        return self.error(
            503,
            "The lock store is unavailable; try again shortly.",
            headers={"Retry-After": str(self.state.config.retry_after)},
        )

    def lock_json(self, lock: Lock | None) -> dict[str, Any]:
        """The body showing ``lock`` (``None``: the unlocked body) to the caller."""
        return lock.to_json() if lock is not None else {"locked": False, "stealable": True}

    def lock_response(self, lock: Lock | None, status: int = 200) -> Response:
        """The lock JSON (or the unlocked body), with ``Lock-Token`` when the token is shown."""
        response = jsonify(self.lock_json(lock))
        response.status_code = status
        if lock is not None and lock.token is not None:
            response.headers["Lock-Token"] = lock.token
        return response

    def endpoint(self, view: Callable[..., Response]) -> Callable[..., Response]:
        """Wrap a view so every error becomes a response in this dialect's format."""

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            try:
                return view(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - every error gets a dialect body
                return self.handle_error(error)

        return wrapper

    def handle_error(self, error: Exception) -> Response:
        """Map an exception to this dialect's error response; never a traceback."""
        status = http_status(error)  # flask_locking.errors.HTTP_STATUS
        if status == 503:
            return self.unavailable()
        if status is not None:
            # A conflict shows its holder; 401 says how to authenticate.
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            lock = getattr(error, "lock", None)
            return self.error(status, str(error), lock=lock, headers=headers)
        if isinstance(error, HTTPException) and error.code is not None and error.code < 500:
            return self.error(error.code, error.description or ERROR_TYPES.get(error.code, "Error"))
        log.exception("flask-locking: unexpected error in %s", request.path)
        return self.error(500, "Internal server error.")

    # -- the actions every dialect maps onto --------------------------------------------

    def refuses_anonymous(self, action: str) -> bool:
        """True when this dialect answers ``action`` (``view``, ``lock``, ``refresh`` or
        ``unlock``) with 401 to a caller without an identity (default: every action with
        :attr:`requires_identity`). The lock listing asks it too, so that ``/@locks`` shows
        and releases no lock for a caller the dialect's own endpoints would refuse."""
        del action  # the same answer for every action unless a dialect says otherwise
        return self.requires_identity

    def identity(self) -> Owner | None:
        """The caller; with :attr:`requires_identity`, 401 when there is none."""
        identity = current_identity(self.state)
        if identity is None and self.requires_identity:
            raise AuthenticationRequired(
                "JWT token not found" if bearer_token() is None else "No authenticated user"
            )
        return identity

    def authorize(self, action: str, key: str, identity: Owner | None) -> None:
        """Raise :class:`LockPermissionDenied` unless the authorizer allows ``action``."""
        if not is_allowed(self.state, action, key, identity):
            raise LockPermissionDenied(f"You may not {action} {key}.", action, key)

    def body(self, **parsers: Callable[[Any], Any]) -> dict[str, Any]:
        """The request's JSON object body, checked field by field."""
        return parse_fields(json_object(self.state.config.max_body_bytes), parsers)

    def acquire(self, key: str, *, depth: int | str = 0) -> tuple[Lock, bool]:
        """POST: authorize ``lock``, read ``stealable``/``timeout``, acquire or re-lock."""
        key = self.lock_key(key)
        identity = self.identity()
        self.authorize("lock", key, identity)
        fields = self.body(
            stealable=boolean("stealable"),
            timeout=whole_seconds(self.state.config.max_timeout),
        )
        return self.state.engine.acquisition(
            key,
            identity,
            timeout=fields.get("timeout"),
            stealable=fields.get("stealable", True),
            depth=depth,
        )

    def inspect(self, key: str) -> Lock | None:
        """GET: authorize ``view``; the token only for the owner or a caller presenting it."""
        key = self.lock_key(key)
        identity = self.identity()
        self.authorize("view", key, identity)
        # The lock that covers the key, as the guard sees it: an infinite lock above counts.
        return self.state.engine.get(
            key, owner=identity, token=self.request_token(), covering=True
        )

    def refresh(self, key: str) -> Lock:
        """PATCH: authorize ``lock``; refresh with the presented token, else as the owner."""
        key = self.lock_key(key)
        identity = self.identity()
        self.authorize("lock", key, identity)
        fields = self.body(timeout=whole_seconds(self.state.config.max_timeout))
        return self.state.engine.refresh(
            key, self.request_token(), owner=identity, timeout=fields.get("timeout")
        )

    def release(self, key: str, *, force: bool | None = None) -> Lock | None:
        """DELETE: authorize ``unlock``; release as owner / with the token, or steal with
        ``force`` (read from the body when ``None``) as the authorizer allows."""
        key = self.lock_key(key)
        identity = self.identity()
        self.authorize("unlock", key, identity)
        if force is None:
            force = self.body(force=boolean("force")).get("force", False)

        def may_steal(lock: Lock) -> bool:
            return is_allowed(self.state, "steal", key, identity)

        return self.state.engine.release(
            key, token=self.request_token(), owner=identity, force=force, may_steal=may_steal
        )

    @staticmethod
    def request_token() -> str | None:
        """The token of the request's ``Lock-Token`` header (bare or ``<token>``)."""
        current = request._get_current_object()  # type: ignore[attr-defined]
        return parse_token_header(current.headers.get("Lock-Token"))
