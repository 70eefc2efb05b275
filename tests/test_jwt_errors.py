"""Every way a bearer JWT can fail is a 401 in the dialect's format, never a 500.

PyJWT raises more than ``InvalidTokenError``: a key of the wrong kind for the token's
algorithm is an ``InvalidKeyError`` (``PyJWTError`` directly), a missing ``cryptography``
package an ``InvalidAlgorithmError``. Each is tried here on the reference dialect (whose
401 is the error envelope), and Hypothesis throws garbage tokens and headers at it.
(``MissingCryptographyError`` comes only from PyJWT's JWK classes, which ``decode`` does not
use.)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_reference_dialect import SECRET, add_reference_routes

LOCK_URL = "/api/v2/clients/5/reference/lock"
PRIVATE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_PEM = (
    PRIVATE_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: Any, payload: Any, key: bytes = b"any key") -> str:
    """A token with any header and payload, HMAC-signed with ``key`` (PyJWT's encoder
    refuses some of these, which is the point)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "alice", "exp": int(time.time()) + 3600, **extra}


@pytest.fixture
def rsa_app(make_app: Any) -> Flask:
    """RS256 with a PEM public key, HS256 also listed (a common misconfiguration)."""
    return add_reference_routes(
        make_app(
            identity=False, LOCKING_JWT_SECRET=PUBLIC_PEM, LOCKING_JWT_ALGORITHMS=["RS256", "HS256"]
        )
    )


@pytest.fixture
def hmac_app(make_app: Any) -> Flask:
    return add_reference_routes(make_app(identity=False, LOCKING_JWT_SECRET=SECRET))


def assert_401(response: Any) -> None:
    assert response.status_code == 401, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"status", "code", "message", "details"}
    assert (body["status"], body["code"], body["message"]) == (
        "error",
        401,
        "Authentication failed",
    )
    assert body["details"] and "Traceback" not in body["details"]
    assert response.headers["WWW-Authenticate"] == "Bearer"


def post(app: Flask, token: str) -> Any:
    return app.test_client().post(LOCK_URL, headers={"Authorization": f"Bearer {token}"})


def test_a_valid_rs256_token_is_accepted(rsa_app: Flask) -> None:
    token = jwt.encode(claims(), PRIVATE_KEY, algorithm="RS256")
    assert post(rsa_app, token).status_code == 201


def test_hs256_token_against_a_pem_key_is_401(rsa_app: Flask) -> None:
    # PyJWT: InvalidKeyError (an asymmetric key must not be used as an HMAC secret)
    response = post(rsa_app, forged({"alg": "HS256", "typ": "JWT"}, claims(), PUBLIC_PEM.encode()))
    assert_401(response)


def test_rs256_token_against_an_hmac_secret_is_401(hmac_app: Flask, make_app: Any) -> None:
    app = add_reference_routes(
        make_app(identity=False, LOCKING_JWT_SECRET=SECRET, LOCKING_JWT_ALGORITHMS=["RS256"])
    )
    assert_401(post(app, jwt.encode(claims(), PRIVATE_KEY, algorithm="RS256")))


@pytest.mark.parametrize(
    "token",
    [
        forged({"alg": "HS256"}, claims(nbf=int(time.time()) + 3600), SECRET.encode()),  # immature
        forged({"alg": "HS256"}, claims(iat="yesterday"), SECRET.encode()),  # InvalidIssuedAt
        forged({"alg": "none"}, claims(), SECRET.encode()),  # InvalidAlgorithmError
        forged({"alg": "HS512"}, claims(), SECRET.encode()),  # algorithm not allowed
        forged({"alg": ["HS256"]}, claims(), SECRET.encode()),  # alg not a string
        forged({"alg": {"x": 1}}, claims(), SECRET.encode()),
        forged({"alg": None}, claims(), SECRET.encode()),
        forged({"alg": "HS256", "kid": 7}, claims(), SECRET.encode()),
        forged({"alg": "HS256", "crit": "x"}, claims(), SECRET.encode()),
        forged({"alg": "HS256", "b64": False}, claims(), SECRET.encode()),
        forged(["HS256"], claims(), SECRET.encode()),  # header not an object
        forged({"alg": "HS256"}, ["alice"], SECRET.encode()),  # payload not an object
        forged({"alg": "HS256"}, claims(exp="soon"), SECRET.encode()),
        forged({"alg": "HS256"}, claims(sub=None), SECRET.encode()),
        forged({"alg": "HS256"}, claims(sub=["a"]), SECRET.encode()),
        forged({"alg": "HS256"}, claims(exp=float("inf")), SECRET.encode()),
        "a.b.c",
        "....",
        "ey.ey.ey",
        "é.é.é",
    ],
)
def test_each_pyjwt_failure_is_401(hmac_app: Flask, token: str) -> None:
    assert_401(post(hmac_app, token))


def test_rs256_without_cryptography_is_401(rsa_app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """PyJWT's own switch for "cryptography is not installed" (not a mock of the unit under
    test): RS256 is then unknown and decode raises InvalidAlgorithmError. PyJWT's
    MissingCryptographyError comes only from its JWK classes, which decode never uses."""
    import jwt.algorithms

    token = jwt.encode(claims(), PRIVATE_KEY, algorithm="RS256")
    monkeypatch.setattr(jwt.algorithms, "has_crypto", False)
    monkeypatch.setattr(
        jwt.api_jws._jws_global_obj, "_algorithms", jwt.algorithms.get_default_algorithms()
    )
    assert_401(post(rsa_app, token))


TOKEN_CHARS = st.characters(min_codepoint=33, max_codepoint=126)
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    token=st.one_of(
        st.text(TOKEN_CHARS, min_size=1, max_size=80),
        st.builds(
            lambda header, payload: forged(header, payload, SECRET.encode()),
            st.dictionaries(st.sampled_from(["alg", "typ", "kid", "crit", "jku", "b64"]), JSONISH)
            | JSONISH,
            st.builds(claims)
            | st.dictionaries(st.sampled_from(["sub", "exp", "nbf", "iat", "aud", "iss"]), JSONISH),
        ),
    ),
    which=st.sampled_from(["rsa", "hmac"]),
)
def test_garbage_tokens_are_401_never_500(
    rsa_app: Flask, hmac_app: Flask, token: str, which: str
) -> None:
    response = post(rsa_app if which == "rsa" else hmac_app, token)
    if response.status_code == 201:  # Hypothesis forged a valid token: fine
        return
    assert_401(response)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(header=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60))
def test_garbage_authorization_headers_are_401_never_500(rsa_app: Flask, header: str) -> None:
    response = rsa_app.test_client().post(LOCK_URL, headers={"Authorization": header})
    assert_401(response)
