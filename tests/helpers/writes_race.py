"""The check-then-act race of issue 16, as a harness shared by the race tests.

Writer A holds a lock with a short lease and sends a guarded ``PATCH``; its view pauses
between the guard and its commit (on an event, not a sleep). Meanwhile the lease ends on the
database clock and writer B takes the lock (the next ``version``), reads the document in a
transaction of its own, writes it and releases. Then A is let go and tries to commit.

Every committed write is logged with the database clock read by the write's own
transaction (its last statement before ``COMMIT``), so the outcome can be judged on one
clock and with the versions: a *late write* is an A write committed after B's first
post-grant read (B did not see it), a *lost update* is a document whose final state is not
B's newer write.

A's view runs one of these ``mode``\\s:

``none``      write and commit: the unprotected gap;
``early``     ``current_lock.hold(db.session)`` before the pause;
``late``      ``current_lock.hold(db.session)`` after the pause (the lease is over by then);
``flush``     ``LOCKING_HOLD_ON_FLUSH``: the view only writes; the hook holds at the flush
              (after the pause);
``fenced-early`` / ``fenced-late``  (fencing app) flush the fenced write before / after the
              pause;
``unfenced``  (fencing app) a plain Core update: no fence.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass, field
from typing import Any, cast

import sqlalchemy as sa
from flask import Flask, jsonify, request
from flask_sqlalchemy import SQLAlchemy

from flask_locking import Locking, current_lock
from flask_locking.fencing import FencedMixin
from flask_locking.store import BACKENDS


@dataclass
class Pause:
    """Where A's view waits: ``in_view`` once A is past the guard, ``go`` to carry on."""

    in_view: threading.Event = field(default_factory=threading.Event)
    go: threading.Event = field(default_factory=threading.Event)


@dataclass
class Race:
    app: Flask
    db: Any
    locking: Locking
    Doc: Any
    Write: Any
    pauses: dict[int, Pause]

    @property
    def store(self) -> Any:
        return self.app.extensions["locking"].engine.store

    def host_clock(self) -> Any:
        """The host database's clock in epoch ms, as the lock store of that backend reads it."""
        with self.app.app_context():
            return host_clock(self.db)


def host_clock(db: Any) -> Any:
    cls = BACKENDS[db.engine.dialect.name]
    return cls.now_expression(cast(Any, None))  # builds SQL only; uses no store state


