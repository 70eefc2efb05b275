"""The package is fully typed (mypy --strict) and lint-clean (ruff), as CI requires."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _require(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {module} is not installed (it is in the [test] extra)")
        pytest.skip(f"{module} is not installed")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )


def test_py_typed_is_shipped() -> None:
    assert (ROOT / "flask_locking" / "py.typed").exists()


def test_mypy_strict(tmp_path: Path) -> None:
    _require("mypy")
    result = _run("mypy", "--strict", "--cache-dir", str(tmp_path / "mypy"), "flask_locking")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff() -> None:
    _require("ruff")
    result = _run("ruff", "check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr
