"""Resource keys: normalised URL paths, and the keys that can cover a path.

A key is a normalised path (``/docs/1``), optionally preceded by a *namespace* in square
brackets (``[acme.example.com]/docs/1``, ``[/tenant_a]/docs/1``): the host or subdomain and
the mount point (``SCRIPT_NAME``) a tenant's requests arrive on (see :mod:`.keys`). A path
always starts with ``/``, so no path can spell a namespaced key, and ``[`` sorts after ``0``:
the keys below the root ``/`` (the range ``("/", "0")``) never include another namespace.
"""

from __future__ import annotations

import re

from .errors import InvalidResource

#: Longest resource key accepted (characters). Keeps the primary key indexable on MySQL.
MAX_RESOURCE_LENGTH = 512

# The control characters no key may hold (C0 and DEL), found in one regex scan.
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def normalize(path: str, *, strict: bool = True) -> str:
    """Return the resource key for ``path``: a leading slash, no trailing slash, no empty
    segments.

    With ``strict`` (lock endpoints and the Python API), ``.``/``..`` segments, control
    characters and over-long keys raise :class:`InvalidResource`. Without it (the guard),
    dot segments are resolved the way a browser would, so ``/a/../b`` is checked as ``/b``.
    """
    if not isinstance(path, str):
        raise InvalidResource("A resource must be a URL path string.")
    space, path = split_namespace(path)
    if strict and space == "[]":
        # namespace("") is the default namespace, spelled with no brackets at all: "[]/a"
        # would be a key that no request is ever checked against.
        raise InvalidResource(
            "The namespace in square brackets is empty; leave the brackets out for the"
            " default namespace."
        )
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "" or (segment == "." and not strict):
            continue
        if segment in (".", ".."):
            if strict:
                raise InvalidResource(
                    f"The path {path!r} has a {segment!r} segment; use a plain path."
                )
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    key = space + "/" + "/".join(segments)
    if strict:
        if len(key) > MAX_RESOURCE_LENGTH:
            raise InvalidResource(
                f"The path is {len(key)} characters long; "
                f"at most {MAX_RESOURCE_LENGTH} can be locked."
            )
        if _CONTROL.search(key):
            raise InvalidResource("The path contains control characters.")
        if not _is_utf8(key):
            raise InvalidResource("The path is not valid Unicode text (lone surrogates).")
        if " /" in key + "/":
            # MySQL/MariaDB compare keys ignoring trailing spaces ("/a " = "/a"), so such
            # keys are refused on every backend rather than mean different things.
            raise InvalidResource(
                f"The path {path!r} has a segment ending in a space; such paths cannot be locked."
            )
    return key


def is_lockable(key: str) -> bool:
    """True when the normalised ``key`` could hold a lock: what strict :func:`normalize`
    accepts. The guard looks up only such keys (a NUL byte would upset PostgreSQL)."""
    return (
        len(key) <= MAX_RESOURCE_LENGTH
        and not _CONTROL.search(key)
        and " /" not in key + "/"
        and _is_utf8(key)
    )


def _is_utf8(text: str) -> bool:
    """False for strings no database can store (lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def namespace(text: str) -> str:
    """The key prefix of the namespace ``text`` (a host and/or a mount point); ``""`` for
    the default namespace. ``%`` and ``]`` are percent-encoded, so the prefix ends at the
    first ``]``."""
    if not text:
        return ""
    return "[" + text.replace("%", "%25").replace("]", "%5D") + "]"


def split_namespace(key: str) -> tuple[str, str]:
    """``(namespace prefix, path)`` of a key: ``[h]/a`` → ``("[h]", "/a")``."""
    if key.startswith("["):
        end = key.find("]")
        if end != -1:
            return key[: end + 1], key[end + 1 :] or "/"
    return "", key


def ancestors(key: str) -> list[str]:
    """The proper ancestors of a normalised key that could hold a lock, root first:
    ``/a/b`` → ``["/", "/a"]``; ``[h]/a/b`` → ``["[h]/", "[h]/a"]``.

    Only prefixes up to :data:`MAX_RESOURCE_LENGTH` are built (no longer key can be locked),
    so a huge path costs no more than a short one.
    """
    space, path = split_namespace(key)
    if path == "/":
        return []
    result = [space + "/"]
    limit = MAX_RESOURCE_LENGTH - len(space)
    position = path.find("/", 1)
    while 0 < position <= limit:
        result.append(space + path[:position])
        position = path.find("/", position + 1)
    return result


def descendant_bounds(key: str) -> tuple[str, str]:
    """An exclusive ``(low, high)`` range of keys strictly below ``key`` in byte order.

    Every descendant starts with ``key + "/"``; ``"0"`` is the character right after ``"/"``,
    so the range ``(key + "/", key + "0")`` is exactly the descendants and an index can serve it.
    """
    space, path = split_namespace(key)
    base = space + ("" if path == "/" else path)
    return base + "/", base + "0"


def is_within(key: str, ancestor: str) -> bool:
    """True when ``key`` is ``ancestor`` or lies below it (in the same namespace)."""
    space, path = split_namespace(key)
    above_space, above = split_namespace(ancestor)
    return space == above_space and (
        path == above or above == "/" or path.startswith(above + "/")
    )
