"""Reading and checking request bodies the same way in every dialect."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from flask import request

from ..errors import BodyTooLarge, InvalidInput, InvalidTimeout, NotJSON

FieldParser = Callable[[Any], Any]


def json_object(max_bytes: int) -> dict[str, Any]:
    """The request body as a JSON object; an empty body is ``{}``.

    Raises :class:`NotJSON` (415) for a body not declared ``application/json`` (or
    ``+json``), :class:`InvalidInput` (400) for malformed JSON or a non-object, and
    :class:`BodyTooLarge` (413) past ``max_bytes``.
    """
    current = request._get_current_object()  # type: ignore[attr-defined]
    length = current.content_length
    if length == 0 or (length is None and "wsgi.input_terminated" not in current.environ):
        # The common case (POST/DELETE without a body): no stream to build. Without a
        # length (no Content-Length, as curl -X POST and Werkzeug's test client send it,
        # or chunked) a server that does not terminate the input gives Werkzeug no body to
        # read either (its request.stream is then empty).
        _require_json_or_nothing()
        return {}
    if length is not None and length > max_bytes:
        raise BodyTooLarge(f"The request body is {length} bytes; at most {max_bytes} are accepted.")
    raw = current.stream.read(max_bytes + 1) if length is None else current.get_data(cache=True)
    if len(raw) > max_bytes:
        raise BodyTooLarge(f"The request body is larger than {max_bytes} bytes.")
    if not raw.strip():
        _require_json_or_nothing()
        return {}
    if not current.is_json:
        raise NotJSON(_NOT_JSON)
    try:
        text = raw.decode("utf-8")
        value = json.loads(text, parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise InvalidInput("The request body is not UTF-8 text.") from None
    except json.JSONDecodeError as error:
        raise InvalidInput(
            f"The request body is not valid JSON ({error.msg} at line {error.lineno}, "
            f"column {error.colno})."
        ) from None
    except InvalidInput:
        raise
    except ValueError:  # e.g. an integer longer than Python's int-conversion limit
        raise InvalidInput("The request body holds a number too long to read.") from None
    except RecursionError:
        raise InvalidInput("The request body nests JSON too deeply.") from None
    if not isinstance(value, dict):
        raise InvalidInput(
            f"The request body must be a JSON object such as {{\"timeout\": 600}}, "
            f"not a JSON {type(value).__name__ if value is not None else 'null'}."
        )
    return value


_NOT_JSON = (
    "Send the body as JSON, with Content-Type: application/json (or no body at all)."
)


#: ``Sec-Fetch-Site`` values of a request a page of the server's own origin made (or that
#: no page made: the user typed the URL); any other is a page of another origin's.
_OWN_SITE = frozenset({"same-origin", "none"})


def _require_json_or_nothing() -> None:
    """An empty body may come without a Content-Type, but not typed as something else, and
    not from a page of another origin.

    What a cross-site page can send without a CORS preflight is a form (urlencoded,
    multipart, ``text/plain``) or an untyped body, an empty one included (``fetch(url,
    {method: "POST"})`` sends neither body nor Content-Type); refusing all of them, even
    empty (a form without fields would lock with the defaults), keeps lock endpoints out of
    reach of cross-site requests that carry a user's cookies. The browser names the origin
    of its requests in ``Sec-Fetch-Site``; clients that are no browser (``curl -X POST``)
    send none and may leave an empty body untyped, and so may a ``PATCH`` or ``DELETE``
    (preflighted) of a page the host's CORS policy lets in.
    """
    current = request._get_current_object()  # type: ignore[attr-defined]
    if current.mimetype:
        if not current.is_json:
            raise NotJSON(_NOT_JSON)
    elif (
        current.method == "POST"  # the one "simple" method that writes: the others need a
        # CORS preflight, which the host's policy answers only for the origins it trusts
        and current.headers.get("Sec-Fetch-Site", "none").strip().lower() not in _OWN_SITE
    ):
        raise NotJSON(
            "A request from a page of another origin must send its body as JSON, with "
            "Content-Type: application/json (an empty body too: send {})."
        )


def _reject_constant(name: str) -> Any:
    raise InvalidInput(f"{name} is not a valid JSON number.")


def parse_fields(body: Mapping[str, Any], parsers: Mapping[str, FieldParser]) -> dict[str, Any]:
    """Check every field of ``body`` against ``parsers``; unknown fields are refused."""
    if not body:
        return {}  # no body at all, the common case
    unknown = sorted(set(body) - set(parsers))
    if unknown:
        accepted = ", ".join(sorted(parsers)) or "no fields"
        raise InvalidInput(
            f"Unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"this endpoint accepts: {accepted}."
        )
    return {name: parsers[name](value) for name, value in body.items()}


def boolean(name: str) -> FieldParser:
    """A parser accepting only JSON ``true``/``false``."""

    def parse(value: Any) -> bool:
        if not isinstance(value, bool):
            raise InvalidInput(f"{name} must be true or false, not {json.dumps(value)}.")
        return value

    return parse


def whole_seconds(max_timeout: float) -> FieldParser:
    """A parser for a wire timeout: a whole number of seconds, 1 ≤ t ≤ ``max_timeout``."""

    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidTimeout(
                f"timeout must be a whole number of seconds, not {json.dumps(value)}."
            )
        if isinstance(value, float) and not value.is_integer():
            raise InvalidTimeout(f"timeout must be a whole number of seconds, not {value}.")
        seconds = int(value)
        if not 1 <= seconds <= max_timeout:
            raise InvalidTimeout(
                f"timeout must be between 1 and {max_timeout:g} seconds, not "
                f"{seconds if seconds < 10**12 else 'a number that large'}."
            )
        return seconds

    return parse
