"""Reading and checking request bodies the same way in every dialect."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from flask import request

from ..errors import InvalidInput, InvalidTimeout


class BodyTooLarge(InvalidInput):
    """The request body is larger than ``LOCKING_MAX_BODY_BYTES``."""


FieldParser = Callable[[Any], Any]


def json_object(max_bytes: int) -> dict[str, Any]:
    """The request body as a JSON object; an empty body is ``{}``.

    Raises :class:`InvalidInput` (400) for malformed JSON or a non-object, and
    :class:`BodyTooLarge` (413) past ``max_bytes``.
    """
    length = request.content_length
    if length == 0:
        return {}  # the common case (POST/DELETE without a body): no stream to build
    if length is not None and length > max_bytes:
        raise BodyTooLarge(f"The request body is {length} bytes; at most {max_bytes} are accepted.")
    raw = request.stream.read(max_bytes + 1) if length is None else request.get_data(cache=True)
    if len(raw) > max_bytes:
        raise BodyTooLarge(f"The request body is larger than {max_bytes} bytes.")
    if not raw.strip():
        return {}
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


def _reject_constant(name: str) -> Any:
    raise InvalidInput(f"{name} is not a valid JSON number.")


def parse_fields(body: Mapping[str, Any], parsers: Mapping[str, FieldParser]) -> dict[str, Any]:
    """Check every field of ``body`` against ``parsers``; unknown fields are refused."""
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
