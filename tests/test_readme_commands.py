"""The README's shell commands work as written: the quickstart's curls against the
quickstart app, and the demo's curls against the demo, each answering the status its
comment promises. Only the host and port are changed (to a free one on 127.0.0.1)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")

# Every curl answers its status on stderr, in order; stdout stays what the reader sees.
PRELUDE = "curl() { command curl -sS -w '%{stderr}%{http_code}\\n' \"$@\"; }\n"


def block(lang: str, containing: str) -> str:
    """The README code block of ``lang`` that contains ``containing``."""
    for found, text in re.findall(r"```(\w+)\n(.*?)```", README, flags=re.DOTALL):
        if found == lang and containing in text:
            return str(text)
    raise AssertionError(f"no {lang} block with {containing!r} in README.md")


def promised(script: str) -> list[int]:
    """The status each curl command's comment promises (continuation lines joined)."""
    logical = script.replace("\\\n", " ").splitlines()
    return [
        int(re.search(r"#\s*(\d{3})\b", line).group(1))  # type: ignore[union-attr]
        for line in logical
        if "curl " in line
    ]


def run(script: str) -> tuple[list[int], str]:
    result = subprocess.run(
        ["bash", "-c", PRELUDE + script], capture_output=True, text=True, timeout=60, check=False
    )
    codes = [int(code) for code in re.findall(r"^(\d{3})$", result.stderr, flags=re.MULTILINE)]
    return codes, result.stdout + result.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on port {port}")


@pytest.fixture
def quickstart(tmp_path: Path) -> Iterator[int]:
    """The README's quickstart app, saved as app.py and run with ``flask --app app run``."""
    (tmp_path / "app.py").write_text(block("python", "Locking(app)"))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "app", "run", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(port)
        yield port
    finally:
        server.terminate()
        server.wait(10)


def test_quickstart_curls_work_as_written(quickstart: int) -> None:
    script = block("console", "@lock")
    assert "TOKEN=" in script  # the token the third command sends is set by the first
    commands = re.sub(r"^\$ ", "", script, flags=re.MULTILINE).replace(
        "localhost:5000", f"127.0.0.1:{quickstart}"
    )
    codes, output = run(commands)
    assert codes == promised(script) == [200, 403, 200, 200], output


def test_demo_curls_work_as_written(tmp_path: Path) -> None:
    from example_app import create_app, db

    app = create_app({"TESTING": True}, instance_path=str(tmp_path / "instance"))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        script = block("bash", "mint()")
        codes, output = run(script.replace("127.0.0.1:5000", f"127.0.0.1:{server.server_port}"))
        assert codes == promised(script) == [201, 409, 423, 204, 201, 401, 204], output
        assert "Lock-Token:" in output  # the first answer's header, shown by curl -i
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
        app.extensions["locking"].close()
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()
