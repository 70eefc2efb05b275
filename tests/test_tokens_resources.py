"""Tokens and resource keys (docs/locks.rst): the small pure functions under everything."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from flask_locking import InvalidResource, Locking
from flask_locking.resources import (
    MAX_RESOURCE_LENGTH,
    ancestors,
    descendant_bounds,
    is_lockable,
    is_within,
    normalize,
)
from flask_locking.tokens import derive_token, new_secret, parse_token_header, tokens_equal

KEY = b"k" * 32


# -- tokens ----------------------------------------------------------------------------


def test_secrets_are_random_and_long() -> None:
    secrets = {new_secret() for _ in range(200)}
    assert len(secrets) == 200
    for secret in secrets:
        assert len(secret) >= 32  # ≥ 128 bits as hex
        int(secret, 16)


def test_token_is_deterministic_and_depends_on_every_input() -> None:
    secret = new_secret()
    token = derive_token(KEY, "/docs/1", 3, secret)
    assert token == derive_token(KEY, "/docs/1", 3, secret)
    assert len(token) >= 22
    assert token.isascii() and all(c.isalnum() or c in "-_" for c in token)
    others = {
        derive_token(b"other-key", "/docs/1", 3, secret),
        derive_token(KEY, "/docs/2", 3, secret),
        derive_token(KEY, "/docs/1", 4, secret),
        derive_token(KEY, "/docs/1", 3, new_secret()),
    }
    assert token not in others and len(others) == 4
    assert secret not in token


def test_token_fields_cannot_be_shifted_into_each_other() -> None:
    # resource "/a" + version 12 must not collide with resource "/a1" + version 2.
    assert derive_token(KEY, "/a", 12, "s") != derive_token(KEY, "/a1", 2, "s")


def test_tokens_equal() -> None:
    token = derive_token(KEY, "/a", 1, "s")
    assert tokens_equal(token, token)
    assert not tokens_equal(token[:-1], token)
    assert not tokens_equal(token + "x", token)
    assert not tokens_equal("", token)
    assert not tokens_equal("é" * len(token), token)
    assert not tokens_equal("\udcff", token)  # lone surrogate: no crash


@pytest.mark.parametrize(
    "header, expected",
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("<>", None),
        ("< >", None),
        ("abc", "abc"),
        ("<abc>", "abc"),
        (" <abc> ", "abc"),
        ("< abc >", "abc"),
        ("<abc", "<abc"),
        ("abc>", "abc>"),
    ],
)
def test_parse_token_header(header: str | None, expected: str | None) -> None:
    assert parse_token_header(header) == expected


# -- resource keys -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, key",
    [
        ("/docs/1", "/docs/1"),
        ("docs/1", "/docs/1"),
        ("/docs/1/", "/docs/1"),
        ("//docs///1//", "/docs/1"),
        ("/", "/"),
        ("", "/"),
        ("///", "/"),
        ("/Docs/1", "/Docs/1"),
        ("/été/x y", "/été/x y"),
        ("/a/@lock", "/a/@lock"),
        ("/a/...", "/a/..."),
        ("/a/.b", "/a/.b"),
    ],
)
def test_normalize(path: str, key: str) -> None:
    assert normalize(path) == key
    assert normalize(path, strict=False) == key


@pytest.mark.parametrize(
    "path, resolved",
    [("/a/../b", "/b"), ("/a/./b", "/a/b"), ("/../../a", "/a"), ("/a/b/..", "/a"), ("/..", "/")],
)
def test_dot_segments_refused_strictly_and_resolved_by_the_guard(path: str, resolved: str) -> None:
    with pytest.raises(InvalidResource, match="segment"):
        normalize(path)
    assert normalize(path, strict=False) == resolved


def test_length_limit() -> None:
    longest = "/" + "a" * (MAX_RESOURCE_LENGTH - 1)
    assert normalize(longest) == longest
    with pytest.raises(InvalidResource, match=str(MAX_RESOURCE_LENGTH)):
        normalize(longest + "a")
    # Trailing slashes do not count against the limit.
    assert normalize(longest + "///") == longest


@pytest.mark.parametrize("char", ["\x00", "\x01", "\n", "\r", "\t", "\x1f", "\x7f"])
def test_control_characters_refused(char: str) -> None:
    with pytest.raises(InvalidResource, match="control"):
        normalize(f"/a{char}b")


@pytest.mark.parametrize("value", [None, 1, b"/a", ["/a"]])
def test_non_strings_refused(value: object) -> None:
    with pytest.raises(InvalidResource):
        normalize(value)  # type: ignore[arg-type]


def test_ancestors() -> None:
    assert ancestors("/") == []
    assert ancestors("/a") == ["/"]
    assert ancestors("/a/b/c") == ["/", "/a", "/a/b"]


@pytest.mark.parametrize(
    "key, inside, outside",
    [
        ("/a", ["/a/b", "/a/b/c", "/a/-", "/a/ ", "/a/~"], ["/a", "/ab", "/a0", "/a-b", "/b", "/"]),
        ("/", ["/a", "/a/b", "/0"], ["/"]),
    ],
)
def test_descendant_bounds_are_exactly_the_keys_below(
    key: str, inside: list[str], outside: list[str]
) -> None:
    low, high = descendant_bounds(key)

    def below(candidate: str) -> bool:
        return low < candidate < high

    for candidate in inside:
        assert below(candidate), candidate
        assert is_within(candidate, key)
    for candidate in outside:
        assert not below(candidate), candidate


def test_is_within() -> None:
    assert is_within("/a", "/a")
    assert is_within("/a/b", "/a")
    assert is_within("/anything", "/")
    assert not is_within("/ab", "/a")
    assert not is_within("/a", "/a/b")


@pytest.mark.parametrize("path", ["/a ", "/a /b", "/a/b  ", "/ ", "/a/ /b"])
def test_segments_ending_in_a_space_are_refused(path: str) -> None:
    # MySQL/MariaDB would compare "/a " equal to "/a": refused everywhere instead.
    with pytest.raises(InvalidResource, match="space"):
        normalize(path)
    assert not is_lockable(normalize(path, strict=False))


def test_spaces_inside_segments_are_fine() -> None:
    for path in ("/a b", "/ a/b", "/a/ b c"):
        key = normalize(path)
        assert is_lockable(key)
        assert all(is_lockable(a) for a in ancestors(key))


def test_lone_surrogates_are_refused() -> None:
    with pytest.raises(InvalidResource, match="Unicode"):
        normalize("/a\ud800")
    assert not is_lockable("/a\ud800")
    assert normalize("/a\ud800", strict=False) == "/a\ud800"  # the guard just won't look it up


@pytest.mark.parametrize("key", ["[]", "[]/", "[]/docs/1", "[]docs"])
def test_an_empty_namespace_is_refused(key: str) -> None:
    # The default namespace has no brackets: "[]/docs/1" would be a key that no request is
    # ever checked against, so a lock on it would guard nothing.
    with pytest.raises(InvalidResource, match="namespace"):
        normalize(key)
    assert normalize(key, strict=False).startswith("[]")  # the guard only looks it up


def test_an_empty_namespace_cannot_be_locked(tmp_path: Any) -> None:
    app = Flask(__name__)
    app.config["LOCKING_DATABASE_URI"] = f"sqlite:///{tmp_path / 'locks.db'}"
    locking = Locking(app)
    with app.app_context(), pytest.raises(InvalidResource, match="namespace"):
        locking.acquire("[]")
