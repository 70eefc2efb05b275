"""Peers measured in the same run: wsgidav's LOCK / UNLOCK with its default in-memory lock
storage (the ``bench`` extra installs it; the row is skipped with a message without it)."""

from __future__ import annotations

import os
from collections.abc import Callable

LOCKINFO = (
    '<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope>'
    "<D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype>"
    "<D:owner>alice</D:owner></D:lockinfo>"
)


def wsgidav_cycle_ops(directory: str) -> Callable[[], None] | None:
    """One wsgidav LOCK + UNLOCK of a file (in-memory lock storage, anonymous access,
    WSGI test client), or ``None`` when wsgidav is not installed."""
    try:
        from werkzeug.test import Client
        from wsgidav.fs_dav_provider import FilesystemProvider
        from wsgidav.wsgidav_app import WsgiDAVApp
    except ImportError:
        return None
    root = os.path.join(directory, "wsgidav")
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "doc1.txt"), "w", encoding="utf-8") as handle:
        handle.write("content")
    app = WsgiDAVApp({
        "provider_mapping": {"/": FilesystemProvider(root)},
        "simple_dc": {"user_mapping": {"*": True}},
        "lock_storage": True,  # the default: a dict in this process
        "property_manager": None,
        "verbose": 0,
        "logging": {"enable": False},
    })
    client = Client(app)
    headers = {"Timeout": "Second-600", "Depth": "0", "Content-Type": "application/xml"}

    def cycle() -> None:
        locked = client.open("/doc1.txt", method="LOCK", data=LOCKINFO, headers=headers)
        client.open("/doc1.txt", method="UNLOCK",
                    headers={"Lock-Token": locked.headers["Lock-Token"]})

    # correctness once, outside the timed loop
    locked = client.open("/doc1.txt", method="LOCK", data=LOCKINFO, headers=headers)
    token = locked.headers.get("Lock-Token")
    unlocked = client.open("/doc1.txt", method="UNLOCK", headers={"Lock-Token": token or ""})
    if locked.status_code != 200 or not token or unlocked.status_code != 204:
        raise RuntimeError(f"wsgidav LOCK/UNLOCK: {locked.status_code} / {unlocked.status_code}")
    return cycle
