"""Engine cursor-execute listeners see the store's hot statements as SQLAlchemy shows them.

Tracers (Sentry's and OpenTelemetry's SQLAlchemy integrations) keep their span on the
``context`` argument and some listeners rewrite the statement (``retval=True``): the hot
path runs on the driver connection, so it must hand them a context that takes attributes
and run what they return. It once passed ``None``: every guarded write and ``@lock`` then
answered 500 in an app with such a tracer (found by review).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from tests.conftest import AppFactory


def test_tracing_listeners_keep_their_span_and_may_rewrite_the_statement(
    make_app: AppFactory, database_url: str
) -> None:
    app = make_app(database_url=database_url)
    engine = app.extensions["locking"].engine.store.engine
    spans: list[str] = []

    def start_span(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        context._test_span = statement  # what the tracers do

    def end_span(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        spans.append(context._test_span)

    def tag(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> Any:
        return statement + " -- traced", params  # a SQL commenter

    sa.event.listen(engine, "before_cursor_execute", tag, retval=True)
    sa.event.listen(engine, "before_cursor_execute", start_span)
    sa.event.listen(engine, "after_cursor_execute", end_span)
    try:
        client = app.test_client()
        assert client.patch("/docs/1", headers={"X-User": "ann"}).status_code == 200
        locked = client.post("/docs/1/@lock", headers={"X-User": "ann"})
        assert locked.status_code == 200, locked.get_json()
        token = locked.get_json()["token"]
        assert client.patch("/docs/1", headers={"X-User": "bob"}).status_code == 403
        write = client.patch("/docs/1", headers={"X-User": "ann", "Lock-Token": token})
        assert write.status_code == 200
        assert client.delete("/docs/1/@lock", headers={"X-User": "ann"}).status_code == 200
    finally:
        sa.event.remove(engine, "after_cursor_execute", end_span)
        sa.event.remove(engine, "before_cursor_execute", start_span)
        sa.event.remove(engine, "before_cursor_execute", tag)
    assert spans, "the listeners saw no statement"
    assert all(span.endswith(" -- traced") for span in spans), spans
