"""A Flask route template read once: which keys it covers and how each is spelled.

``/companies/<int:companyID>/jobs/<int:jobID>`` under a prefix covers the key of one job
and every key below it, reading each variable with Werkzeug's own converter (so the guard
reads ``/companies/001/jobs/７`` as job 7 of company 1, as the host's ``<int:...>`` route
does), and writes the canonical spelling back (``/companies/1/jobs/7``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from werkzeug.routing import BaseConverter, Map, ValidationError, parse_converter_args
from werkzeug.routing.converters import (
    AnyConverter,
    FloatConverter,
    IntegerConverter,
    PathConverter,
    UUIDConverter,
)

from .base import NotFoundError, integer_segment

#: One ``<converter(args):name>`` of a template (Werkzeug's syntax).
_VARIABLE = re.compile(
    r"<(?:(?P<converter>[a-zA-Z_]\w*)(?:\((?P<args>.*?)\))?:)?(?P<name>[a-zA-Z_]\w*)>"
)
#: The converters a template may use by default: Werkzeug's.
_MAP = Map()


@dataclass(frozen=True)
class Variable:
    """One variable of a template, with the converter that reads it."""

    name: str
    converter: BaseConverter
    #: The converter's name in the template (``int``, ``uuid``, ...).
    kind: str = "default"

    @property
    def rule(self) -> str:
        """The variable in a lock endpoint's rule: read as text, checked by :meth:`parse`
        (so a bad value is a 404 in the dialect's format, not Flask's)."""
        if isinstance(self.converter, PathConverter):
            return f"<path:{self.name}>"
        return f"<{self.name}>"

    def parse(self, raw: str) -> Any:
        """The value of ``raw`` at a lock endpoint; :class:`NotFoundError` when it is not one.
        Integers are ASCII digits (at most 18, a ``-`` only when signed)."""
        converter = self.converter
        if isinstance(converter, IntegerConverter):
            number = integer_segment(raw, signed=converter.signed)
            if number is not None and _in_range(converter, number):
                return number
        elif re.fullmatch(converter.regex, raw):
            try:
                return converter.to_python(raw)
            except (ValidationError, ValueError, OverflowError):
                pass
        raise NotFoundError(f"{self.name} must be {self.described}, not {raw!r}.")

    @property
    def described(self) -> str:
        """What a value must be, in words."""
        converter = self.converter
        if isinstance(converter, IntegerConverter):
            # (the digit limit named: a longer id is refused, and its sender must know why)
            kind = "an integer" if converter.signed else "a whole number >= 0"
            return f"{kind} of at most 18 digits"
        if isinstance(converter, FloatConverter):
            return "a number"
        if isinstance(converter, UUIDConverter):
            return "a UUID"
        if self.kind in ("default", "string", "path"):
            return "a path" if isinstance(converter, PathConverter) else "a path segment"
        return f"a valid <{self.kind}> value"

    def schema(self) -> dict[str, Any]:
        """The variable's JSON schema, for the OpenAPI document."""
        converter = self.converter
        if isinstance(converter, IntegerConverter):
            schema: dict[str, Any] = {"type": "integer"}
            if not converter.signed:
                schema["minimum"] = 0
            return schema
        if isinstance(converter, FloatConverter):
            return {"type": "number"}
        if isinstance(converter, UUIDConverter):
            return {"type": "string", "format": "uuid"}
        if isinstance(converter, AnyConverter):
            return {"type": "string", "enum": sorted(converter.items)}
        return {"type": "string"}


def _in_range(converter: IntegerConverter, number: int) -> bool:
    return (converter.min is None or number >= converter.min) and (
        converter.max is None or number <= converter.max
    )


class RouteTemplate:
    """A route template under a URL prefix: matching, canonical keys, rules, OpenAPI paths.

    :param prefix: the dialect's URL prefix (normalised: ``""`` or ``/a/b``).
    :param template: Werkzeug rule syntax, e.g. ``/companies/<int:companyID>/jobs/<int:jobID>``.
    :param converters: converters besides Werkzeug's, by name (as ``app.url_map.converters``).
    """

    def __init__(
        self, prefix: str, template: str,
        converters: Mapping[str, type[BaseConverter]] | None = None,
    ) -> None:
        self.prefix = prefix
        self.template = template
        self.literals: list[str] = []
        self.variables: list[Variable] = []
        url_map = Map(converters=dict(converters)) if converters else _MAP
        end = 0
        for match in _VARIABLE.finditer(template):
            self.literals.append(template[end : match.start()])
            name = match["converter"] or "default"
            if name not in url_map.converters:
                raise ValueError(
                    f"The template {template!r} uses the converter {name!r}: not one of "
                    f"{', '.join(sorted(url_map.converters))} (declare your own in "
                    "the dialect's converters)."
                )
            args, kwargs = parse_converter_args(match["args"]) if match["args"] else ((), {})
            converter = url_map.converters[name](url_map, *args, **kwargs)
            self.variables.append(Variable(match["name"], converter, name))
            end = match.end()
        self.literals.append(template[end:])
        groups = [f"(?P<v{i}>{v.converter.regex})" for i, v in enumerate(self.variables)]
        pattern = re.escape(prefix) + self._fill(groups, re.escape) + "(?P<rest>/.*)?"
        self._pattern = re.compile(pattern, re.DOTALL)

    def match(self, key: str) -> tuple[list[Any], str] | None:
        """``(values, rest)`` when ``key`` is the template's resource or lies below it (read
        as the host's router reads it), else ``None``."""
        found = self._pattern.fullmatch(key)
        if found is None:
            return None
        values = []
        for i, variable in enumerate(self.variables):
            try:
                values.append(variable.converter.to_python(found[f"v{i}"]))
            except (ValidationError, ValueError, OverflowError):  # e.g. past int()'s digit limit
                return None
        return values, found["rest"] or ""

    def build(self, values: list[Any]) -> str:
        """The resource key of ``values``, spelled one way (``to_url``, unquoted)."""
        pairs = zip(self.variables, values, strict=True)
        spelled = [unquote(variable.converter.to_url(value)) for variable, value in pairs]
        return self.prefix + self._fill(spelled)

    def rule(self, suffix: str) -> str:
        """The Flask rule of the lock endpoint ``<template><suffix>``, variables as text."""
        return self.prefix + self._fill([variable.rule for variable in self.variables]) + suffix

    def openapi_path(self, suffix: str) -> str:
        """The OpenAPI path of the lock endpoint: ``{name}`` for each variable."""
        names = [f"{{{variable.name}}}" for variable in self.variables]
        return self.prefix + self._fill(names) + suffix

    def _fill(self, values: list[str], escape: Callable[[str], str] = str) -> str:
        """The template with its variables replaced by ``values`` (literals ``escape``-d)."""
        pairs = zip(self.literals, [*values, ""], strict=True)
        return "".join(escape(literal) + value for literal, value in pairs)
