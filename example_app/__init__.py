"""A small collaborative editor that shows every flask-locking feature.

Run it with ``flask --app example_app run`` (the SQLite database is created and seeded in
the instance folder on first start; ``flask --app example_app init-db`` starts it afresh),
then sign in as Alice in one browser and as Bob in another.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import click
from flask import Flask

from .activity import connect_signals
from .csrf import init_csrf
from .data import seed
from .extensions import db, locking

__all__ = ["create_app", "db", "locking"]


def create_app(
    config: Mapping[str, Any] | None = None, *, instance_path: str | None = None
) -> Flask:
    """Build the example app.

    :param config: overrides of the defaults below (tests pass a short lock timeout).
    :param instance_path: where the SQLite file lives (default: Flask's instance folder,
        ``instance/`` next to the package).
    """
    app = Flask(__name__, instance_path=instance_path)
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.update(
        # Demo values: a real deployment sets its own secrets in the environment.
        SECRET_KEY="example-app-not-a-secret",
        SQLALCHEMY_DATABASE_URI="sqlite:///" + os.path.join(app.instance_path, "example.sqlite3"),
        SESSION_COOKIE_SAMESITE="Lax",
        # Locks last 10 minutes unless refreshed; the editor refreshes every minute.
        LOCKING_DEFAULT_TIMEOUT=600,
        # "plone" answers @lock as Plone does, for Volto-style clients
        # (EXAMPLE_LOCKING_CONTENT_COMPAT=plone flask --app example_app run).
        LOCKING_CONTENT_COMPAT="strict",
        # Verifies the demo bearer JWTs that the reference-data page mints (HS256).
        LOCKING_JWT_SECRET="example-app-jwt-secret-not-a-secret",
        #: Seconds between the editor's lock refreshes (default: a third of the timeout,
        #: at most 60).
        EXAMPLE_HEARTBEAT_SECONDS=None,
        #: Create the tables and the demo data when the database is empty.
        EXAMPLE_AUTO_INIT=True,
    )
    app.config.from_prefixed_env("EXAMPLE")  # e.g. EXAMPLE_LOCKING_DEFAULT_TIMEOUT=60
    if config:
        app.config.update(config)

    db.init_app(app)
    # The lock table goes on the host's metadata and database; lock operations still run
    # in their own short transactions, never in db.session.
    locking.init_app(app)
    from . import users  # noqa: F401 - registers the identity loader and the authorizer
    from .views import bp  # also registers @locking.job_exists

    init_csrf(app, bp)  # the demo's HTML forms carry a CSRF token
    app.register_blueprint(bp)
    connect_signals(app)

    @app.cli.command("init-db")
    @click.option("--keep", is_flag=True, help="Keep existing data; only create what is missing.")
    def init_db_command(keep: bool) -> None:
        """Create the tables (documents, jobs, clients, activity and locks) and demo data."""
        with app.app_context():
            init_db(drop=not keep)
        click.echo(f"Initialised {app.config['SQLALCHEMY_DATABASE_URI']}")

    if app.config["EXAMPLE_AUTO_INIT"]:
        with app.app_context():
            init_db(drop=False)
    return app


def init_db(*, drop: bool) -> None:
    """Create every table on ``db`` (the lock table included) and seed an empty database."""
    if drop:
        db.drop_all()
    db.create_all()
    seed()
