"""Lock tokens: per-lock secrets at rest, tokens derived from them with a keyed HMAC.

The store keeps only a random per-lock secret. The token handed to the owner is
``HMAC(key, resource | version | secret)``, so a copy of the table alone opens nothing,
while the owner can still be shown its token again on a later read.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

#: Bytes of randomness in a per-lock secret (256 bits; SPEC asks for at least 128).
SECRET_BYTES = 32


def new_secret() -> str:
    """A fresh random per-lock secret, as stored in the table."""
    return secrets.token_hex(SECRET_BYTES)


def derive_token(key: bytes, resource: str, version: int, secret: str) -> str:
    """The token for one grant of one resource. URL- and header-safe, 43 characters."""
    message = f"{resource}\x00{version}\x00{secret}".encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def tokens_equal(presented: str, expected: str) -> bool:
    """Constant-time comparison of a presented token with the expected one."""
    return hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), expected.encode())


def parse_token_header(value: str | None) -> str | None:
    """The token in a ``Lock-Token`` header: a bare token or the WebDAV ``<token>`` form.

    Returns ``None`` when the header is absent or blank.
    """
    if value is None:
        return None
    value = value.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1].strip()
    return value or None
