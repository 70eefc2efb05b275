"""The root key of a namespace (``/``, ``[host]/``) can be locked on every backend (its
depth-0 acquisition has no ancestor to check: a statement of its own shape)."""

from __future__ import annotations

import pytest
from flask import Flask

from flask_locking import LockConflict, Locking
from tests.conftest import AppFactory


@pytest.mark.parametrize("root", ["/", "[tenant.example]/"])
def test_the_root_can_be_locked(make_app: AppFactory, database_url: str, root: str) -> None:
    app: Flask = make_app(database_url=database_url)
    locking: Locking = app.extensions["locking"].extension
    with app.app_context():
        lock = locking.acquire(root, "alice")
        assert lock.resource == root and lock.version == 1
        again = locking.acquire(root, "alice")  # the owner again: a refresh
        assert (again.token, again.version) == (lock.token, 1)
        with pytest.raises(LockConflict):
            locking.acquire(root, "bob")
        below = locking.acquire(root.rstrip("/") + "/docs/1", "bob")  # depth 0 covers no child
        assert below.version == 1
        locking.release(root, owner="alice")
        assert locking.acquire(root, "bob").version == 2
