"""The extension objects, created once and set up per app in :func:`example_app.create_app`."""

from __future__ import annotations

from flask_sqlalchemy import SQLAlchemy

from flask_locking import Locking

#: The host's database: documents, jobs, clients and the activity log. With ``db=db`` the
#: lock table lives here too (same SQLite file, visible to the host's migrations).
db = SQLAlchemy()

#: Locks for every page of the app. ``locking.init_app(app)`` runs in ``create_app``.
locking = Locking(db=db)
