"""The HTTP dialects. Each is a thin blueprint over the one engine."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Dialect, EnvelopeErrorFormat, ErrorFormat
from .content import ContentDialect
from .jobs import JobsDialect
from .reference import ReferenceDialect

if TYPE_CHECKING:
    from ..state import LockingState

__all__ = [
    "ContentDialect",
    "Dialect",
    "EnvelopeErrorFormat",
    "ErrorFormat",
    "JobsDialect",
    "ReferenceDialect",
    "build_dialects",
]


def build_dialects(state: LockingState) -> list[Dialect]:
    """The dialects switched on in the app's config (most specific path scheme first)."""
    config = state.config
    dialects: list[Dialect] = []
    if config.jobs_enabled:
        dialects.append(JobsDialect(state, config.jobs_url_prefix))
    if config.reference_enabled:
        dialects.append(ReferenceDialect(state, config.reference_url_prefix))
    if config.content_enabled:
        dialects.append(ContentDialect(state, config.content_url_prefix))
    return dialects
