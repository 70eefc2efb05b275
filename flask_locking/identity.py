"""Who is calling, and what they may do.

The host decides both: ``@locking.identity_loader`` and ``@locking.authorizer``. Without a
loader, the identity is the verified bearer JWT's subject when ``LOCKING_JWT_SECRET`` is set
and a bearer token is sent, else Flask-Login's ``current_user`` when Flask-Login is set up
on the app, else anonymous (``None``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import current_app, has_request_context, request

from .jwt_auth import bearer_token, identity_from_jwt
from .lock import Owner

if TYPE_CHECKING:
    from .state import LockingState

#: The four actions the authorizer is asked about.
ACTIONS = ("view", "lock", "unlock", "steal")

IdentityLoader = Callable[[], Any]
Authorizer = Callable[[str, str, "Owner | None"], bool]

_MISSING = object()
#: The request attribute the caller's identity is kept in.
_IDENTITY = "_locking_identity"


def current_identity(state: LockingState) -> Owner | None:
    """The caller's identity for this request (computed once per request, and kept with
    the request: never carried over to the next one)."""
    if not has_request_context():
        return _load_identity(state)
    current = request._get_current_object()  # type: ignore[attr-defined]
    cached = current.__dict__.get(_IDENTITY, _MISSING)
    if cached is not _MISSING:
        return cached  # type: ignore[no-any-return]
    identity = _load_identity(state)
    setattr(current, _IDENTITY, identity)
    return identity


def _load_identity(state: LockingState) -> Owner | None:
    loader = state.identity_loader
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
    authorizer = state.authorizer or default_authorizer
    return bool(authorizer(action, resource, identity))
