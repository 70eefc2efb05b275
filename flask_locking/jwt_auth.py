"""Bearer JWT verification with PyJWT (the ``flask-locking[jwt]`` extra)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from flask import request

from .errors import AuthenticationRequired
from .lock import Owner

if TYPE_CHECKING:
    from .config import LockingConfig

log = logging.getLogger("flask_locking")


def bearer_token() -> str | None:
    """The raw token of an ``Authorization: Bearer <token>`` header, if any."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def identity_from_jwt(config: LockingConfig) -> Owner:
    """Verify the request's bearer JWT and return its ``sub`` as the owner.

    Raises :class:`AuthenticationRequired` with a client-facing detail when the token is
    missing, malformed, badly signed, expired, or has no subject: every error PyJWT can
    raise (its root ``PyJWTError``) is a 401, never a 500.
    """
    token = bearer_token()
    if token is None:
        raise AuthenticationRequired("JWT token not found")
    claims = decode(token, config)
    subject = claims.get("sub")
    if not isinstance(subject, (str, int)) or str(subject) == "":
        raise AuthenticationRequired("JWT token has no subject (sub) claim")
    name = claims.get("name") or claims.get("preferred_username") or str(subject)
    return Owner(id=str(subject), name=str(name), url=None)


def decode(token: str, config: LockingConfig) -> dict[str, Any]:
    """Decode and verify ``token`` with the configured secret, algorithms, audience, issuer."""
    try:
        import jwt
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "JWT authentication needs PyJWT: pip install 'flask-locking[jwt]'."
        ) from error
    if not config.jwt_secret:
        raise RuntimeError("Set LOCKING_JWT_SECRET to verify bearer tokens.")
    options: Any = {"require": ["sub", "exp"]}
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            config.jwt_secret,
            algorithms=list(config.jwt_algorithms),
            audience=config.jwt_audience,
            issuer=config.jwt_issuer,
            leeway=config.jwt_leeway,
            options=options,
        )
    except jwt.ExpiredSignatureError:
        raise AuthenticationRequired("JWT token has expired") from None
    except jwt.InvalidSignatureError:
        raise AuthenticationRequired("JWT signature is invalid") from None
    except jwt.MissingRequiredClaimError as error:
        raise AuthenticationRequired(f"JWT token is missing the {error.claim!r} claim") from None
    except jwt.InvalidAudienceError:
        raise AuthenticationRequired("JWT audience is not accepted") from None
    except jwt.InvalidIssuerError:
        raise AuthenticationRequired("JWT issuer is not accepted") from None
    except jwt.InvalidTokenError:
        raise AuthenticationRequired("JWT token is malformed or invalid") from None
    except jwt.PyJWTError as error:
        # Not the token's fault alone: a key of the wrong kind for the token's algorithm
        # (InvalidKeyError: an HS256 token against a PEM key), or cryptography missing for
        # RS/ES algorithms. Still the caller is not authenticated: 401, and a log line
        # for the operator.
        log.warning("flask-locking: a bearer JWT could not be verified: %r", error)
        raise AuthenticationRequired(
            "JWT token cannot be verified with the configured key and algorithms"
        ) from None
    return claims