@dataclass
class Tally:
    rounds: int = 0  # rounds in which A was verified by the guard and reached its view
    a_committed: int = 0
    a_refused: int = 0  # A's write answered 412 by the hold / the fence
    late_writes: int = 0  # A committed after B's first read under its grant
    lost_updates: int = 0  # the document did not end with B's newer write
    grant_before_a_commit: int = 0  # B's locked_at (store clock) before A's commit clock
    a_after_b: int = 0  # A's write logged after B's (commit order, on a serialising host)
    unverified: int = 0  # A's lease ended before its guard ran: not a round
    seconds: float = 0.0

    def add(self, other: Tally) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def build_race(
    host_url: str,
    tmp_path: Any,
    *,
    lock_url: str | None = None,
    fenced: bool = False,
    **config: Any,
) -> Iterator[Race]:
    """A Flask-SQLAlchemy host on ``host_url`` with locks on ``lock_url`` (default: the same
    database, ``Locking(app, db=db)``)."""
    db = SQLAlchemy()
    suffix = uuid.uuid4().hex[:8]
    bases: tuple[Any, ...] = (FencedMixin, db.Model) if fenced else (db.Model,)

    Doc: Any = type(
        "RaceDoc" + suffix,
        bases,
        {
            "__tablename__": "race_docs_" + suffix,
            "id": sa.Column(sa.Integer, primary_key=True, autoincrement=False),
            "content": sa.Column(sa.String(20), nullable=False),
            "version": sa.Column(sa.BigInteger, nullable=False),
        },
    )
    Write: Any = type(
        "RaceWrite" + suffix,
        (db.Model,),
        {
            "__tablename__": "race_writes_" + suffix,
            "id": sa.Column(sa.Integer, primary_key=True),
            "doc_id": sa.Column(sa.Integer, nullable=False),
            "writer": sa.Column(sa.String(1), nullable=False),
            "version": sa.Column(sa.BigInteger, nullable=False),
            "at_ms": sa.Column(sa.BigInteger, nullable=False),
        },
    )
    app = Flask(__name__, instance_path=str(tmp_path / ("instance" + suffix)))
    app.config.update(
        TESTING=True,
        SECRET_KEY="race",
        SQLALCHEMY_DATABASE_URI=host_url,
        # A SQLite host's writers wait for its one write lock, held by a paused writer A
        # while the test thread waits for A's lease to end on the lock store's clock: a
        # stall of that store (a checkpoint) must not time the host's waiters out (5 s by
        # default; seen once in a full run). Outcomes are asserted, never durations.
        SQLALCHEMY_ENGINE_OPTIONS=(
            {"connect_args": {"timeout": 60}} if host_url.startswith("sqlite") else {}
        ),
        LOCKING_DATABASE_URI=lock_url,
        LOCKING_TABLE_NAME="lk_race_" + suffix,
        **config,
    )
    db.init_app(app)
    if host_url.startswith("sqlite"):
        with app.app_context():
            sa.event.listen(db.engine, "connect", _fast_sqlite)
    locking = Locking(app, db=db)
    pauses: dict[int, Pause] = {}

    @locking.identity_loader
    def load() -> str | None:
        return request.headers.get("X-User")

    @app.patch("/race/<int:doc_id>")
    def write(doc_id: int) -> Any:
        mode = request.args["mode"]
        pause = pauses[doc_id]
        lock = current_lock
        clock = host_clock(db)
        if mode == "early":
            current_lock.hold(db.session)
        doc = db.session.get(Doc, doc_id)
        if mode == "fenced-early":
            _write_a(db, Doc, Write, doc, lock, clock, fence=True)
            db.session.flush()
        pause.in_view.set()
        assert pause.go.wait(60), "the test never let A go"
        if mode == "late":
            current_lock.hold(db.session)
        if mode == "unfenced":
            db.session.execute(
                sa.update(Doc.__table__)
                .where(Doc.id == doc_id)
                .values(content=f"A{lock.version}", version=lock.version)
            )
            db.session.add(Write(doc_id=doc_id, writer="A", version=lock.version, at_ms=clock))
        elif mode != "fenced-early":
            _write_a(db, Doc, Write, doc, lock, clock, fence=mode == "fenced-late")
        db.session.commit()
        return jsonify(ok=True)

    with app.app_context():
        db.create_all()
    try:
        yield Race(app, db, locking, Doc, Write, pauses)
    finally:
        with app.app_context():
            db.session.remove()
            state = app.extensions["locking"]
            engine = state.engine
            state.close()
            db.drop_all()
            if not (lock_url or host_url).startswith("sqlite"):
                with engine.store.engine.begin() as conn:
                    for name in (engine.store.meta.name, engine.store.table.name):
                        conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))
                engine.store.engine.dispose()
            db.engine.dispose()


def _fast_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # As the lock store sets its own connections up: WAL (readers never wait for the
    # writer) and no fsync at every commit; a test on a loaded machine needs both.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


def _write_a(
    db: Any, Doc: Any, Write: Any, doc: Any, lock: Any, clock: Any, *, fence: bool
) -> None:
    if fence:
        doc.fence(lock)
    doc.content = f"A{lock.version}"  # distinct at every write: the ORM skips no column
    doc.version = lock.version
    db.session.add(Write(doc_id=doc.id, writer="A", version=lock.version, at_ms=clock))


#: Modes in which A holds something B's grant or write must wait for during the pause.
BLOCKING = {"early", "fenced-early"}


