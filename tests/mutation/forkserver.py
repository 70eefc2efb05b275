"""A pytest fork server: pay for importing pytest, Flask, SQLAlchemy and Hypothesis once
per worker instead of once per mutant.

Started with ``PYTHONPATH`` pointing at the worker's copy of the project. It imports the
third-party libraries only (never ``flask_locking`` or a test module), then for each request
line (JSON: ``{"args": [...], "log": path, "timeout": seconds}``) forks a child that runs
``pytest.main(args)`` with its output in ``log``, and answers one line: the exit code, or
``timeout``. The child imports the (mutated) package afresh, so every run sees the file as
it is on disk at that moment.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback

import flask  # noqa: F401
import hypothesis  # noqa: F401
import pytest
import sqlalchemy  # noqa: F401
import werkzeug.test  # noqa: F401


def _run(args: list[str], log: str, timeout: float) -> str:
    pid = os.fork()
    if pid == 0:  # the child: its own process group, so a timeout kills its helpers too
        os.setpgid(0, 0)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        code = 3
        try:
            code = int(pytest.main(args))
        except BaseException:  # noqa: BLE001 (reported in the log; the exit code says it failed)
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return str(os.waitstatus_to_exitcode(status))
        if time.monotonic() > deadline:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            return "timeout"
        time.sleep(0.05)


def main() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        print(_run(request["args"], request["log"], request["timeout"]), flush=True)


if __name__ == "__main__":
    main()
