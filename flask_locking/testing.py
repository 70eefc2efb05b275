"""The lock store contract, as a pytest suite a store's authors run against their store.

Subclass :class:`StoreContract` in a test module and give it a ``store`` fixture that
returns a new, empty store; every test of the contract then runs on it::

    import pytest
    from flask_locking.testing import StoreContract

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store(self):
            store = MyStore()
            yield store
            store.dispose()

Each test talks to the :class:`~flask_locking.store.LockStore` interface only, the way the
engine does, and checks what docs/stores.rst promises whatever the backend: one atomic
winner, depth-infinity overlaps, expiry on the store's one clock, compare-and-set refresh
and release, versions that never go back, the event log when the store keeps one, and
races between threads of this process. Races between processes are the store's own to
prove (flask-locking's SQL stores have them in its test suite).

Needs pytest (``pip install flask-locking[testing]``); the package never imports this
module by itself.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

from .resources import descendant_bounds
from .store import AcquireRequest, HeldElsewhere, LockRow, LockStore, NewEvent
from .tokens import new_secret

__all__ = ["LONG", "StoreContract", "make_request", "tree_key", "wait_expired"]

#: A lease that outlives any test (ms).
LONG = 60_000
#: Contenders in the thread races.
THREADS = 8


def make_request(
    resource: str, owner: str, timeout_ms: int = LONG, *, infinite: bool = False,
    stealable: bool = True,
) -> AcquireRequest:
    """The acquisition a user ``owner`` proposes for ``resource`` (a normalised key)."""
    return AcquireRequest.of(LockRow(
        resource=resource, secret=new_secret(), owner_key="u:" + owner, owner_id=owner,
        owner_name=None, owner_url=None, stealable=stealable, infinite=infinite,
        timeout_ms=timeout_ms, locked_at_ms=0, version=0,
    ))


def wait_expired(store: LockStore, row: LockRow) -> None:
    """Wait until the store's clock has passed ``row``'s expiry."""
    for _ in range(1000):
        if store.now_ms() >= row.expires_ms:
            return
        time.sleep(0.01)
    raise AssertionError("the store's clock never passed the lease")


def grant(
    store: LockStore, resource: str, owner: str, timeout_ms: int = LONG, *, infinite: bool = False
) -> LockRow:
    """A new grant for ``owner`` (fails the test if it was refused or a refresh)."""
    result = store.acquire(make_request(resource, owner, timeout_ms, infinite=infinite))
    assert result.granted, f"{owner} refreshed instead of getting a new grant on {resource}"
    return result.row


def refused(store: LockStore, resource: str, owner: str, *, infinite: bool = False) -> LockRow:
    """The holder that ``owner``'s acquisition of ``resource`` was refused by."""
    with pytest.raises(HeldElsewhere) as info:
        store.acquire(make_request(resource, owner, LONG, infinite=infinite))
    assert info.value.row is not None
    return info.value.row


def _threads(count: int, target: Callable[[int], None]) -> None:
    """Run ``target(i)`` in ``count`` threads and re-raise the first failure."""
    failures: list[BaseException] = []

    def run(i: int) -> None:
        try:
            target(i)
        except BaseException as error:  # noqa: BLE001 - reported below
            failures.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads), "a contender never finished"
    if failures:
        raise failures[0]


