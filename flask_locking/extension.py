"""The :class:`Locking` Flask extension."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, Flask, current_app

from .config import DEFAULTS, LockingConfig
from .dialects.base import Dialect
from .dialects.registry import register_builtin_dialects, register_dialect
from .engine import UNSET, LockEngine
from .guard import before_request
from .identity import Authorizer, IdentityLoader
from .keys import resolve
from .lock import Lock
from .state import EXTENSION_KEY, LockingState, locking_state

F = TypeVar("F", bound=Callable[..., Any])


class Locking:
    """Pessimistic edit locks for a Flask app.

    ::

        locking = Locking(app)          # or Locking(); locking.init_app(app)

    :param app: the app to set up now (or call :meth:`init_app` later, once per app).
    :param db: a Flask-SQLAlchemy ``SQLAlchemy`` instance: the lock table is defined on its
        metadata and kept in its database, but lock operations always run on their own
        connections and transactions.
    """

    def __init__(self, app: Flask | None = None, *, db: Any = None) -> None:
        self.db = db
        self.identity_loader_callback: IdentityLoader | None = None
        self.authorizer_callback: Authorizer | None = None
        #: Existence checks by dialect name (:meth:`resource_exists`).
        self.exists_checks: dict[str, Callable[..., bool]] = {}
        self.exempt_blueprints: set[Blueprint] = set()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, *, db: Any = None) -> None:
        """Set up ``app``: read the ``LOCKING_*`` config, register the guard and dialects."""
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                "flask-locking is already set up on this app; create one Locking() and call "
                "init_app(app) once per app."
            )
        for key, value in DEFAULTS.items():
            app.config.setdefault(key, value)
        config = LockingConfig.from_mapping(app.config)
        state = LockingState(self, app, config, db if db is not None else self.db)
        app.extensions[EXTENSION_KEY] = state

        register_builtin_dialects(app, state)
        self._register_events_and_listing(app, state)
        app.before_request(before_request)  # serves @lock endpoints, then guards

        from . import writes

        writes.init_app(app, state)

        from .cli import locks_cli

        app.cli.add_command(locks_cli)
        if app.config["LOCKING_OPENAPI_URL"]:
            try:
                from .openapi import create_blueprint
            except ImportError as error:
                raise RuntimeError(
                    f"LOCKING_OPENAPI_URL is set but the [openapi] extra is missing ({error}): "
                    "pip install 'flask-locking[openapi]'."
                ) from None
            openapi_blueprint = create_blueprint(app.config["LOCKING_OPENAPI_URL"])
            app.register_blueprint(openapi_blueprint)
            state.blueprint_names.add(openapi_blueprint.name)
        if app.config["LOCKING_SWAGGER_UI_URL"]:
            from .openapi import create_swagger_ui_blueprint

            if not app.config["LOCKING_OPENAPI_URL"]:
                raise RuntimeError("LOCKING_SWAGGER_UI_URL needs LOCKING_OPENAPI_URL to be set.")
            ui_blueprint = create_swagger_ui_blueprint(
                app.config["LOCKING_SWAGGER_UI_URL"], app.config["LOCKING_OPENAPI_URL"]
            )
            app.register_blueprint(ui_blueprint)
            state.blueprint_names.add(ui_blueprint.name)

    @staticmethod
    def _register_events_and_listing(app: Flask, state: LockingState) -> None:
        from .events.endpoints import LockEventsEndpoint
        from .listing import LocksEndpoint

        blueprints: list[Blueprint] = []
        if state.content_dialect is not None and state.events_settings.enabled:
            state.lock_events = LockEventsEndpoint(state, state.content_dialect)
            blueprints.append(state.lock_events.create_blueprint())
        url = state.events_settings.locks_url
        if url and state.fallback_dialect is not None:
            blueprints.append(LocksEndpoint(state, url, state.fallback_dialect).create_blueprint())
        for blueprint in blueprints:
            app.register_blueprint(blueprint)
            state.blueprint_names.add(blueprint.name)

    # -- host hooks ----------------------------------------------------------------------

    def identity_loader(self, callback: F) -> F:
        """Register the function that returns the caller: ``None`` (anonymous), a user-id
        string, or an object with ``id``/``name``/``url`` (or ``get_id()``)."""
        self.identity_loader_callback = callback
        return callback

    def authorizer(self, callback: F) -> F:
        """Register ``callback(action, resource, identity) -> bool`` for the actions
        ``view``, ``lock``, ``unlock`` and ``steal``. The default allows all but ``steal``."""
        self.authorizer_callback = callback
        return callback

    def resource_exists(self, dialect: str | type[Dialect]) -> Callable[[F], F]:
        """Register ``callback(*values) -> bool`` for a :class:`~flask_locking.dialects.
        PathDialect` (its class or name): called with its template's values in order, a
        resource it says does not exist gets 404 at the lock endpoint. Default: all exist."""
        name = dialect if isinstance(dialect, str) else dialect.name

        def register(callback: F) -> F:
            self.exists_checks[name] = callback
            return callback

        return register

    def job_exists(self, callback: F) -> F:
        """Register ``callback(company_id, job_id) -> bool`` for the job-lock dialect: a job
        it says does not exist gets 404. The default: every id exists."""
        return self.resource_exists("locking_jobs")(callback)

    @property
    def job_exists_callback(self) -> Callable[..., bool] | None:
        """The job dialect's existence check (see :meth:`job_exists`)."""
        return self.exists_checks.get("locking_jobs")

    def add_dialect(
        self, dialect_class: type[Dialect], prefix: str | None = None, *,
        app: Flask | None = None,
    ) -> Dialect | None:
        """Serve a host's own :class:`~flask_locking.dialects.Dialect` subclass on ``app``
        (default: the current app), before its first request, as the built-in ones are
        served: under ``prefix`` (default: its ``default_prefix``; for a dialect with
        ``config_name``, the default of its ``LOCKING_<NAME>_URL_PREFIX``). Guard refusals on
        the paths it ``owns`` use its statuses and error format; it is asked before the
        dialects added earlier. ``None`` when its ``LOCKING_<NAME>_ENABLED`` is off."""
        target = app if app is not None else current_app._get_current_object()  # type: ignore[attr-defined]
        return register_dialect(target, self.state(target), dialect_class, prefix)

    def exempt(self, obj: F | Blueprint) -> Any:
        """Exempt a view function or a blueprint from the guard (decorator or call).

        A blueprint is exempt wherever it is registered (under its full name, e.g.
        ``api.admin`` when nested), with the blueprints nested in it; another blueprint of
        the same short name is not."""
        if isinstance(obj, Blueprint):
            self.exempt_blueprints.add(obj)
            return obj
        obj._locking_exempt = True  # type: ignore[attr-defined]
        return obj

    # -- Python API (in an app context) --------------------------------------------------

    @property
    def engine(self) -> LockEngine:
        """The current app's :class:`~flask_locking.engine.LockEngine`."""
        return self.state().engine

    def state(self, app: Flask | None = None) -> LockingState:
        """The per-app state of ``app`` (default: the current app)."""
        return locking_state(app)

    def acquire(
        self, resource: str, owner: Any = None, *, timeout: float | None = None,
        stealable: bool = True, depth: int | str = 0,
    ) -> Lock:
        """Lock ``resource`` for ``owner`` (``None``: anonymous); return it with its token.
        See :meth:`LockEngine.acquire`. A path is keyed as the guard keys it (its canonical
        route; in a request, the request's namespace), see :mod:`flask_locking.keys`."""
        return self.engine.acquire(
            self._key(resource), owner, timeout=timeout, stealable=stealable, depth=depth
        )

    def refresh(self, resource: str, token: str, *, timeout: float | None = None) -> Lock:
        """Restart the timeout of the lock ``token`` opens. See :meth:`LockEngine.refresh`."""
        return self.engine.refresh(self._key(resource), token, timeout=timeout)

    def release(
        self, resource: str, *, token: str | None = None, owner: Any = None, force: bool = False,
    ) -> Lock | None:
        """Release with ``token`` or as ``owner``; ``force`` steals a stealable lock (and a
        non-stealable one only when the authorizer grants ``steal`` to ``owner``)."""
        state = self.state()

        def may_steal(lock: Lock) -> bool:
            from .identity import is_allowed
            from .lock import Owner

            return is_allowed(state, "steal", lock.resource, Owner.coerce(owner))

        return state.engine.release(
            self._key(resource), token=token, owner=owner, force=force, may_steal=may_steal
        )

    def get(self, resource: str, *, owner: Any = UNSET) -> Lock | None:
        """The live lock on ``resource`` or ``None`` (token included for ``owner`` only)."""
        return self.engine.get(self._key(resource), owner=owner)

    def _key(self, resource: str) -> str:
        return resolve(self.state(), resource)

    def locks(self, prefix: str | None = None) -> list[Lock]:
        """Every live lock, or those on ``prefix`` and below; tokens withheld."""
        return self.engine.locks(prefix)

    def purge_expired(self) -> int:
        """Wipe the secrets of expired locks; return how many."""
        return self.engine.purge_expired()
