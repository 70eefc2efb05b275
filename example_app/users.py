"""Demo users, sign-in by session cookie, and the two hooks flask-locking asks the host for.

There are no passwords: this is a demo of locking, not of authentication. A real app plugs
its own login (Flask-Login, OIDC, ...) into the same two hooks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt
from flask import current_app, g, request, session

from flask_locking import AuthenticationRequired, Owner

from .extensions import locking


@dataclass(frozen=True)
class User:
    """A demo user. flask-locking reads ``id`` and ``name`` from it (``url`` is optional)."""

    id: str
    name: str
    admin: bool = False
    url: str | None = None


USERS: dict[str, User] = {
    user.id: user
    for user in (
        User("alice", "Alice"),
        User("bob", "Bob"),
        User("carol", "Carol", admin=True),
    )
}


def current_user() -> User | None:
    """The signed-in user of this request (session cookie), or ``None``."""
    if "_example_user" not in g:
        g._example_user = USERS.get(session.get("user", ""))
    return g._example_user  # type: ignore[no-any-return]


def mint_jwt(user: User, *, lifetime: int = 3600) -> str:
    """A demo bearer JWT for ``user`` (HS256, secret ``LOCKING_JWT_SECRET``)."""
    now = int(time.time())
    claims = {"sub": user.id, "name": user.name, "iat": now, "exp": now + lifetime}
    return jwt.encode(claims, current_app.config["LOCKING_JWT_SECRET"], algorithm="HS256")


def user_from_bearer(header: str | None) -> User | None:
    """The user of an ``Authorization: Bearer <jwt>`` header; ``None`` without one.

    Raises :class:`~flask_locking.AuthenticationRequired` for a bad or expired token, which
    flask-locking's endpoints turn into their 401.
    """
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    try:
        claims = jwt.decode(
            token.strip(),
            current_app.config["LOCKING_JWT_SECRET"],
            algorithms=["HS256"],
            options={"require": ["sub", "exp"]},
        )
    except jwt.ExpiredSignatureError:
        raise AuthenticationRequired("JWT token has expired") from None
    except jwt.InvalidTokenError:
        raise AuthenticationRequired("JWT token is malformed or invalid") from None
    user = USERS.get(str(claims["sub"]))
    if user is None:
        raise AuthenticationRequired("JWT subject is not a known user")
    return user


@locking.identity_loader
def load_identity() -> User | None:
    """Who is calling: the bearer JWT's user when one is sent (the reference-data page),
    else the user signed in with the session cookie, else anonymous."""
    user = user_from_bearer(request.headers.get("Authorization"))
    return user if user is not None else current_user()


@locking.authorizer
def authorize(action: str, resource: str, identity: Owner | None) -> bool:
    """Anyone may look at locks; signed-in users may lock, unlock and take over stealable
    locks; only an admin may take over a lock its holder made non-stealable."""
    if action == "view":
        return True
    if identity is None:
        return False
    if action == "steal":
        user = USERS.get(identity.id)
        return user is not None and user.admin
    return True
