"""The benchmark suite runs (its smallest mode, in-process sections only).

Timings are never asserted: this proves the one command works and that every in-process
section still exercises real lock cycles and guarded requests (each section checks the
status codes it relies on before timing anything, so a broken endpoint fails here).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_benchmarks_run_in_smoke_mode(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--smoke",
            "--only",
            "cycle",
            "guard",
            "scale",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    figures = json.loads(out.read_text())
    sections = " | ".join(figures)
    assert "Lock cycle" in sections and "Guard overhead" in sections and "Scale" in sections
    rows = [row for section in figures.values() for row in section if "ratio" in row]
    labels = {row["label"] for row in rows}
    assert {"bare Flask route pair", "flask-locking @lock cycle"} <= labels
    assert all(row["ratio"] > 0 for row in rows)
    # the guard's promise, checked by counting statements (not by timing)
    notes = [row["note"] for section in figures.values() for row in section if "note" in row]
    assert "SQL statements for a GET: 0 []" in notes
    assert any(note.startswith("SQL statements for a PATCH unlocked: 1 ") for note in notes)


def test_store_benchmark_runs(tmp_path: Path) -> None:
    """``python -m benchmarks.store`` still drives the store's current API (it is not part
    of ``python -m benchmarks``, so nothing else would notice it broke)."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.store", "--count", "5"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "acquire + live + release" in done.stdout
    assert "event append" in done.stdout


def test_instruction_variants_run_as_children() -> None:
    """Every variant of ``python -m benchmarks.instructions`` builds and runs in its child
    mode (what callgrind watches), here without valgrind and with a tiny count."""
    from benchmarks.instructions import VARIANTS

    children = {
        name: subprocess.Popen(
            [sys.executable, "-m", "benchmarks.instructions", "--child", name, "3"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONWARNINGS": "error"},
        )
        for name in VARIANTS
    }
    failed = {}
    for name, child in children.items():
        _out, err = child.communicate(timeout=240)
        if child.returncode != 0:
            failed[name] = err[-1500:]
    assert not failed, failed


#: callgrind's stderr (``--instr-atstart=no``) for ``--child patch-guarded 20`` and
#: ``--child patch-guarded 40``, recorded on the development machine
CALLGRIND_N = """\
==25351== Callgrind, a call-graph generating cache profiler
==25351== Copyright (C) 2002-2017, and GNU GPL'd, by Josef Weidendorfer et al.
==25351== Using Valgrind-3.19.0 and LibVEX; rerun with -h for copyright info
==25351== Command: python3.11 -m benchmarks.instructions --child patch-guarded 20
==25351==
==25351== For interactive control, run 'callgrind_control -h'.
==25351== brk segment overflow in thread #1: can't grow to 0x4869000
==25351== (see section Limitations in user manual)
==25351== NOTE: further instances of this message will not be shown
==25351==
==25351== Events    : Ir
==25351== Collected : 180379606
==25351==
==25351== I   refs:      180,379,606
"""
CALLGRIND_2N = """\
==25352== Callgrind, a call-graph generating cache profiler
==25352== Copyright (C) 2002-2017, and GNU GPL'd, by Josef Weidendorfer et al.
==25352== Using Valgrind-3.19.0 and LibVEX; rerun with -h for copyright info
==25352== Command: python3.11 -m benchmarks.instructions --child patch-guarded 40
==25352==
==25352== For interactive control, run 'callgrind_control -h'.
==25352== brk segment overflow in thread #1: can't grow to 0x4869000
==25352== (see section Limitations in user manual)
==25352== NOTE: further instances of this message will not be shown
==25352==
==25352== Events    : Ir
==25352== Collected : 203718856
==25352==
==25352== I   refs:      203,718,856
"""


def test_instructions_per_operation_from_callgrind_output() -> None:
    from benchmarks.instructions import collected, per_operation

    total_n, total_2n = collected(CALLGRIND_N), collected(CALLGRIND_2N)
    assert (total_n, total_2n) == (180_379_606, 203_718_856)
    assert per_operation(total_n, total_2n, 20) == 1_166_962.5
    with pytest.raises(ValueError, match="Collected"):
        collected("==1== Events    : Ir\n")


def test_instructions_without_valgrind(tmp_path: Path) -> None:
    """No valgrind on the PATH: the section of ``python -m benchmarks`` says so and is skipped,
    the standalone command fails with the same message."""
    env = {**os.environ, "PATH": str(tmp_path)}
    section = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--only", "instructions"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False, env=env,
    )
    assert section.returncode == 0, section.stderr
    assert "valgrind (with callgrind_control) is not installed" in section.stderr
    alone = subprocess.run(
        [sys.executable, "-m", "benchmarks.instructions"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False, env=env,
    )
    assert alone.returncode == 2
    assert "valgrind (with callgrind_control) is not installed" in alone.stderr


def test_server_app_raw_route_writes_a_row(tmp_path: Path, monkeypatch: Any) -> None:
    """The real-server section's storage limit must do its upsert: spelled ``.../@lock`` it
    was served by the content dialect (a 404) and measured nothing for several rounds."""
    import sqlite3

    from benchmarks.apps import server_app

    database = tmp_path / "server.db"
    monkeypatch.setenv("BENCH_DATABASE_URI", f"sqlite:///{database}")
    monkeypatch.setenv("LOCKING_TABLE_NAME", "bench_smoke")
    client = server_app().test_client()
    for doc in ("a", "b"):
        response = client.post(f"/raw/{doc}/lock", headers={"X-User": "u1"})
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.headers["Lock-Token"]
    with sqlite3.connect(database) as conn:
        rows = conn.execute("SELECT resource, owner FROM raw_locks ORDER BY resource").fetchall()
    assert rows == [("/docs/a", "u1"), ("/docs/b", "u1")]
    # and the load script asks for that very route
    lua = (Path(__file__).parent.parent / "benchmarks" / "load.lua").read_text()
    assert '"/raw/" .. id .. "-" .. n .. "/lock"' in lua


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="the CPU meter reads Linux's /proc")
def test_cpu_meter_reads_the_cpu_of_a_masters_children() -> None:
    # The server section's CPU per request: the meter sums the CPU of the master's children
    # (the gunicorn workers) and splits it per request; a child that burns 0.3 s must show
    # as 0.3 s, and the master's own CPU (this test's loop) must not.
    import time

    from benchmarks.cpu import CpuMeter, per_request_us

    meter = CpuMeter(os.getpid(), "postgresql")
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"
    before = meter.read()
    child = subprocess.Popen([sys.executable, "-c", burn + "\ntime.sleep(10)"])
    try:
        deadline = time.monotonic() + 30
        while True:
            after = meter.read()
            assert before is not None and after is not None
            if after.workers - before.workers >= 0.3 or time.monotonic() > deadline:
                break
            spin = time.process_time()
            while time.process_time() - spin < 0.02:  # the master's own CPU: never counted
                pass
        assert 0.3 <= after.workers - before.workers < 0.6
        figures = per_request_us(before, after, 1000)
        assert figures is not None and 300 <= figures[0] < 600
        assert per_request_us(before, None, 1000) is None
        assert per_request_us(before, after, 0) is None
    finally:
        child.kill()
        child.wait()


