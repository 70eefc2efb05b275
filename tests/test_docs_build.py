"""The Sphinx docs build with warnings as errors, and list every configuration key."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flask_locking.config import DEFAULTS

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_config_key_is_documented() -> None:
    text = (DOCS / "configuration.rst").read_text()
    documented = set(re.findall(r"^\.\. data:: (LOCKING_\w+)$", text, flags=re.MULTILINE))
    assert documented == set(DEFAULTS), {
        "undocumented": sorted(set(DEFAULTS) - documented),
        "not a key": sorted(documented - set(DEFAULTS)),
    }


def test_sphinx_build_has_no_warnings(tmp_path: Path) -> None:
    if importlib.util.find_spec("sphinx") is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but Sphinx is not installed (it is in the [test] extra)")
        pytest.skip("Sphinx is not installed: pip install 'flask-locking[docs]'")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            "-d",
            str(tmp_path / "doctrees"),
            str(DOCS),
            str(tmp_path / "html"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "html" / "index.html").exists()
    assert (tmp_path / "html" / "api.html").exists()
