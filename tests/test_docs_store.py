"""The store of docs/stores.rst ("Write your own store"), run from the page itself.

The ``dict-store`` code block is read out of the .rst and executed as a module, so the page
cannot drift from what is tested: the store must register its scheme, pass the whole store
contract, and carry the example app's main flows (lock, edit, save, take over, release, the
lock listing, job locks). The same flows run on ``memory://``.
"""

from __future__ import annotations

import re
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask, request
from test_example_app import (  # the example app's flows, run here on other stores
    demo_app,
    doc,
    signed_in,
    test_job_lock_guard_and_save,
    test_lock_save_with_token_releases_and_records_the_lock_version,
    test_locks_page_lists_live_locks_and_only_admins_release,
    test_non_stealable_lock_only_the_admin_takes_over,
    test_take_over_a_stealable_lock_and_the_old_token_is_refused,
)

from example_app import db, locking
from example_app.models import Document
from flask_locking.store import LockStore, store_class_for, store_from_uri
from flask_locking.testing import StoreContract

PAGE = Path(__file__).resolve().parent.parent / "docs" / "stores.rst"

__all__ = [
    "test_job_lock_guard_and_save",
    "test_lock_save_with_token_releases_and_records_the_lock_version",
    "test_locks_page_lists_live_locks_and_only_admins_release",
    "test_non_stealable_lock_only_the_admin_takes_over",
    "test_take_over_a_stealable_lock_and_the_old_token_is_refused",
]


def code_block(page: Path, name: str) -> str:
    """The source of the ``.. code-block:: python`` whose ``:name:`` is ``name``."""
    text = page.read_text()
    found = re.search(
        rf"^\.\. code-block:: python\n    :name: {re.escape(name)}\n\n((?:    .*\n|\n)+)",
        text,
        flags=re.MULTILINE,
    )
    assert found is not None, f"no code block named {name!r} in {page.name}"
    return textwrap.dedent(found.group(1))


def load_docs_store() -> types.ModuleType:
    """Execute the page's store as the module ``docs_dict_store`` (it registers itself)."""
    module = types.ModuleType("docs_dict_store")
    sys.modules[module.__name__] = module
    source = compile(code_block(PAGE, "dict-store"), str(PAGE), "exec")
    exec(source, module.__dict__)  # noqa: S102 - the page's own code is under test
    return module


DOCS_STORE = load_docs_store()


def test_the_docs_store_is_registered_by_its_scheme() -> None:
    assert store_class_for("dict://") is DOCS_STORE.DictStore
    assert issubclass(DOCS_STORE.DictStore, LockStore)


class TestDocsStoreContract(StoreContract):
    @pytest.fixture
    def store(self) -> Iterator[LockStore]:
        store = store_from_uri("dict://")
        yield store
        store.dispose()


@pytest.fixture(params=["dict://", "memory://"])
def demo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    """The example app with its locks in the docs store, or in ``memory://``."""
    with demo_app(tmp_path, LOCKING_DATABASE_URI=request.param) as app:
        yield app


def test_the_demo_keeps_its_locks_in_the_chosen_store(demo: Flask) -> None:
    alice = signed_in(demo, "alice")
    assert alice.post("/docs/welcome/@lock").status_code == 200
    with demo.app_context():
        store = locking.engine.store
        assert store_class_for(demo.config["LOCKING_DATABASE_URI"]) is type(store)
        assert [row.resource for row in store.live_rows()] == ["/docs/welcome"]


def test_a_save_under_a_lock_taken_over_and_saved_in_between_is_fenced(demo: Flask) -> None:
    """Locks outside the app's database cannot be held in its transaction: the save fences
    the document instead, so a save under an older grant than the last save's is refused
    (412) and writes nothing."""

    @demo.before_request  # runs after the guard: bob's take-over and save land in the gap
    def take_over_and_save_in_the_gap() -> None:
        if request.headers.get("X-Take-Over"):
            locking.release("/docs/welcome", owner="bob", force=True)
            bob_lock = locking.acquire("/docs/welcome", "bob")
            # bob's save, as his request would have made it under his new grant
            document = db.session.query(Document).filter_by(slug="welcome").one()
            document.body, document.lock_version = "Bob's", bob_lock.version
            db.session.commit()

    alice = signed_in(demo, "alice")
    token = alice.post("/docs/welcome/@lock").get_json()["token"]
    lost = alice.patch(
        "/docs/welcome", json={"body": "stale"}, headers={"Lock-Token": token, "X-Take-Over": "1"}
    )
    assert lost.status_code == 412, lost.get_json()
    assert lost.get_json()["error"]["type"] == "PreconditionFailed"
    assert doc(demo, "welcome")["body"] == "Bob's"
