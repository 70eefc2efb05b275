"""The HTTP dialects. Each is a thin blueprint over the one engine; most are declared by a
route template (:class:`PathDialect`, see ``docs/dialect-howto.rst``)."""

from __future__ import annotations

from .base import REFUSAL_HEADER, Dialect, EnvelopeErrorFormat, ErrorFormat
from .content import ContentDialect
from .jobs import JobsDialect
from .path import PathDialect, Statuses
from .reference import ReferenceDialect

__all__ = [
    "REFUSAL_HEADER",
    "ContentDialect",
    "Dialect",
    "EnvelopeErrorFormat",
    "ErrorFormat",
    "JobsDialect",
    "PathDialect",
    "ReferenceDialect",
    "Statuses",
]
