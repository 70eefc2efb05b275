"""The host app's own tables. Locks are *not* here: flask-locking owns its table."""

from __future__ import annotations

import time

from sqlalchemy import Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .extensions import db


def now() -> float:
    """Epoch seconds: the app stores instants as numbers, like flask-locking's lock JSON."""
    return time.time()


class Document(db.Model):  # type: ignore[name-defined,misc]
    """A wiki page, addressed (and locked) at ``/docs/<slug>``."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="")
    #: +1 at every save; shown so people can see that a refused save changed nothing.
    revision: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[float] = mapped_column(Float, default=now)
    updated_by: Mapped[str | None] = mapped_column(String(80), nullable=True)
    #: The fencing ``version`` of the lock the last save was made under.
    lock_version: Mapped[int | None] = mapped_column(Integer, nullable=True)

    @property
    def path(self) -> str:
        return f"/docs/{self.slug}"

    def to_json(self) -> dict[str, object]:
        return {
            "slug": self.slug,
            "title": self.title,
            "body": self.body,
            "revision": self.revision,
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
            "lock_version": self.lock_version,
        }


class Job(db.Model):  # type: ignore[name-defined,misc]
    """A job of a company, locked through ``/api/v1.0/companies/{c}/jobs/{j}/lock/``."""

    company_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(40), default="open")
    notes: Mapped[str] = mapped_column(Text, default="")
    updated_by: Mapped[str | None] = mapped_column(String(80), nullable=True)

    @property
    def path(self) -> str:
        return f"/api/v1.0/companies/{self.company_id}/jobs/{self.id}"

    def to_json(self) -> dict[str, object]:
        return {
            "company_id": self.company_id,
            "id": self.id,
            "title": self.title,
            "status": self.status,
            "notes": self.notes,
            "updated_by": self.updated_by,
        }


class Client(db.Model):  # type: ignore[name-defined,misc]
    """A client whose reference data is locked through ``/api/v2/clients/{id}/reference/lock``."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(200))
    reference: Mapped[str] = mapped_column(Text, default="")
    updated_by: Mapped[str | None] = mapped_column(String(80), nullable=True)

    @property
    def path(self) -> str:
        return f"/api/v2/clients/{self.id}/reference"

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "reference": self.reference,
            "updated_by": self.updated_by,
        }


class Activity(db.Model):  # type: ignore[name-defined,misc]
    """What happened to locks, recorded from flask-locking's signals."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[float] = mapped_column(Float, default=now)
    event: Mapped[str] = mapped_column(String(20))
    resource: Mapped[str] = mapped_column(String(512), index=True)
    who: Mapped[str | None] = mapped_column(String(80), nullable=True)
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
