"""Per-app state, kept in ``app.extensions["locking"]``: config, store, engine, dialects.

Read it through :func:`locking_state` (one accessor, one error when the extension is not
set up); the host's callbacks are reached through the state's properties.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from flask import Flask, current_app

from .config import LockingConfig
from .engine import LockEngine
from .events.hub import EventHub
from .events.settings import EventsSettings
from .lock import Lock
from .signals import BY_EVENT
from .store import LockStore, SQLStore, StoreOptions, store_class_for
from .store.eventlog import EventLog

if TYPE_CHECKING:
    from flask import Blueprint

    from .dialects.base import Dialect
    from .dialects.content import ContentDialect
    from .events.endpoints import LockEventsEndpoint
    from .extension import Locking
    from .identity import Authorizer, IdentityLoader

#: The key of the state in ``app.extensions``.
EXTENSION_KEY = "locking"

log = logging.getLogger("flask_locking")


class LockingState:
    """What flask-locking keeps for one app. The store is opened on first use."""

    def __init__(self, extension: Locking, app: Flask, config: LockingConfig, db: Any) -> None:
        self.extension = extension
        self.config = config
        self.db = db
        self.instance_path = app.instance_path
        self.dialects: list[Dialect] = []
        self.fallback_dialect: Dialect | None = None
        self.content_dialect: ContentDialect | None = None
        self.blueprint_names: set[str] = set()
        # With Flask-SQLAlchemy, the host's engine options (search_path, SSL, ...) are how
        # the host reaches its database; the lock store reaches it the same way (§4b).
        self.host_engine_options: dict[str, Any] = {}
        if db is not None and not config.database_uri:
            self.host_engine_options = {
                **(getattr(db, "_engine_options", None) or {}),
                **(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {}),
            }
        self.metadata: sa.MetaData = db.metadata if db is not None else sa.MetaData()
        self.events_settings = EventsSettings.from_mapping(app.config)
        #: What the store is built with (on first use, by :attr:`store_class`).
        self.store_options = StoreOptions(
            table_name=config.table_name,
            timeout=config.store_timeout,
            engine_options=self.engine_options(),
            metadata=self.metadata,
        )
        #: The store class serving the URI's scheme (an unknown scheme fails here, at
        #: ``init_app``); without a URI, a SQL database (the host's, or a SQLite file).
        self.store_class: type[LockStore] = (
            store_class_for(config.database_uri) if config.database_uri else SQLStore
        )
        # SQL stores define their tables now, on the host's metadata when there is one, so
        # that Flask-Migrate / Alembic autogenerate see them before any lock is taken.
        self.store_class.define_schema(self.store_options, events=self.events_settings.enabled)
        #: The ``<path>/@lock/events`` endpoint (set up by ``init_app``).
        self.lock_events: LockEventsEndpoint | None = None
        self._app = weakref.ref(app)
        self._hub: EventHub | None = None
        self._hub_pid = 0
        self._engine: LockEngine | None = None
        self._build_lock = threading.Lock()

    @property
    def engine(self) -> LockEngine:
        """The lock engine, created (and the table made) on first use."""
        engine = self._engine
        if engine is None:
            with self._build_lock:
                if self._engine is None:
                    self._engine = self._build_engine()
                engine = self._engine
        return engine

    # -- the host's callbacks (registered on the Locking object) ---------------------------

    @property
    def identity_loader(self) -> IdentityLoader | None:
        """``@locking.identity_loader``'s callback, or ``None``."""
        return self.extension.identity_loader_callback

    @property
    def authorizer(self) -> Authorizer | None:
        """``@locking.authorizer``'s callback, or ``None`` (the default authorizer)."""
        return self.extension.authorizer_callback

    @property
    def job_exists(self) -> Callable[[int, int], bool] | None:
        """``@locking.job_exists``'s callback, or ``None`` (every job exists)."""
        return self.extension.job_exists_callback

    @property
    def exempt_blueprints(self) -> set[Blueprint]:
        """The blueprints exempted from the guard with ``locking.exempt(blueprint)``."""
        return self.extension.exempt_blueprints

    def database_uri(self) -> str:
        """Where locks are kept: the configured URI, the host's database, or a SQLite file."""
        if self.config.database_uri:
            return str(self.config.database_uri)
        if self.db is not None:
            return self.db.engine.url.render_as_string(hide_password=False)  # type: ignore[no-any-return]
        return "sqlite:///" + os.path.join(self.instance_path, "locking.sqlite3")

    def engine_options(self) -> dict[str, Any]:
        """The host's engine options (with Flask-SQLAlchemy), then ``LOCKING_ENGINE_OPTIONS``;
        ``connect_args`` merged key by key. The host's ``isolation_level`` is not taken: the
        lock statements are written for READ COMMITTED."""
        host = {k: v for k, v in self.host_engine_options.items() if k != "isolation_level"}
        ours = dict(self.config.engine_options)
        connect_args = {**(host.get("connect_args") or {}), **(ours.get("connect_args") or {})}
        options = {**host, **ours}
        if connect_args:
            options["connect_args"] = connect_args
        return options

    def _build_engine(self) -> LockEngine:
        store = self.store_class.from_uri(self.database_uri(), self.store_options)
        try:
            events = self._event_log(store)
            if self.config.create_table:
                store.create_schema()
                if events is not None:
                    events.create_schema()
            elif events is not None and not events.exists():
                # Each lock operation writes its event in its own transaction: without the
                # tables every one would fail. The locks go on; the streams answer 404.
                log.error(
                    "flask-locking: LOCKING_EVENTS_ENABLED is on but the lock event tables are "
                    "missing (LOCKING_CREATE_TABLE = False: add them to your migrations, or "
                    "set LOCKING_EVENTS_ENABLED = False); lock events are off."
                )
                events = None
            engine = LockEngine(
                store,
                secret_key=self.config.secret_key,
                default_timeout=self.config.default_timeout,
                max_timeout=self.config.max_timeout,
                notify=_send_signal,
                listening=_has_receivers,
                events=events,
            )
            engine.key  # noqa: B018 - a generated key is read from the store now, not mid-request
        except BaseException:
            store.dispose()  # the next use starts again with a fresh store
            raise
        return engine

    def _event_log(self, store: LockStore) -> EventLog | None:
        if not self.events_settings.enabled:
            return None
        events = store.event_log(retention=self.events_settings.retention)
        if events is None:
            log.warning(
                "flask-locking: %s keeps no lock events; the event streams answer 404 "
                "(set LOCKING_EVENTS_ENABLED = False to say so).", type(store).__name__,
            )
        return events

    def event_hub(self) -> EventHub | None:
        """This process's hub delivering lock events to streams (``None``: events off)."""
        events = self.engine.events
        if events is None:
            return None
        with self._build_lock:
            if self._hub is None or self._hub_pid != os.getpid():  # a forked worker: anew
                self._hub = EventHub(events, self.events_settings, expire=self._expire)
                self._hub_pid = os.getpid()
            return self._hub

    def _expire(self) -> None:
        # Runs on the hub's thread: signals are sent with the app as sender, as elsewhere.
        app = self._app()
        if app is not None:
            with app.app_context():
                self.engine.purge_expired()

    def dialect_for(self, key: str) -> Dialect | None:
        """The dialect whose error format refusals on ``key`` use."""
        for dialect in self.dialects:
            if dialect.owns(key):
                return dialect
        return self.fallback_dialect

    def close(self) -> None:
        """Dispose of the store's pooled connections (tests, app teardown)."""
        if self._hub is not None:
            self._hub.stop()
        if self._engine is not None:
            self._engine.store.dispose()


def locking_state(app: Flask | None = None) -> LockingState:
    """The flask-locking state of ``app`` (default: the current app).

    Raises :class:`RuntimeError` when flask-locking is not set up on it.
    """
    target = app if app is not None else current_app
    try:
        return target.extensions[EXTENSION_KEY]  # type: ignore[no-any-return]
    except KeyError:
        raise RuntimeError(
            "flask-locking is not set up on this app: call Locking(app) or "
            "locking.init_app(app) first."
        ) from None


def _has_receivers(event: str) -> bool:
    return bool(BY_EVENT[event].receivers)


def _send_signal(event: str, lock: Lock) -> None:
    signal = BY_EVENT[event]
    if signal.receivers:
        try:
            signal.send(current_app._get_current_object(), lock=lock)  # type: ignore[attr-defined]
        except Exception:
            # The lock operation has committed: a failing receiver must not turn a grant
            # into a 500 that hides the token from its new owner.
            log.exception("flask-locking: a %s signal receiver failed", event)
