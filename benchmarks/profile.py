"""``python -m benchmarks.profile [cycle|patch|patch-token|get] [N]``: where the time goes.

Profiles N in-process requests of one kind with pyinstrument (the ``bench`` extra) and
prints the call tree, so an optimisation starts from a measurement.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from .inprocess import USER, _expect, lock_cycle_ops, sqlite_locking_app


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    kind = args[0] if args else "cycle"
    count = int(args[1]) if len(args) > 1 else 2000
    try:
        from pyinstrument import Profiler
    except ImportError:
        print("pyinstrument is missing: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    with sqlite_locking_app() as (app, _directory):
        client = app.test_client()
        token = _expect(client.post("/docs/held/@lock", headers=USER), 200).headers["Lock-Token"]
        ops: dict[str, Callable[[], Any]] = {
            "cycle": lock_cycle_ops(app),
            "patch": lambda: client.patch("/docs/1"),
            "patch-token": lambda: client.patch("/docs/held", headers={"Lock-Token": token}),
            "get": lambda: client.get("/docs/1"),
        }
        op = ops[kind]
        for _ in range(200):
            op()
        profiler = Profiler(interval=0.0002)
        profiler.start()
        for _ in range(count):
            op()
        profiler.stop()
    print(profiler.output_text(unicode=True, color=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
