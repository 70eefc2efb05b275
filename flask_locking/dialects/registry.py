"""The one way a dialect is served: built-in ones at ``init_app``, a host's through
:meth:`Locking.add_dialect <flask_locking.Locking.add_dialect>`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Dialect
from .content import ContentDialect
from .jobs import JobsDialect
from .reference import ReferenceDialect

if TYPE_CHECKING:
    from flask import Flask

    from ..state import LockingState

#: The built-in dialects, in registration order (the last registered is asked first which
#: paths it owns; the content dialect owns every path no other claims).
BUILTIN: tuple[type[Dialect], ...] = (ContentDialect, JobsDialect, ReferenceDialect)


def normalize_prefix(value: str | None) -> str:
    """A URL prefix as dialects use it: ``""`` (the root) or ``/a/b`` (no last slash)."""
    value = (value or "").strip()
    if not value or value == "/":
        return ""
    return "/" + value.strip("/")


def register_dialect(
    app: Flask, state: LockingState, dialect_class: type[Dialect], prefix: str | None = None,
) -> Dialect | None:
    """Serve ``dialect_class`` on ``app``: its config keys get their defaults, its blueprint
    is registered (and exempt from the guard), and the guard asks it which paths it owns
    before the dialects registered earlier. ``None`` when its ``LOCKING_<NAME>_ENABLED``
    switch is off.

    ``prefix`` is the URL prefix; for a dialect with config keys, it is the default of its
    ``LOCKING_<NAME>_URL_PREFIX`` (the app's config, when it sets the key, wins).
    """
    for key, value in dialect_class.config_defaults(prefix).items():
        app.config.setdefault(key, value)
    configured = dialect_class.configured(app.config, prefix)
    if configured is None:
        return None
    dialect = dialect_class(state, normalize_prefix(configured))
    blueprint = dialect.create_blueprint()
    app.register_blueprint(blueprint)
    state.blueprint_names.add(blueprint.name)
    dialect.attach(state)
    return dialect


def register_builtin_dialects(app: Flask, state: LockingState) -> None:
    """Serve the built-in dialects the app's config switches on."""
    for dialect_class in BUILTIN:
        register_dialect(app, state, dialect_class)
    if state.fallback_dialect is None:  # content switched off: its answers still apply
        state.fallback_dialect = ContentDialect(state, "")


def served_dialects(state: LockingState) -> list[Dialect]:
    """Every dialect serving lock endpoints on the app, in the order the guard asks them."""
    return [*state.dialects, *([state.content_dialect] if state.content_dialect else [])]
