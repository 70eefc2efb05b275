"""Fencing for records kept outside the lock store's database.

A lock's ``version`` grows at every new grant of its resource and never goes back, so a
record that remembers the highest version it was written under can refuse a write made
under an older grant: a writer whose lease ran out mid-request, after someone else took the
lock and saved. This is fencing, not atomicity (``docs/writes.rst``): the stale write is
refused when it reaches the record, whichever database the record lives in.

::

    from flask_locking import current_lock
    from flask_locking.fencing import FencedMixin

    class Document(FencedMixin, db.Model):
        id = db.Column(db.Integer, primary_key=True)
        body = db.Column(db.Text)

    @app.patch("/docs/<int:doc_id>")
    def save(doc_id):
        doc = db.get_or_404(Document, doc_id)
        doc.fence(current_lock)      # this write carries the lock's version
        doc.body = request.json["body"]
        db.session.commit()          # LockLost (412) if a newer grant wrote first

At every ORM ``UPDATE`` or ``DELETE`` of a fenced record, in the flush's own transaction and
before the ORM's statement, one compare-and-set ``UPDATE`` writes the carried version only
where the stored one is not newer; when no row matches, the flush fails with
:class:`~flask_locking.LockLost`. The compare-and-set also locks the record's row (SQLite: the
database) until the host's transaction ends, so two writers of one record are ordered by
their versions whatever the timing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Mapped, Mapper, declared_attr, mapped_column

from .errors import LockLost

if TYPE_CHECKING:
    from .lock import Lock


class FencedMixin:
    """Adds a ``lock_version`` column to an ORM model and refuses a write that carries an
    older fencing version than the record's.

    A write carries ``lock_version`` as set on the object: by :meth:`fence` (the version of
    the lock the write is made under) or, when not set, the version the object was loaded
    with. So a writer that loaded the record before someone else saved under a newer lock
    is refused too. Writes through Core statements (``session.execute(update(...))``) skip
    the ORM's events and are not fenced: use :func:`fenced_update` for those.
    """

    @declared_attr
    def lock_version(cls) -> Mapped[int]:
        """The highest lock ``version`` this record was written under (0: never)."""
        return mapped_column(sa.BigInteger, nullable=False, default=0, server_default="0")

    def fence(self, lock: Lock | None) -> None:
        """Make the next write of this record carry ``lock``'s version (typically
        :data:`~flask_locking.current_lock`). Raises :class:`~flask_locking.LockLost` when
        there is no verified lock: an unfenced write would defeat the point."""
        if not lock or lock.token is None:
            raise LockLost("There is no verified lock to fence this write with.")
        self.lock_version = lock.version


def fenced_update(table: sa.Table, version: int, *where: Any) -> sa.Update:
    """The compare-and-set ``UPDATE`` of the fencing recipe, for Core writes: add the new
    values with ``.values(...)``; it matches no row when the stored version is newer than
    ``version`` (check the result's ``rowcount``)."""
    column = table.c.lock_version
    return (
        sa.update(table)
        .where(*where, sa.func.coalesce(column, 0) <= version)
        .values({column.name: version})
    )


def _compare_and_set(mapper: Mapper[Any], connection: sa.Connection, target: Any) -> None:
    column = mapper.columns["lock_version"]
    version = target.lock_version
    version = int(version) if version is not None else 0
    identity = sa.inspect(target).identity
    if identity is None:  # never persisted: nothing stored to compare with
        return
    keys = [pk == value for pk, value in zip(mapper.primary_key, identity, strict=True)]
    # (rowcount is the number of rows the WHERE matched on every supported backend; the
    # MySQL drivers are opened with FOUND_ROWS)
    if connection.execute(fenced_update(column.table, version, *keys)).rowcount == 0:
        raise LockLost(
            f"{mapper.class_.__name__} {identity!r} was written under a newer lock than the "
            f"one this write carries (version {version}); reload before writing."
        )


@event.listens_for(FencedMixin, "before_update", propagate=True)
def _before_update(mapper: Mapper[Any], connection: sa.Connection, target: Any) -> None:
    _compare_and_set(mapper, connection, target)


@event.listens_for(FencedMixin, "before_delete", propagate=True)
def _before_delete(mapper: Mapper[Any], connection: sa.Connection, target: Any) -> None:
    _compare_and_set(mapper, connection, target)
