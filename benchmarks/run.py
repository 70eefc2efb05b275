"""``python -m benchmarks [--quick] [--only SECTION ...] [--json FILE]``

Sections: ``cycle`` and ``guard`` (in-process, WSGI test client), ``server`` and
``contention`` (gunicorn on 127.0.0.1 driven by wrk, SQLite, PostgreSQL and MariaDB), ``scale``
(1 / 10k / 1M stored locks) and ``memory`` (worker RSS over many lock cycles);
``instructions`` (callgrind's instruction counts of the cycle and guard variants) runs
only when named in ``--only``: it takes minutes.
PostgreSQL runs when ``--postgresql URL`` or ``BENCH_POSTGRESQL_URL`` is given, MariaDB
when ``--mysql URL`` or ``BENCH_MYSQL_URL`` is.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import version

from .common import Report, Settings

SECTIONS = ("cycle", "guard", "server", "contention", "scale", "memory")
#: sections that run only when ``--only`` names them
ON_REQUEST = ("instructions",)


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "cpus": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "flask": version("flask"),
        "werkzeug": version("werkzeug"),
        "sqlalchemy": version("sqlalchemy"),
    }
    try:
        found = re.search(r"\d+\.\d+", subprocess.run(
            ["psql", "--version"], capture_output=True, text=True, timeout=5, check=False
        ).stdout)
        if found:
            info["postgresql"] = found.group(0) + " (psql client)"
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def runners() -> dict[str, Callable[[Report, Settings], None]]:
    from . import inprocess, instructions, scale, server

    return {
        "cycle": inprocess.run_lock_cycle,
        "guard": inprocess.run_guard,
        "server": server.run_server,
        "contention": server.run_contention,
        "scale": scale.run_scale,
        "memory": scale.run_memory,
        "instructions": instructions.run_instructions,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs (figures are rough)")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--only", nargs="+", choices=SECTIONS + ON_REQUEST, metavar="SECTION",
                        help=f"run only these sections ({', '.join(SECTIONS + ON_REQUEST)})")
    parser.add_argument("--skip", nargs="+", choices=SECTIONS + ON_REQUEST, metavar="SECTION",
                        default=[],
                        help="leave these sections out")
    parser.add_argument("--postgresql", metavar="URL",
                        default=os.environ.get("BENCH_POSTGRESQL_URL"),
                        help="also measure PostgreSQL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    parser.add_argument("--mysql", metavar="URL", default=os.environ.get("BENCH_MYSQL_URL"),
                        help="also measure MariaDB/MySQL "
                             "(e.g. mysql+pymysql://root@127.0.0.1:3306/test)")
    parser.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    args = parser.parse_args(argv)

    settings = Settings.make(args.quick, args.smoke)
    settings.postgresql_url = args.postgresql
    settings.mysql_url = args.mysql
    report = Report()
    report.section("Machine")
    for key, value in machine().items():
        report.row(key, value=value)
    report.row("mode", value="smoke" if args.smoke else "quick" if args.quick else "full")

    selected = [s for s in (args.only or SECTIONS) if s not in args.skip]
    table = runners()
    started = time.perf_counter()
    for name in selected:
        t0 = time.perf_counter()
        table[name](report, settings)
        print(f"  ({name}: {time.perf_counter() - t0:.1f}s)", flush=True)
    print(f"\nTotal {time.perf_counter() - started:.1f}s", flush=True)
    if args.json:
        report.dump(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
