"""Races between real OS processes, on every backend (docs/locks.rst).

* Thundering herd: 16 contenders in 4 processes behind a barrier, 20 rounds → exactly one
  winner per round, everyone else a conflict, no errors; raced once through the store and
  once through a Flask app's Python API.
* Expiry hand-off: 8 contenders spin on one resource with a 50 ms lease for 5 s; every grant
  is recorded from the database's row and checked: versions unique, no two grant intervals
  overlap on the database clock. The same checker run on a naive read-then-write
  acquisition must find overlaps, which shows it can fail.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import pytest
from conftest import drop_tables
from helpers import procs, racers

PROCESSES = 4
THREADS = 4  # 16 contenders
ROUNDS = 20
SPIN_PROCESSES = 2
SPIN_THREADS = 4  # 8 contenders
LEASE_MS = 50
SPIN_SECONDS = 5.0


@pytest.fixture
def store_table(database_url: str, table_name: str) -> Any:
    store = racers.open_store(database_url, table_name)
    store.create_schema()
    yield table_name
    store.dispose()
    if not database_url.startswith("sqlite"):
        drop_tables(database_url, table_name)


def _check_herd(messages: list[tuple[Any, ...]], backend: str, label: str) -> None:
    outcomes = [o for m in messages for o in m[2]]
    assert not [o for o in outcomes if o[0] == "error"], [o for o in outcomes if o[0] == "error"]
    by_round: dict[int, Counter[str]] = defaultdict(Counter)
    winners: dict[int, tuple[Any, ...]] = {}
    for outcome in outcomes:
        by_round[outcome[1]][outcome[0]] += 1
        if outcome[0] == "win":
            winners[outcome[1]] = outcome
        else:
            assert outcome[3], f"a conflict without the holder: {outcome}"
    contenders = PROCESSES * THREADS
    assert sorted(by_round) == list(range(ROUNDS))
    for r, counts in by_round.items():
        assert counts == Counter(win=1, conflict=contenders - 1), (r, counts)
        assert winners[r][4], f"round {r}: the winner got no new grant/token"
    # the released key is re-acquired with version + 1 every odd round; fresh keys start at 1
    assert [winners[r][3] for r in range(1, ROUNDS, 2)] == list(range(1, ROUNDS // 2 + 1))
    assert all(winners[r][3] == 1 for r in range(0, ROUNDS, 2))
    print(
        f"\nFIGURES herd[{label}] {backend}: rounds={ROUNDS} contenders={contenders} "
        f"processes={PROCESSES} winners={len(winners)} "
        f"conflicts={sum(c['conflict'] for c in by_round.values())} errors=0"
    )


def test_herd_store(backend: str, database_url: str, store_table: str) -> None:
    messages = procs.run(
        racers.herd_store,
        [(database_url, store_table, p, THREADS, ROUNDS) for p in range(PROCESSES)],
        parties=PROCESSES * THREADS,
    )
    _check_herd(messages, backend, "store")


def test_herd_python_api(backend: str, database_url: str, store_table: str) -> None:
    messages = procs.run(
        racers.herd_app,
        [(database_url, store_table, p, THREADS, ROUNDS) for p in range(PROCESSES)],
        parties=PROCESSES * THREADS,
    )
    _check_herd(messages, backend, "python-api")


def _overlap(a: tuple[str, bool], b: tuple[str, bool]) -> bool:
    (key_a, inf_a), (key_b, inf_b) = a, b
    return (
        key_a == key_b
        or (inf_a and key_b.startswith(key_a + "/"))
        or (inf_b and key_a.startswith(key_b + "/"))
    )


def test_herd_on_overlapping_keys(backend: str, database_url: str, store_table: str) -> None:
    """Infinite-depth locks on a root and a middle node, and depth-0 locks below and beside
    them, all requested at once: the winners of a round never overlap (the serialisation of
    different rows: BEGIN IMMEDIATE, advisory locks, locking reads)."""
    messages = procs.run(
        racers.herd_tree,
        [(database_url, store_table, p, THREADS, ROUNDS) for p in range(PROCESSES)],
        parties=PROCESSES * THREADS,
    )
    outcomes = [o for m in messages for o in m[2]]
    assert not [o for o in outcomes if o[0] == "error"], [o for o in outcomes if o[0] == "error"]
    assert len(outcomes) == ROUNDS * PROCESSES * THREADS
    shapes: Counter[str] = Counter()
    for r in range(ROUNDS):
        winners = {(o[2], o[3]) for o in outcomes if o[1] == r and o[0] == "win"}
        assert winners, f"round {r}: nobody won"
        clashes = [(a, b) for a in winners for b in winners if a < b and _overlap(a, b)]
        assert not clashes, (r, clashes)
        shapes[
            "root"
            if (f"/t{r}", True) in winners
            else "middle"
            if (f"/t{r}/a", True) in winners
            else "leaves"
        ] += 1
    print(
        f"\nFIGURES herd[tree] {backend}: rounds={ROUNDS} contenders={PROCESSES * THREADS} "
        f"winning shapes={dict(shapes)} clashes=0"
    )


def _spin(
    target: Any, url: str, table: str, seconds: float
) -> tuple[list[tuple[Any, ...]], list[str], int]:
    messages = procs.run(
        target,
        [
            (url, table, p, SPIN_THREADS, "/handoff/doc", LEASE_MS, seconds)
            for p in range(SPIN_PROCESSES)
        ],
    )
    grants = [g for m in messages for g in m[2]]
    errors = [e for m in messages for e in m[3]]
    attempts = sum(m[4] for m in messages)
    return grants, errors, attempts


def test_expiry_handoff(backend: str, database_url: str, store_table: str) -> None:
    grants, errors, attempts = _spin(racers.spin_store, database_url, store_table, SPIN_SECONDS)
    assert not errors, errors[:5]
    assert all(g[4] for g in grants), "a spinner refreshed instead of getting a new grant"
    duplicates, overlaps = procs.check_grants(grants)
    assert not duplicates, duplicates[:5]
    assert not overlaps, overlaps[:5]
    # the lease really was handed over, many times, between different contenders
    assert len(grants) >= 20, len(grants)
    assert len({g[3] for g in grants}) >= 2
    versions = sorted(g[0] for g in grants)
    assert versions == list(range(1, len(grants) + 1)), "every grant was seen, in order"
    print(
        f"\nFIGURES handoff {backend}: contenders={SPIN_PROCESSES * SPIN_THREADS} "
        f"lease_ms={LEASE_MS} seconds={SPIN_SECONDS} attempts={attempts} grants={len(grants)} "
        f"holders={len({g[3] for g in grants})} duplicate_versions={len(duplicates)} "
        f"overlaps={len(overlaps)}"
    )


def test_checker_catches_naive_acquisition(tmp_path: Any, table_name: str) -> None:
    """The same checker, on a read-then-write acquisition, reports double grants."""
    url = f"sqlite:///{tmp_path}/naive.sqlite3"
    store = racers.open_store(url, table_name)
    store.create_schema()
    store.dispose()
    grants, errors, _ = _spin(racers.spin_naive, url, table_name, 2.0)
    assert not errors, errors[:5]
    duplicates, overlaps = procs.check_grants(grants)
    print(
        f"\nFIGURES naive sqlite: contenders={SPIN_PROCESSES * SPIN_THREADS} grants={len(grants)} "
        f"duplicate_versions={len(duplicates)} overlaps={len(overlaps)}"
    )
    assert duplicates or overlaps, "the checker found nothing wrong with a racy acquisition"


def test_herd_over_expired_own_locks(backend: str, database_url: str, store_table: str) -> None:
    """Contenders race for a root at infinite depth and for their own leaves, whose earlier
    locks have run out: the winners never overlap, exactly the winners are live afterwards
    (a lost acquisition never revives its owner's expired lock, though PostgreSQL commits
    the loser's transaction in the same round trip), and the event log holds exactly one
    ``acquired`` per grant, with gapless ids."""
    rounds = 8
    messages = procs.run(
        racers.herd_over_expired,
        [(database_url, store_table, p, THREADS, rounds) for p in range(PROCESSES)],
        parties=PROCESSES * THREADS,
    )
    outcomes = [o for m in messages for o in m[2]]
    assert not [o for o in outcomes if o[0] == "error"], [o for o in outcomes if o[0] == "error"]
    store = racers.open_store(database_url, store_table)
    try:
        for r in range(rounds):
            winners = {(o[2], o[3]) for o in outcomes if o[1] == r and o[0] == "win"}
            assert winners, f"round {r}: nobody won"
            clashes = [(a, b) for a in winners for b in winners if a < b and _overlap(a, b)]
            assert not clashes, (r, clashes)
            live = {(row.resource, row.infinite) for row in store.live_rows(f"/x{r}")}
            assert live == winners, (r, live ^ winners)
        log = store.event_log()
        events = log.after(0, limit=100_000)
    finally:
        store.dispose()
    grants = [o for o in outcomes if o[0] in ("pre", "win")]
    assert [e.event for e in events] == ["acquired"] * len(grants)
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert sorted((e.lock.resource, e.lock.infinite) for e in events) == sorted(
        (o[2], o[3]) for o in grants
    )
    print(
        f"\nFIGURES herd[expired] {backend}: rounds={rounds} contenders={PROCESSES * THREADS} "
        f"grants={len(grants)} root wins={sum(1 for o in grants if o[3])} clashes=0"
    )
