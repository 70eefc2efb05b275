"""Every ``LOCKING_*`` configuration key, its default, and the parsed settings object."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .dialects.registry import BUILTIN

#: Every configuration key with its default. ``init_app`` sets these with ``setdefault``.
DEFAULTS: dict[str, Any] = {
    # Store
    "LOCKING_DATABASE_URI": None,  # None: sqlite file "locking.sqlite3" in the instance folder
    "LOCKING_ENGINE_OPTIONS": {},
    "LOCKING_TABLE_NAME": "locking_locks",
    "LOCKING_CREATE_TABLE": True,
    "LOCKING_STORE_TIMEOUT": 5.0,  # seconds a store operation may wait (connect, lock wait)
    # Locks
    "LOCKING_DEFAULT_TIMEOUT": 600,
    "LOCKING_MAX_TIMEOUT": 86400,
    "LOCKING_SECRET_KEY": None,
    # Guard
    "LOCKING_GUARD_ENABLED": True,
    "LOCKING_GUARDED_METHODS": {"PATCH"},
    "LOCKING_GUARD_FAIL_OPEN": False,
    "LOCKING_RETRY_AFTER": 5,
    "LOCKING_UNLOCK_ON_SAVE": True,  # a 2xx guarded write with "Lock-Release: true" releases
    "LOCKING_HOLD_ON_FLUSH": False,  # hold the verified lock in db.session on its first flush
    "LOCKING_REFRESH_ON_WRITE": False,  # a verified guarded write restarts the lease
    # e.g. "/locking/openapi.json" to serve the document (needs [openapi])
    "LOCKING_OPENAPI_URL": None,
    # e.g. "/locking/docs" (needs [swagger-ui] and LOCKING_OPENAPI_URL)
    "LOCKING_SWAGGER_UI_URL": None,
    # Live lock events and the lock listing (docs/events.rst)
    "LOCKING_EVENTS_ENABLED": True,  # record events in <table>_events and serve the streams
    "LOCKING_EVENTS_RETENTION": 3600,  # seconds an event stays replayable (Last-Event-ID)
    "LOCKING_EVENTS_POLL_INTERVAL": 0.25,  # seconds between event-log reads (not PostgreSQL)
    "LOCKING_EVENTS_EXPIRY_INTERVAL": 1.0,  # seconds between looks for expired locks
    "LOCKING_EVENTS_HEARTBEAT": 15,  # seconds between keep-alive comments
    "LOCKING_EVENTS_RETRY": 2,  # reconnect delay suggested to clients (SSE "retry:")
    "LOCKING_EVENTS_MAX_STREAMS": 100,  # open streams per app per process; 503 past it
    "LOCKING_LOCKS_URL": "/@locks",  # lock listing, bulk release, multi-resource stream
    "LOCKING_LOCKS_PAGE_SIZE": 100,  # default (and at most 10x this) items per page
    # Dialects: each one's LOCKING_<NAME>_ENABLED and _URL_PREFIX are added below
    "LOCKING_CONTENT_REQUIRE_ROUTE": True,
    # or "plone": answer @lock as Plone does (docs/dialects.rst)
    "LOCKING_CONTENT_COMPAT": "strict",
    "LOCKING_MAX_BODY_BYTES": 16 * 1024,
    # JWT (reference dialect, and identity when no loader is set)
    "LOCKING_JWT_SECRET": None,
    "LOCKING_JWT_ALGORITHMS": ["HS256"],
    "LOCKING_JWT_AUDIENCE": None,
    "LOCKING_JWT_ISSUER": None,
    "LOCKING_JWT_LEEWAY": 0,
}
# Each built-in dialect declares its switch and URL prefix (``Dialect.config_defaults``).
for _dialect in BUILTIN:
    DEFAULTS.update(_dialect.config_defaults())


@dataclass(frozen=True)
class LockingConfig:
    """The configuration of one app, read once at ``init_app`` time."""

    database_uri: str | None
    engine_options: Mapping[str, Any]
    table_name: str
    create_table: bool
    store_timeout: float
    default_timeout: float
    max_timeout: float
    secret_key: str | bytes | None
    guard_enabled: bool
    guarded_methods: frozenset[str]
    guard_fail_open: bool
    retry_after: int
    content_require_route: bool
    content_compat: str
    max_body_bytes: int
    jwt_secret: str | bytes | None
    jwt_algorithms: tuple[str, ...]
    jwt_audience: str | None
    jwt_issuer: str | None
    jwt_leeway: float
    hold_on_flush: bool = False
    refresh_on_write: bool = False
    unlock_on_save: bool = True

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> LockingConfig:
        """Read the ``LOCKING_*`` keys of a Flask config, validating the ones that can be wrong."""

        def get(key: str) -> Any:
            return config.get(key, DEFAULTS[key])

        default_timeout = float(get("LOCKING_DEFAULT_TIMEOUT"))
        max_timeout = float(get("LOCKING_MAX_TIMEOUT"))
        if not 0 < default_timeout <= max_timeout:
            raise ValueError(
                "LOCKING_DEFAULT_TIMEOUT must be > 0 and <= LOCKING_MAX_TIMEOUT, "
                f"got {default_timeout} and {max_timeout}."
            )
        methods = get("LOCKING_GUARDED_METHODS")
        if isinstance(methods, str):
            methods = [methods]
        guarded = frozenset(m.upper() for m in _iterable(methods))
        if "GET" in guarded:  # Werkzeug serves HEAD with the GET view: it writes as GET does
            guarded |= {"HEAD"}
        return cls(
            database_uri=get("LOCKING_DATABASE_URI"),
            engine_options=dict(get("LOCKING_ENGINE_OPTIONS") or {}),
            table_name=str(get("LOCKING_TABLE_NAME")),
            create_table=bool(get("LOCKING_CREATE_TABLE")),
            store_timeout=float(get("LOCKING_STORE_TIMEOUT")),
            default_timeout=default_timeout,
            max_timeout=max_timeout,
            secret_key=get("LOCKING_SECRET_KEY") or config.get("SECRET_KEY"),
            guard_enabled=bool(get("LOCKING_GUARD_ENABLED")),
            guarded_methods=guarded,
            guard_fail_open=bool(get("LOCKING_GUARD_FAIL_OPEN")),
            retry_after=int(get("LOCKING_RETRY_AFTER")),
            content_require_route=bool(get("LOCKING_CONTENT_REQUIRE_ROUTE")),
            content_compat=_content_compat(get("LOCKING_CONTENT_COMPAT")),
            max_body_bytes=int(get("LOCKING_MAX_BODY_BYTES")),
            jwt_secret=get("LOCKING_JWT_SECRET"),
            jwt_algorithms=tuple(_iterable(get("LOCKING_JWT_ALGORITHMS"))),
            jwt_audience=get("LOCKING_JWT_AUDIENCE"),
            jwt_issuer=get("LOCKING_JWT_ISSUER"),
            jwt_leeway=float(get("LOCKING_JWT_LEEWAY")),
            hold_on_flush=bool(get("LOCKING_HOLD_ON_FLUSH")),
            refresh_on_write=bool(get("LOCKING_REFRESH_ON_WRITE")),
            unlock_on_save=bool(get("LOCKING_UNLOCK_ON_SAVE")),
        )


#: The values ``LOCKING_CONTENT_COMPAT`` accepts.
CONTENT_COMPAT_MODES = ("strict", "plone")


def _content_compat(value: Any) -> str:
    if value not in CONTENT_COMPAT_MODES:  # exact: "Plone" or "plone5" is a typo, not a mode
        raise ValueError(
            "LOCKING_CONTENT_COMPAT must be one of "
            f"{', '.join(repr(m) for m in CONTENT_COMPAT_MODES)}, not {value!r}."
        )
    return str(value)


def _iterable(value: Any) -> Iterable[str]:
    return [value] if isinstance(value, str) else list(value)
