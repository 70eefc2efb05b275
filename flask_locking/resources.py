"""Resource keys: normalised URL paths, and the keys that can cover a path."""

from __future__ import annotations

from .errors import InvalidResource

#: Longest resource key accepted (characters). Keeps the primary key indexable on MySQL.
MAX_RESOURCE_LENGTH = 512


def normalize(path: str, *, strict: bool = True) -> str:
    """Return the resource key for ``path``: a leading slash, no trailing slash, no empty
    segments.

    With ``strict`` (lock endpoints and the Python API), ``.``/``..`` segments, control
    characters and over-long keys raise :class:`InvalidResource`. Without it (the guard),
    dot segments are resolved the way a browser would, so ``/a/../b`` is checked as ``/b``.
    """
    if not isinstance(path, str):
        raise InvalidResource("A resource must be a URL path string.")
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
    key = "/" + "/".join(segments)
    if strict:
        if len(key) > MAX_RESOURCE_LENGTH:
            raise InvalidResource(
                f"The path is {len(key)} characters long; at most {MAX_RESOURCE_LENGTH} can be locked."
            )
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in key):
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
        and not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in key)
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


def ancestors(key: str) -> list[str]:
    """The proper ancestors of a normalised key, root first: ``/a/b`` → ``["/", "/a"]``."""
    if key == "/":
        return []
    result = ["/"]
    position = key.find("/", 1)
    while position != -1:
        result.append(key[:position])
        position = key.find("/", position + 1)
    return result


def descendant_bounds(key: str) -> tuple[str, str]:
    """An exclusive ``(low, high)`` range of keys strictly below ``key`` in byte order.

    Every descendant starts with ``key + "/"``; ``"0"`` is the character right after ``"/"``,
    so the range ``(key + "/", key + "0")`` is exactly the descendants and an index can serve it.
    """
    base = "" if key == "/" else key
    return base + "/", base + "0"


def is_within(key: str, ancestor: str) -> bool:
    """True when ``key`` is ``ancestor`` or lies below it."""
    return key == ancestor or ancestor == "/" or key.startswith(ancestor + "/")