#: A statement that keeps the database server busy for a while, per backend.
_BURN = {
    "postgresql": "SELECT count(*) FROM generate_series(1, 4000000)",
    "mysql": "SELECT BENCHMARK(4000000, MD5('flask-locking'))",
}


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="the meter reads Linux's /proc")
@pytest.mark.parametrize("server", ["postgresql", "mysql"])
def test_serving_threads_meter_counts_only_this_process_connections(
    server: str, tmp_path: Path
) -> None:
    # ``python -m benchmarks.store``'s server column: the server CPU spent on this process's
    # connections. A busy statement on one of them must show; the same statement run at
    # the same time by another process on its own connection must not.
    import sqlalchemy as sa
    from conftest import backend_url

    from benchmarks.cpu import ServingThreadsMeter

    url = backend_url(server, tmp_path)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    admin, worker = engine.raw_connection(), engine.raw_connection()
    other = None
    try:
        meter = ServingThreadsMeter("postgresql" if server == "postgresql" else "mariadb", admin)
        assert meter.resolve() == 1  # the worker's; the admin connection is left out
        admin.rollback()
        start = meter.read()
        cursor = worker.cursor()
        cursor.execute(_BURN[server])
        cursor.fetchall()
        own = meter.read() - start
        assert own >= 0.05, own
        # another process burning alone: this process's meter stays (almost) still
        burn = (f"import sqlalchemy as sa\nc = sa.create_engine({url!r}).raw_connection()\n"
                f"cur = c.cursor()\nfor _ in range(2):\n    cur.execute({_BURN[server]!r})\n"
                "    cur.fetchall()\n")
        before = meter.read()
        other = subprocess.run([sys.executable, "-c", burn], cwd=ROOT, capture_output=True,
                               text=True, timeout=120, check=False)
        assert other.returncode == 0, other.stderr
        assert meter.read() - before < own / 4
    finally:
        worker.close()
        admin.close()
        engine.dispose()
