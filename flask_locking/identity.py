"""Who is calling, and what they may do.

The host decides both: ``@locking.identity_loader`` and ``@locking.authorizer``. Without a
loader, the identity is the verified bearer JWT's subject when ``LOCKING_JWT_SECRET`` is set
and a bearer token is sent, else Flask-Login's ``current_user`` when Flask-Login is set up
on the app, else anonymous (``None``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import current_app, g

from .jwt_auth import bearer_token, identity_from_jwt
from .lock import Owner

if TYPE_CHECKING:
    from .state import LockingState

#: The four actions the authorizer is asked about.
ACTIONS = ("view", "lock", "unlock", "steal")

IdentityLoader = Callable[[], Any]
Authorizer = Callable[[str, str, "Owner | None"], bool]

_MISSING = object()


def current_identity(state: LockingState) -> Owner | None:
    """The caller's identity for this request (computed once per request)."""
    cached = g.get("_locking_identity", _MISSING)
    if cached is not _MISSING:
        return cached  # type: ignore[no-any-return]
    identity = _load_identity(state)
    g._locking_identity = identity
    return identity


def _load_identity(state: LockingState) -> Owner | None:
    loader = state.extension.identity_loader_callback
    if loader is not None:
        return Owner.coerce(loader())
    if state.config.jwt_secret and bearer_token() is not None:
        return identity_from_jwt(state.config)
    if hasattr(current_app, "login_manager"):
        from flask_login import current_user

        return Owner.coerce(current_user._get_current_object())
    return None


def default_authorizer(action: str, resource: str, identity: Owner | None) -> bool:
    """Everything is allowed but stealing a non-stealable lock."""
    return action != "steal"


def is_allowed(state: LockingState, action: str, resource: str, identity: Owner | None) -> bool:
    """Ask the host's authorizer (or the default) whether ``identity`` may ``action``."""
    authorizer = state.extension.authorizer_callback or default_authorizer
    return bool(authorizer(action, resource, identity))
