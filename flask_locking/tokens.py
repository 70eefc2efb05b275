"""Lock tokens: per-lock secrets at rest, tokens derived from them with a keyed HMAC.

The store keeps only a random per-lock secret. The token handed to the owner is
``HMAC(key, resource | version | secret)``, so a copy of the table alone opens nothing,
while the owner can still be shown its token again on a later read.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import logging
import secrets
import threading
from collections.abc import Callable

log = logging.getLogger("flask_locking")

#: Bytes of randomness in a per-lock secret (256 bits; docs/locks.rst: at least 128).
SECRET_BYTES = 32

#: Standard base64 to its URL-safe alphabet (what ``base64.urlsafe_b64encode`` does).
_URLSAFE = bytes.maketrans(b"+/", b"-_")


class TokenKey:
    """The HMAC key tokens are derived with: a hash of the configured secret (never the raw
    ``SECRET_KEY``), or of a generated secret the lock store shares between processes.

    Derived once, on first use: ``shared_secret(candidate)`` stores ``candidate`` unless
    another process stored one first, and returns the one stored.
    """

    def __init__(
        self, configured: str | bytes | None, shared_secret: Callable[[str], str]
    ) -> None:
        self._configured = configured
        self._shared_secret = shared_secret
        self._key: bytes | None = None
        self._lock = threading.Lock()

    @property
    def value(self) -> bytes:
        """The key (read from the store the first time when none is configured)."""
        if self._key is None:
            with self._lock:
                if self._key is None:
                    material = self._configured
                    if not material:
                        log.warning(
                            "Neither LOCKING_SECRET_KEY nor SECRET_KEY is set: flask-locking "
                            "generated a token key and keeps it in the lock store. Set "
                            "LOCKING_SECRET_KEY so that a copy of the lock table alone "
                            "cannot be used to compute tokens."
                        )
                        material = self._shared_secret(secrets.token_hex(32))
                    if isinstance(material, str):
                        material = material.encode()
                    self._key = hashlib.sha256(b"flask-locking token key\x00" + material).digest()
        return self._key


def new_secret() -> str:
    """A fresh random per-lock secret, as stored in the table."""
    return secrets.token_hex(SECRET_BYTES)


def derive_token(key: bytes, resource: str, version: int, secret: str) -> str:
    """The token for one grant of one resource. URL- and header-safe, 43 characters."""
    message = f"{resource}\x00{version}\x00{secret}".encode()
    # hmac.digest: OpenSSL's one-shot HMAC, without the hmac.HMAC object around it.
    digest = hmac.digest(key, message, "sha256")
    return binascii.b2a_base64(digest, newline=False).rstrip(b"=").translate(
        _URLSAFE).decode("ascii")


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