def run_pair(
    race: Race,
    doc_id: int,
    mode: str,
    rounds: int,
    *,
    lease: float = 0.04,
    max_attempts: int | None = None,
) -> Tally:
    """``rounds`` rounds of the race on one document, A and B on threads of their own.

    A is let go once B has finished, or, when A holds what B needs (``BLOCKING``), after
    B had a short head start: B is then waiting for A, and the round checks that it
    waited (a head start of any length gives the same outcome; it is not a timing).
    """
    head_start = 0.01 if mode in BLOCKING else 10.0
    tally = Tally()
    app, db, Doc, Write = race.app, race.db, race.Doc, race.Write
    resource = f"/race/{doc_id}"
    pause = race.pauses.setdefault(doc_id, Pause())
    with app.app_context():
        db.session.add(Doc(id=doc_id, content="-", version=0))
        db.session.commit()
        db.session.remove()
    client = app.test_client()
    started = time.perf_counter()
    attempts = 0
    with ThreadPoolExecutor(2) as pool:
        while tally.rounds < rounds:
            attempts += 1
            if max_attempts is not None and attempts > max_attempts:
                raise AssertionError(
                    f"only {tally.rounds} verified rounds in {attempts - 1} attempts"
                )
            pause.in_view.clear()
            pause.go.clear()
            with app.app_context():
                a_lock = race.locking.acquire(resource, "alice", timeout=lease)
            a: Future[Any] = pool.submit(
                client.patch,
                f"{resource}?mode={mode}",
                headers={"X-User": "alice", "Lock-Token": a_lock.token},
            )
            # A is past the guard and paused, or answered already (its lease ended first).
            while not pause.in_view.wait(0.005) and not a.done():
                pass
            if not pause.in_view.is_set():
                response = a.result()
                assert response.status_code == 412, response.get_data(as_text=True)
                tally.unverified += 1
                continue
            tally.rounds += 1
            _await_expiry(race, a_lock.expires_at)
            b: Future[Any] = pool.submit(_writer_b, race, doc_id, resource)
            wait_for([b], timeout=head_start)  # B's grant gets a head start, if it can
            pause.go.set()
            response = a.result()
            b_version, b_locked_at_ms, b_read_ms, b_saw = b.result()
            assert b_version == a_lock.version + 1, (b_version, a_lock.version)
            assert response.status_code in (200, 412), response.get_data(as_text=True)
            with app.app_context(), db.engine.connect() as conn:
                writes = conn.execute(
                    sa.select(Write.__table__)
                    .where(Write.doc_id == doc_id, Write.version.in_([a_lock.version, b_version]))
                    .order_by(Write.id)
                ).all()
                final = conn.execute(sa.select(Doc.__table__).where(Doc.id == doc_id)).one()
            a_writes = [w for w in writes if w.writer == "A"]
            if response.status_code == 200:
                tally.a_committed += 1
                assert len(a_writes) == 1
                a_at = a_writes[0].at_ms
                if a_at > b_read_ms or b_saw != a_lock.version:
                    tally.late_writes += 1
                if b_locked_at_ms < a_at:
                    tally.grant_before_a_commit += 1
            else:
                tally.a_refused += 1
                assert a_writes == [], "a refused write left a trace"
            b_writes = [w for w in writes if w.writer == "B"]
            assert len(b_writes) == 1
            if a_writes and a_writes[0].id > b_writes[0].id:
                tally.a_after_b += 1
            if (final.content, final.version) != (f"B{b_version}", b_version):
                tally.lost_updates += 1
    tally.seconds = time.perf_counter() - started
    return tally


def _await_expiry(race: Race, expires_at: float) -> None:
    """Return once the database clock has passed ``expires_at``."""
    with race.app.app_context():
        while True:
            left = expires_at * 1000 - race.store.now_ms()
            if left < 0:
                return
            time.sleep(min(left, 50) / 1000 + 0.0005)


def _writer_b(race: Race, doc_id: int, resource: str) -> tuple[int, int, int, int]:
    """B: take the lock (it expired), read and write the document, release."""
    app, db, Doc, Write = race.app, race.db, race.Doc, race.Write
    with app.app_context():
        lock = race.locking.acquire(resource, "bob", timeout=30)
        clock = host_clock(db)
        try:
            read_ms = db.session.execute(sa.select(clock)).scalar_one()
            doc = db.session.get(Doc, doc_id)
            saw = doc.version
            if isinstance(doc, FencedMixin):
                doc.fence(lock)
            doc.content = f"B{lock.version}"
            doc.version = lock.version
            db.session.add(Write(doc_id=doc_id, writer="B", version=lock.version, at_ms=clock))
            db.session.commit()
        finally:
            db.session.remove()
            race.locking.release(resource, token=lock.token)
    return lock.version, round(lock.time * 1000), int(read_ms), int(saw)


def run_pairs(race: Race, mode: str, rounds: int, pairs: int, **options: Any) -> Tally:
    """``rounds`` rounds split over ``pairs`` documents racing at the same time."""
    total = Tally()
    started = time.perf_counter()
    with ThreadPoolExecutor(pairs) as pool:
        share = [rounds // pairs + (1 if i < rounds % pairs else 0) for i in range(pairs)]
        first = max(race.pauses, default=0) + 1  # fresh documents for every run
        futures = [
            pool.submit(run_pair, race, first + i, mode, n, **options) for i, n in enumerate(share)
        ]
        for future in futures:
            total.add(future.result())
    total.seconds = time.perf_counter() - started
    return total
