"""The guard's work and memory are linear in the path length (docs/guard.rst).

A 64 KiB path once made one unauthenticated PATCH build every ancestor prefix (about 1 GB);
a GET of it cost nothing. Each request runs in a fresh process, so ``ru_maxrss`` is that
request's peak; the PATCH must stay under twice the GET's.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest

SCRIPT = textwrap.dedent(
    """
    import resource, sys
    from flask import Flask
    from flask_locking import Locking

    app = Flask(__name__, instance_path=sys.argv[1])
    app.config.update(TESTING=True, SECRET_KEY="x")
    app.add_url_rule("/files/<path:p>", "files", lambda p: "ok", methods=["GET", "PATCH"])
    locking = Locking(app)
    client = app.test_client()
    with app.app_context():
        locking.acquire("/files/a/a", "alice", depth="infinity")
    client.patch("/files/b")  # warm up: store open, every module imported
    client.get("/files/b")
    path = sys.argv[3] + "a/" * 32768
    status = getattr(client, sys.argv[2].lower())(path).status_code
    print(status, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    """
)


def _peak(tmp_path: Any, method: str, prefix: str) -> tuple[int, int]:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "instance"), method, prefix],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.split()
    return int(out[0]), int(out[1])


@pytest.mark.parametrize("prefix", ["/files/", "/nowhere/"])
def test_a_huge_patch_costs_what_a_get_costs(tmp_path: Any, prefix: str) -> None:
    get_status, get_peak = _peak(tmp_path, "GET", prefix)
    patch_status, patch_peak = _peak(tmp_path, "PATCH", prefix)
    assert get_status in (200, 404)
    # Routed below /files/a/a, which is locked with depth infinity: the guard still finds it.
    assert patch_status == (403 if prefix == "/files/" else 404)
    assert patch_peak < 2 * get_peak, (get_peak, patch_peak)


def test_only_lockable_ancestors_are_built() -> None:
    from flask_locking.resources import MAX_RESOURCE_LENGTH, ancestors

    built = ancestors("/a" * 32768)
    assert built[0] == "/" and built[-1] == "/a" * (MAX_RESOURCE_LENGTH // 2)
    assert len(built) == 1 + MAX_RESOURCE_LENGTH // 2  # not 32768 prefixes