class StoreContract:
    """Every promise of a lock store. Subclasses provide the ``store`` fixture."""

    @pytest.fixture(autouse=True)
    def _schema(self, store: LockStore) -> None:
        store.create_schema()

    # -- acquire ----------------------------------------------------------------------

    def test_new_grant(self, store: LockStore) -> None:
        before = store.now_ms()
        row = grant(store, "/docs/1", "ann", 1234)
        assert (row.resource, row.owner_key, row.owner_id, row.version) == (
            "/docs/1", "u:ann", "ann", 1
        )
        assert row.timeout_ms == 1234 and row.stealable is True and row.infinite is False
        assert before <= row.locked_at_ms <= store.now_ms()
        assert store.live("/docs/1") == row

    def test_owner_again_refreshes_same_grant(self, store: LockStore) -> None:
        first = grant(store, "/docs/1", "ann", 5000)
        result = store.acquire(make_request("/docs/1", "ann", 9000))
        assert not result.granted
        again = result.row
        assert (again.secret, again.version) == (first.secret, first.version)
        assert again.timeout_ms == 9000 and again.locked_at_ms >= first.locked_at_ms

    def test_the_owner_locking_again_never_weakens_the_lock(self, store: LockStore) -> None:
        strong = make_request("/docs/1", "ann", LONG, infinite=True, stealable=False)
        first = store.acquire(strong).row
        again = store.acquire(make_request("/docs/1", "ann", 90_000))
        assert not again.granted
        assert (again.row.stealable, again.row.infinite) == (False, True)
        assert (again.row.secret, again.row.version, again.row.timeout_ms) == (
            first.secret, first.version, 90_000
        )
        assert store.live("/docs/1") == again.row

    def test_other_owner_is_refused_and_changes_nothing(self, store: LockStore) -> None:
        held = grant(store, "/docs/1", "ann", LONG)
        assert refused(store, "/docs/1", "bob") == held
        assert store.live("/docs/1") == held

    def test_expired_grant_goes_to_the_next_owner(self, store: LockStore) -> None:
        old = grant(store, "/docs/1", "ann", 30)
        wait_expired(store, old)
        assert store.live("/docs/1") is None
        new = grant(store, "/docs/1", "bob", LONG)
        assert new.version == old.version + 1 and new.secret != old.secret
        assert new.owner_key == "u:bob" and new.timeout_ms == LONG
        assert new.locked_at_ms >= old.expires_ms
        # the stale holder can neither refresh nor release the next holder's lock
        assert store.refresh(old, LONG) is None
        assert store.release(old) is False
        assert store.live("/docs/1") == new

    def test_own_expired_grant_is_a_new_grant(self, store: LockStore) -> None:
        old = grant(store, "/docs/1", "ann", 30)
        wait_expired(store, old)
        new = grant(store, "/docs/1", "ann", LONG)  # not a refresh: the old token must not return
        assert new.version == old.version + 1 and new.secret != old.secret

    # -- refresh and release ------------------------------------------------------------

    def test_refresh_is_compare_and_set(self, store: LockStore) -> None:
        row = grant(store, "/docs/1", "ann", 5000)
        refreshed = store.refresh(row, 7000)
        assert refreshed is not None
        assert (refreshed.secret, refreshed.version, refreshed.timeout_ms) == (
            row.secret, row.version, 7000
        )
        assert refreshed.locked_at_ms >= row.locked_at_ms
        assert store.refresh(row._replace(secret="0" * 64), 7000) is None
        assert store.refresh(row._replace(version=row.version + 1), 7000) is None
        extended = store.extend(refreshed)
        assert extended is not None and extended.timeout_ms == 7000
        assert store.release(row)
        assert store.refresh(row, 7000) is None
        assert store.extend(row) is None

    def test_release_is_compare_and_set(self, store: LockStore) -> None:
        first = grant(store, "/docs/1", "ann")
        assert store.release(first._replace(secret="0" * 64)) is False
        assert store.live("/docs/1") == first
        assert store.release(first) is True
        assert store.release(first) is False
        assert store.live("/docs/1") is None
        second = grant(store, "/docs/1", "bob")
        assert second.version == first.version + 1
        assert store.release(first) is False  # a stale holder never deletes the next lock
        assert store.live("/docs/1") == second

    def test_version_never_goes_back(self, store: LockStore) -> None:
        versions = []
        for owner in ("ann", "bob", "ann"):
            row = grant(store, "/docs/1", owner)
            versions.append(row.version)
            assert store.release(row)
        row = grant(store, "/docs/1", "cid", 30)
        versions.append(row.version)
        wait_expired(store, row)
        assert store.purge_expired() >= 1
        assert store.live_rows() == []
        versions.append(grant(store, "/docs/1", "dan").version)
        assert versions == [1, 2, 3, 4, 5]

    def test_purge_leaves_live_locks(self, store: LockStore) -> None:
        live = grant(store, "/docs/live", "ann")
        short = grant(store, "/docs/short", "bob", 30)
        wait_expired(store, short)
        assert store.purge_expired() == 1
        assert store.purge_expired() == 0
        assert store.live("/docs/live") == live

    def test_purge_reports_each_wiped_grant_once(self, store: LockStore) -> None:
        short = grant(store, "/docs/short", "bob", 30)
        grant(store, "/docs/live", "ann")
        wait_expired(store, short)
        wiped = store.purge_expired_rows()
        if wiped is None:
            pytest.skip(f"{type(store).__name__} does not report purged rows")
        assert wiped == [short]
        assert store.purge_expired_rows() == []
        assert grant(store, "/docs/short", "cid").version == short.version + 1

    # -- hierarchy ------------------------------------------------------------------------

    def test_infinite_lock_covers_everything_below(self, store: LockStore) -> None:
        top = grant(store, "/a", "ann", infinite=True)
        assert refused(store, "/a/b", "bob") == top
        assert refused(store, "/a/b/c", "bob", infinite=True) == top
        assert refused(store, "/a", "bob") == top
        # neighbours that merely share a prefix are not below /a
        for other in ("/ab", "/a0", "/a-b", "/b"):
            grant(store, other, "bob", infinite=True)
        assert store.live("/a/b") is None  # the refused acquisitions left nothing behind

    def test_infinite_request_sees_locks_below(self, store: LockStore) -> None:
        deep = grant(store, "/x/y/z", "ann")
        assert refused(store, "/x", "bob", infinite=True) == deep
        assert refused(store, "/", "bob", infinite=True) == deep
        assert refused(store, "/x/y", "bob", infinite=True) == deep
        assert store.live("/x") is None and store.live("/x/y") is None
        # a depth-0 lock above, or an infinite lock below a depth-0 lock, do not overlap
        grant(store, "/x/y", "bob")
        grant(store, "/x/y/z/w", "cid", infinite=True)
        grant(store, "/x/yy", "dan", infinite=True)

    def test_expired_infinite_lock_no_longer_covers(self, store: LockStore) -> None:
        top = grant(store, "/a", "ann", 30, infinite=True)
        wait_expired(store, top)
        grant(store, "/a/b", "bob")
        below = grant(store, "/q/r", "ann", 30)
        wait_expired(store, below)
        grant(store, "/q", "bob", infinite=True)

    def test_root_infinite_lock(self, store: LockStore) -> None:
        root = grant(store, "/", "ann", infinite=True)
        assert refused(store, "/anything/at/all", "bob") == root

    def test_a_sibling_that_sorts_right_after_the_subtree_is_not_below(
        self, store: LockStore
    ) -> None:
        sibling = grant(store, "/a0", "ann")
        grant(store, "/a", "bob", infinite=True)
        assert store.live("/a0") == sibling
        grant(store, "/a0/x", "carol")

    def test_very_deep_paths_see_only_infinite_locks_above(self, store: LockStore) -> None:
        deep = "/" + "/".join(f"s{i}" for i in range(70))
        middle = "/" + "/".join(f"s{i}" for i in range(30))
        shallow = grant(store, middle, "ann")
        grant(store, deep, "bob")  # depth 0 above: no overlap
        grant(store, deep + "/t", "bob", infinite=True)
        assert store.live(middle) == shallow
        top = grant(store, "/t/s0", "ann", infinite=True)
        assert refused(store, "/t" + deep, "carol") == top

    # -- keys and reads -------------------------------------------------------------------

    def test_keys_are_case_sensitive(self, store: LockStore) -> None:
        upper = grant(store, "/Docs/A", "ann", infinite=True)
        lower = grant(store, "/docs/a", "bob", infinite=True)
        assert upper.version == lower.version == 1
        grant(store, "/docs/A/x", "cid")  # not below /Docs/A
        assert store.live("/DOCS/A") is None
        assert [r.resource for r in store.live_among(["/Docs/A", "/DOCS/A"])] == ["/Docs/A"]
        assert [r.resource for r in store.live_rows("/docs")] == ["/docs/A/x", "/docs/a"]

    def test_live_among_and_live_rows(self, store: LockStore) -> None:
        for key in ("/p", "/p/q", "/p/q/r", "/pq", "/z"):
            grant(store, key, "ann")
        short = grant(store, "/p/gone", "ann", 30)
        wait_expired(store, short)
        among = store.live_among(["/p", "/p/q", "/p/gone", "/nope"])
        assert sorted(r.resource for r in among) == ["/p", "/p/q"]
        assert [r.resource for r in store.live_rows("/p")] == ["/p", "/p/q", "/p/q/r"]
        assert [r.resource for r in store.live_rows()] == ["/p", "/p/q", "/p/q/r", "/pq", "/z"]

    def test_live_page(self, store: LockStore) -> None:
        for key, owner in (("/p", "ann"), ("/p/a", "bob"), ("/p/b", "ann"), ("/q", "ann")):
            grant(store, key, owner)
        page = store.live_page(prefix="/p", after=None, owner_key=None, limit=2)
        assert [r.resource for r in page] == ["/p", "/p/a"]
        page = store.live_page(prefix="/p", after="/p/a", owner_key=None, limit=2)
        assert [r.resource for r in page] == ["/p/b"]
        mine = store.live_page(prefix=None, after=None, owner_key="u:ann", limit=10)
        assert [r.resource for r in mine] == ["/p", "/p/b", "/q"]

    def test_root_prefix_is_its_namespace(self, store: LockStore) -> None:
        for key in ("/", "/p", "[h]/", "[h]/p"):
            grant(store, key, "ann")
        assert [r.resource for r in store.live_rows("/")] == ["/", "/p"]
        assert [r.resource for r in store.live_rows("[h]/")] == ["[h]/", "[h]/p"]
        page = store.live_page(prefix="/", after=None, owner_key=None, limit=10)
        assert [r.resource for r in page] == ["/", "/p"]

    def test_shared_secret_is_the_first_candidate(self, store: LockStore) -> None:
        first = store.shared_secret("a" * 64)
        assert store.shared_secret("b" * 64) == first == "a" * 64

    def test_clock_moves_forward(self, store: LockStore) -> None:
        first = store.now_ms()
        time.sleep(0.02)
        assert store.now_ms() > first

    # -- the event log (when the store keeps one) -----------------------------------------

    def test_event_log(self, store: LockStore) -> None:
        events = store.event_log(retention=3600)
        if events is None:
            pytest.skip(f"{type(store).__name__} keeps no lock events")
        events.create_schema()
        assert (events.head(), events.oldest(), events.after(0)) == (0, None, [])
        ids = [events.append(_event(f"/docs/{i}")) for i in range(3)]
        assert ids == [1, 2, 3] and events.head() == 3 and events.oldest() == 1
        assert events.appended.is_set()
        rows = events.after(1)
        assert [(r.id, r.lock.resource, r.event) for r in rows] == [
            (2, "/docs/1", "acquired"), (3, "/docs/2", "acquired")
        ]
        assert rows[0].time_ms <= store.now_ms()
        kept = rows[0].lock
        assert (kept.owner_id, kept.timeout_ms, kept.version, kept.secret) == ("ann", LONG, 1, "")
        assert [r.id for r in events.after(0, limit=2)] == [1, 2]
        assert events.prune() == 0  # nothing is older than the retention

    def test_event_log_ids_are_gapless_under_threads(self, store: LockStore) -> None:
        events = store.event_log(retention=3600)
        if events is None:
            pytest.skip(f"{type(store).__name__} keeps no lock events")
        events.create_schema()
        got: list[int] = []
        guard = threading.Lock()

        def writer(i: int) -> None:
            for n in range(10):
                new_id = events.append(_event(f"/t{i}/{n}"))
                with guard:
                    got.append(new_id)

        _threads(THREADS, writer)
        assert sorted(got) == list(range(1, THREADS * 10 + 1))
        assert [r.id for r in events.after(0, limit=1000)] == sorted(got)

    def test_events_recorded_with_their_operation(self, store: LockStore) -> None:
        """A store that writes events in its operations' transactions
        (:meth:`~flask_locking.store.LockStore.record_events`) writes exactly the event
        made of the row each changing operation produced, and none for one that changed
        nothing."""
        events = store.event_log(retention=3600)
        if events is None or not store.record_events(events):
            pytest.skip(f"{type(store).__name__} does not record events in its operations")
        events.create_schema()
        made: list[LockRow] = []

        def event(kind: str) -> Callable[[LockRow], NewEvent]:
            def build(row: LockRow) -> NewEvent:
                made.append(row)
                return NewEvent(kind, row._replace(secret="", owner_key=""), "by", None)
            return build

        won = store.acquire(make_request("/ev", "ann"), event=event("acquired")).row
        with pytest.raises(HeldElsewhere):
            store.acquire(make_request("/ev", "bob"), event=event("acquired"))
        refreshed = store.refresh(won, 5_000, event=event("refreshed"))
        assert refreshed is not None
        assert store.extend(refreshed, event=event("refreshed")) is not None
        assert store.release(won, event=event("released"))
        assert not store.release(won, event=event("released"))  # ended already: no event
        short = store.acquire(make_request("/ev2", "ann", 1), event=event("acquired")).row
        wait_expired(store, short)
        assert store.purge_expired_rows(event=event("expired")) in ([short], None)
        rows = events.after(0)
        assert [(r.event, r.lock.resource, r.lock.version) for r in rows][:5] == [
            ("acquired", "/ev", 1), ("refreshed", "/ev", 1), ("refreshed", "/ev", 1),
            ("released", "/ev", 1), ("acquired", "/ev2", 1),
        ]
        assert [r.event for r in rows[5:]] in (["expired"], [])
        assert made[0] == won and made[1].timeout_ms == 5_000 and made[3] == won
        assert all(r.by_id == "by" and r.lock.secret == "" for r in rows)
        assert events.appended.is_set()

    # -- races between threads of this process --------------------------------------------

    def test_thread_herd_has_one_winner_per_round(self, store: LockStore) -> None:
        """Every round, all contenders try one key at once: exactly one wins. Even rounds
        race for a fresh key, odd rounds for a key the previous winner released."""
        rounds = 10

        def attempt(r: int, i: int) -> LockRow | None:
            resource = f"/herd/fresh-{r}" if r % 2 == 0 else "/herd/shared"
            try:
                result = store.acquire(make_request(resource, f"t{i}"))
            except HeldElsewhere as held:
                assert held.row is not None
                return None
            assert result.granted
            return result.row

        def settle(r: int, won: LockRow | None) -> None:
            if won is not None and r % 2 == 1:
                assert store.release(won)

        outcomes = _race_rounds(rounds, attempt, settle)
        winners = [(r, row) for r, row in sorted(outcomes, key=lambda o: o[0]) if row]
        assert [r for r, _ in winners] == list(range(rounds)), winners  # one per round
        shared = [row.version for r, row in winners if r % 2 == 1]
        assert shared == list(range(1, rounds // 2 + 1))

    def test_thread_expiry_hand_off_never_overlaps(self, store: LockStore) -> None:
        """Contenders spin on one key with a short lease: every grant has its own version
        and no two grants' leases overlap on the store's clock."""
        lease_ms = 40
        deadline = time.monotonic() + 1.5
        grants: list[LockRow] = []
        guard = threading.Lock()

        def contender(i: int) -> None:
            while time.monotonic() < deadline:
                try:
                    result = store.acquire(make_request("/spin", f"t{i}", lease_ms))
                except HeldElsewhere:
                    time.sleep(random.uniform(0.001, 0.004))
                    continue
                if result.granted:  # (else our lease had not run out on the store's clock)
                    with guard:
                        grants.append(result.row)
                time.sleep(lease_ms / 1000 + 0.002)  # let the lease run out

        _threads(THREADS // 2, contender)
        assert len(grants) >= 2, "the contenders never handed the lock over"
        ordered = sorted(grants, key=lambda row: row.version)
        assert [row.version for row in ordered] == list(
            range(ordered[0].version, ordered[0].version + len(ordered))
        )
        for before, after in itertools.pairwise(ordered):
            assert after.locked_at_ms >= before.expires_ms, (before, after)

    def test_thread_tree_herd_never_grants_overlapping_locks(self, store: LockStore) -> None:
        """Contenders race for infinite locks on a root and a middle node and depth-0 locks
        below and beside them: the winners of a round never overlap."""
        rounds = 6

        def attempt(r: int, i: int) -> tuple[str, bool] | None:
            resource, infinite = tree_key(r, i, str(i))
            try:
                store.acquire(make_request(resource, f"t{i}", infinite=infinite))
            except HeldElsewhere:
                return None
            return resource, infinite

        outcomes = _race_rounds(rounds, attempt)
        for r in range(rounds):
            won = [outcome for rr, outcome in outcomes if rr == r and outcome is not None]
            assert won, f"round {r}: nobody won"
            assert len({key for key, _ in won}) == len(won), (r, won)
            for key, infinite in won:
                for other, _ in won:
                    if other != key and infinite:
                        low, high = descendant_bounds(key)
                        assert not low < other < high, (r, key, other)


T = TypeVar("T")


def _race_rounds(
    rounds: int,
    attempt: Callable[[int, int], T],
    settle: Callable[[int, T], None] | None = None,
) -> list[tuple[int, T]]:
    """:data:`THREADS` contenders, ``rounds`` rounds. In each, every contender ``i`` calls
    ``attempt(r, i)`` at the same instant (a barrier); once all have tried, each calls
    ``settle(r, outcome)``. Returns every ``(round, outcome)``."""
    barrier = threading.Barrier(THREADS)
    outcomes: list[tuple[int, T]] = []
    guard = threading.Lock()

    def contender(i: int) -> None:
        for r in range(rounds):
            barrier.wait(timeout=60)
            outcome = attempt(r, i)
            barrier.wait(timeout=60)  # everyone has tried before anyone settles
            if settle is not None:
                settle(r, outcome)
            with guard:
                outcomes.append((r, outcome))

    _threads(THREADS, contender)
    return outcomes


def tree_key(r: int, i: int, leaf: str) -> tuple[str, bool]:
    """What contender ``i`` asks for in round ``r`` of a tree herd: infinite locks on the
    round's root and on a middle node, and depth-0 locks (named by ``leaf``) below and
    beside it."""
    kind = i % 4
    if kind == 0:
        return f"/t{r}", True
    if kind == 1:
        return f"/t{r}/a", True
    if kind == 2:
        return f"/t{r}/a/b{leaf}", False
    return f"/t{r}/z{leaf}", False


def _event(resource: str) -> NewEvent:
    lock = make_request(resource, "ann").row._replace(secret="", owner_key="", version=1)
    return NewEvent("acquired", lock, None, None)
