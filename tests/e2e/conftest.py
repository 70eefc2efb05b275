"""Browser tests of example_app: Playwright (sync API) driving Debian's Chromium.

Never downloads a browser. Without Chromium (or Playwright) the tests skip and say why,
unless ``CI`` (or ``LOCKING_TEST_REQUIRE_ALL``) is set: then they fail, because CI installs
both. The app runs in a thread of this process, on 127.0.0.1 and a free port, on a fresh
SQLite database per test. Screenshots go to ``test-artifacts/e2e/`` (not committed).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from example_app import create_app, db

CHROMIUM = os.environ.get("LOCKING_E2E_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
VIEWPORT = {"width": 1000, "height": 600}

#: Short locks so "the heartbeat keeps it alive past the first timeout" takes seconds, with
#: a heartbeat far enough inside the timeout to survive a loaded machine.
LOCK_TIMEOUT = 5
HEARTBEAT = 1
#: How long an expectation waits (other test runs may share the machine's two cores).
EXPECT_TIMEOUT_MS = 15_000


def _required() -> bool:
    return bool(os.environ.get("CI") or os.environ.get("LOCKING_TEST_REQUIRE_ALL"))


def _unavailable(reason: str) -> None:
    if _required():
        pytest.fail(f"{reason} (CI is set, so the browser tests must run)")
    pytest.skip(f"{reason}; install it (apt-get install chromium) or set CI to make this fail")


@pytest.fixture(scope="session")
def playwright_browser() -> Iterator[Any]:
    """One headless Chromium for the whole session."""
    if not os.path.exists(CHROMIUM):
        _unavailable(f"browser tests need Chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        _unavailable("browser tests need the playwright Python package")
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class LiveApp:
    """The example app served on a real socket."""

    app: Flask
    url: str
    lock_timeout: float
    heartbeat: float

    def __call__(self, path: str) -> str:
        return self.url + path

    def lock(self, resource: str) -> Any:
        """The live lock on ``resource`` as the server sees it, or ``None``."""
        with self.app.app_context():
            return self.app.extensions["locking"].extension.get(resource)

    def query(self, fn: Callable[[], Any]) -> Any:
        with self.app.app_context():
            return fn()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., LiveApp]]:
    """Start the example app with ``config`` overrides; stopped after the test."""
    started: list[tuple[Any, threading.Thread, Flask]] = []
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    def start(**config: Any) -> LiveApp:
        settings = {
            "TESTING": True,
            "LOCKING_DEFAULT_TIMEOUT": LOCK_TIMEOUT,
            "EXAMPLE_HEARTBEAT_SECONDS": HEARTBEAT,
            **config,
        }
        app = create_app(settings, instance_path=str(tmp_path / f"instance{len(started)}"))
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, name="example-app", daemon=True)
        thread.start()
        started.append((server, thread, app))
        return LiveApp(
            app,
            f"http://127.0.0.1:{server.server_port}",
            lock_timeout=float(app.config["LOCKING_DEFAULT_TIMEOUT"]),
            heartbeat=float(app.config["EXAMPLE_HEARTBEAT_SECONDS"]),
        )

    yield start
    for server, thread, app in started:
        server.shutdown()
        server.server_close()
        thread.join(10)
        app.extensions["locking"].close()
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()


@pytest.fixture
def live(serve: Callable[..., LiveApp]) -> LiveApp:
    """The app with short locks (5 s) and a 1 s heartbeat."""
    return serve()


@pytest.fixture
def sign_in(playwright_browser: Any) -> Iterator[Callable[[LiveApp, str], Any]]:
    """``sign_in(live, "alice")``: a page in a browser context of its own, signed in."""
    contexts: list[Any] = []

    def open_as(live: LiveApp, user: str) -> Any:
        context = playwright_browser.new_context(viewport=VIEWPORT, base_url=live.url)
        context.set_default_timeout(EXPECT_TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.goto("/login")
        page.click(f"#login-{user}")
        page.wait_for_selector("#current-user")
        return page

    yield open_as
    for context in contexts:
        context.close()


@pytest.fixture
def shot(request: pytest.FixtureRequest) -> Callable[..., Path]:
    """``shot(page, "name")`` saves a screenshot under test-artifacts/e2e/<test>/."""
    folder = ARTIFACTS / re.sub(r"[^\w.-]+", "_", request.node.name)

    def save(page: Any, name: str, docs: str | None = None) -> Path:
        """With ``docs`` (a file name) and ``UPDATE_DOCS_SCREENSHOTS=1``, the picture also
        replaces ``docs/_static/<docs>``."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.png"
        page.screenshot(path=str(path))
        if docs and os.environ.get("UPDATE_DOCS_SCREENSHOTS"):
            shutil.copyfile(path, ROOT / "docs" / "_static" / docs)
        return path

    return save
