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
