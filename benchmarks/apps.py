"""The apps under test: the same host routes with and without flask-locking, a bare Flask
route pair, and a hand-written route over a raw SQLite upsert (the storage limit)."""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
from typing import Any

from flask import Flask, jsonify, request

from flask_locking import Locking, current_lock


def add_host_routes(app: Flask) -> None:
    """The host's own routes: identical in every app that is compared."""

    @app.route("/docs/<doc_id>", methods=["GET", "PATCH"])
    def document(doc_id: str) -> Any:
        return jsonify(id=doc_id, method=request.method)

    @app.post("/bare/<doc_id>/lock")
    def bare_lock(doc_id: str) -> Any:
        # "does nothing": the cheapest route that still answers JSON like a lock endpoint
        return jsonify(locked=True, resource=doc_id)

    @app.delete("/bare/<doc_id>/lock")
    def bare_unlock(doc_id: str) -> Any:
        return jsonify(locked=False, stealable=True)

    @app.get("/fenced/<doc_id>")
    def fenced(doc_id: str) -> Any:  # touches current_lock the way a fencing view would
        return jsonify(version=current_lock.version if current_lock else None)


def plain_app() -> Flask:
    """The host app without the extension."""
    app = Flask("bench_plain")
    app.config.update(SECRET_KEY="bench-secret")
    add_host_routes(app)
    return app


def locking_app(database_uri: str, table_name: str = "bench_locks", **config: Any) -> Flask:
    """The same host app with :class:`Locking` and an ``X-User`` identity loader."""
    app = Flask("bench_locking")
    app.config.update(
        SECRET_KEY="bench-secret",
        LOCKING_DATABASE_URI=database_uri,
        LOCKING_TABLE_NAME=table_name,
        **config,
    )
    add_host_routes(app)
    locking = Locking(app)

    @locking.identity_loader
    def load_identity() -> str | None:
        return request.headers.get("X-User")

    return app


#: The raw schema: what a hand-written lock needs at the very least.
RAW_SCHEMA = """
CREATE TABLE IF NOT EXISTS raw_locks (
    resource TEXT PRIMARY KEY, secret TEXT NOT NULL, owner TEXT NOT NULL,
    timeout_ms INTEGER NOT NULL, locked_at_ms INTEGER NOT NULL, version INTEGER NOT NULL)
"""
RAW_NOW = "CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)"
RAW_UPSERT = f"""
INSERT INTO raw_locks (resource, secret, owner, timeout_ms, locked_at_ms, version)
VALUES (?1, ?2, ?3, ?4, {RAW_NOW}, 1)
ON CONFLICT (resource) DO UPDATE SET
    secret = CASE WHEN raw_locks.locked_at_ms + raw_locks.timeout_ms <= excluded.locked_at_ms
                  THEN excluded.secret ELSE raw_locks.secret END,
    version = CASE WHEN raw_locks.locked_at_ms + raw_locks.timeout_ms <= excluded.locked_at_ms
                   THEN raw_locks.version + 1 ELSE raw_locks.version END,
    owner = excluded.owner, timeout_ms = excluded.timeout_ms,
    locked_at_ms = excluded.locked_at_ms
WHERE raw_locks.locked_at_ms + raw_locks.timeout_ms <= excluded.locked_at_ms
   OR raw_locks.owner = excluded.owner
RETURNING resource, secret, version, locked_at_ms, timeout_ms
"""
RAW_RELEASE = (
    "UPDATE raw_locks SET timeout_ms = 0, secret = '' WHERE resource = ?1 AND secret = ?2"
    f" AND locked_at_ms + timeout_ms > {RAW_NOW}"
)


def raw_sqlite_app(path: str) -> Flask:
    """Hand-written ``@lock`` POST/DELETE over one SQLite upsert: the storage limit.

    No validation, no identity, no HMAC, no signals: one statement per request on a kept
    connection in autocommit mode, WAL and ``synchronous=NORMAL`` like the real store.
    """
    app = Flask("bench_raw")
    local = threading.local()

    def connection() -> sqlite3.Connection:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(RAW_SCHEMA)
            local.conn = conn
        return conn

    @app.post("/raw/<doc_id>/@lock")
    def raw_lock(doc_id: str) -> Any:
        owner = request.headers.get("X-User") or "anonymous"
        row = connection().execute(
            RAW_UPSERT, ("/docs/" + doc_id, secrets.token_hex(32), owner, 600_000)
        ).fetchone()
        if row is None:
            return jsonify(error={"type": "Conflict", "message": "locked"}), 409
        response = jsonify(locked=True, resource=row[0], version=row[2], token=row[1])
        response.headers["Lock-Token"] = row[1]
        return response

    @app.delete("/raw/<doc_id>/@lock")
    def raw_unlock(doc_id: str) -> Any:
        token = request.headers.get("Lock-Token", "")
        connection().execute(RAW_RELEASE, ("/docs/" + doc_id, token))
        return jsonify(locked=False, stealable=True)

    return app


