"""The built manual keeps code blocks and tables inside its text column (no clipped
lines behind a scrollbar, nothing past the column's edge), on a 1280 px wide screen."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(importlib.util.find_spec("sphinx") is None, reason="needs Sphinx"),
]

OVERFLOWING = """() => {
  const column = document.querySelector("div.body").getBoundingClientRect().right;
  return [...document.querySelectorAll("div.body pre, div.body table")]
    .filter((e) => e.scrollWidth > e.clientWidth + 1 ||
      e.getBoundingClientRect().right > column + 1)
    .map((e) => e.tagName + ": " + e.textContent.trim().slice(0, 60));
}"""


def test_code_blocks_and_tables_stay_in_the_text_column(
    playwright_browser: Any, tmp_path: Path
) -> None:
    out = tmp_path / "html"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-q",
            "-b",
            "html",
            "-d",
            str(tmp_path / "doctrees"),
            str(DOCS),
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=240,
    )
    page = playwright_browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        overflowing = {}
        for source in sorted(DOCS.glob("*.rst")):
            page.goto((out / f"{source.stem}.html").as_uri())
            found = page.evaluate(OVERFLOWING)
            if found:
                overflowing[source.stem] = found
        assert overflowing == {}
    finally:
        page.close()
