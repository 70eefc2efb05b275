"""Two app processes whose Python clocks disagree by two hours race on one resource with a
short lease: grants are exactly as without skew, because the database's clock decides
expiry (docs/locks.rst "Time and expiry")."""

from __future__ import annotations

import time
from typing import Any

import pytest
from conftest import drop_tables
from helpers import procs, racers

SKEWS = (3600.0, -3600.0)  # one process an hour ahead, the other an hour behind
THREADS = 4
LEASE = 0.1
SECONDS = 3.0


@pytest.fixture(params=["postgresql", "mysql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_skewed_app_clocks_agree_on_expiry(
    backend: str, database_url: str, table_name: str
) -> None:
    try:
        messages = procs.run(
            racers.spin_app_skewed,
            [
                (database_url, table_name, p, THREADS, "/skew/doc", LEASE, SECONDS, skew)
                for p, skew in enumerate(SKEWS)
            ],
        )
    finally:
        drop_tables(database_url, table_name)
    grants = [g for m in messages for g in m[2]]
    errors = [e for m in messages for e in m[3]]
    assert not errors, errors[:5]
    duplicates, overlaps = procs.check_grants(grants)
    assert not duplicates, duplicates[:5]
    assert not overlaps, overlaps[:5]
    by_skew: dict[Any, list[tuple[Any, ...]]] = {m[4]: m[2] for m in messages}
    assert all(by_skew[s] for s in SKEWS), "both skewed processes got grants"
    assert sorted(g[0] for g in grants) == list(range(1, len(grants) + 1))
    # Lock times are the database's: neither process's shifted clock leaks into them.
    real_now_ms = time.time() * 1000
    for skew, own in by_skew.items():
        for _version, locked_at_ms, _expires, _owner, python_time in own:
            assert abs(locked_at_ms - real_now_ms) < 600_000, (skew, locked_at_ms)
            assert abs(python_time - skew - locked_at_ms / 1000) < 600, (
                "the process really was skewed"
            )
    print(
        f"\nFIGURES clock-skew {backend}: skews={SKEWS} contenders={len(SKEWS) * THREADS} "
        f"lease_s={LEASE} grants={len(grants)} "
        f"(ahead={len(by_skew[SKEWS[0]])}, behind={len(by_skew[SKEWS[1]])}) "
        f"duplicate_versions={len(duplicates)} overlaps={len(overlaps)}"
    )