def server_app() -> Flask:
    """The app gunicorn serves (``benchmarks.apps:server_app()``), configured from env:
    the locking app plus ``POST /raw/<id>/lock``, one upsert + commit over the raw driver
    of the same database (the storage limit of the real-server section)."""
    uri = os.environ["BENCH_DATABASE_URI"]
    table = os.environ.get("LOCKING_TABLE_NAME", "bench_locks")
    app = locking_app(uri, table)
    add_raw_driver_route(app, uri, table + "_raw")
    return app


#: The raw-driver table (PostgreSQL, MariaDB) and one upsert per backend: a new grant when
#: the old one has expired, as flask-locking's upsert decides, without its overlap check,
#: identity, HMAC or event.
RAW_DRIVER_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS {t} (resource VARCHAR(512) PRIMARY KEY, secret TEXT NOT NULL,"
    " owner TEXT NOT NULL, timeout_ms BIGINT NOT NULL, locked_at_ms BIGINT NOT NULL,"
    " version BIGINT NOT NULL)"
)
RAW_DRIVER_UPSERT = {
    "postgresql": (
        "INSERT INTO {t} VALUES (%s, %s, %s, %s, (extract(epoch FROM clock_timestamp()) * 1000)"
        "::bigint, 1) ON CONFLICT (resource) DO UPDATE SET secret = excluded.secret, version ="
        " {t}.version + 1, owner = excluded.owner, locked_at_ms = excluded.locked_at_ms WHERE"
        " {t}.locked_at_ms + {t}.timeout_ms <= excluded.locked_at_ms RETURNING version"
    ),
    "mysql": (
        "INSERT INTO {t} VALUES (%s, %s, %s, %s, TIMESTAMPDIFF(MICROSECOND, '1970-01-01',"
        " UTC_TIMESTAMP(3)) DIV 1000, 1) ON DUPLICATE KEY UPDATE version = IF(locked_at_ms +"
        " timeout_ms <= VALUES(locked_at_ms), version + 1, version)"
    ),
}


def add_raw_driver_route(app: Flask, uri: str, table: str) -> None:
    """``POST /raw/<id>/lock``: one upsert + commit on a connection kept per thread
    (``sqlite3``, psycopg or PyMySQL), made anew in a forked worker."""
    from sqlalchemy.engine import make_url

    url = make_url(uri)
    backend = url.get_backend_name()
    local = threading.local()

    def connect() -> Any:
        if backend == "sqlite":
            conn = sqlite3.connect(url.database or "", isolation_level=None,
                                   check_same_thread=False)
            for pragma in ("busy_timeout = 5000", "journal_mode = WAL", "synchronous = NORMAL"):
                conn.execute("PRAGMA " + pragma)
            conn.execute(RAW_SCHEMA)
            return conn
        if backend == "postgresql":
            import psycopg

            conn = psycopg.connect(host=url.host, port=url.port or 5432, user=url.username,
                                   password=url.password, dbname=url.database)
        else:
            import pymysql

            conn = pymysql.connect(host=url.host, port=url.port or 3306, user=url.username,
                                   password=url.password or "", database=url.database)
        try:
            with conn.cursor() as cursor:
                cursor.execute(RAW_DRIVER_SCHEMA.format(t=table))
            conn.commit()
        except Exception:  # noqa: BLE001 - two workers racing "IF NOT EXISTS" on PostgreSQL
            conn.rollback()  # (the loser's duplicate type error): the table exists by now
        return conn

    def connection() -> Any:
        conn, pid = getattr(local, "conn", None), getattr(local, "pid", None)
        if conn is None or pid != os.getpid():
            local.conn, local.pid = connect(), os.getpid()
        return local.conn

    # Not ``.../@lock``: the content dialect serves every ``@lock`` URL of the app, so a raw
    # route spelled that way would never run (it answered 404 for rounds, unnoticed).
    @app.post("/raw/<doc_id>/lock")
    def raw_driver_lock(doc_id: str) -> Any:
        owner = request.headers.get("X-User") or "anonymous"
        secret = secrets.token_hex(32)
        params = ("/docs/" + doc_id, secret, owner, 600_000)
        conn = connection()
        if backend == "sqlite":
            conn.execute(RAW_UPSERT, params).fetchall()
        else:
            with conn.cursor() as cursor:
                cursor.execute(RAW_DRIVER_UPSERT[backend].format(t=table), params)
            conn.commit()
        response = jsonify(locked=True, resource=doc_id, token=secret)
        response.headers["Lock-Token"] = secret
        return response


def new_table_name() -> str:
    return "bench_" + secrets.token_hex(5)
