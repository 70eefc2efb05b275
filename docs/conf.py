"""Sphinx configuration for the flask-locking documentation.

Build: ``sphinx-build -W -b html docs docs/_build/html`` (warnings are errors, as in CI).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "flask-locking"
author = "flask-locking developers"
copyright = "flask-locking developers"

from flask_locking import __version__  # noqa: E402 - importable once sys.path is set above

release = __version__
version = ".".join(__version__.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
]

# No network at build time: intersphinx inventories are not fetched.
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}

# A console example that Pygments cannot lex strictly is still shown (relaxed mode).
suppress_warnings = ["misc.highlighting_failure"]

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []
html_static_path = ["_static"]
# Code blocks wrap and tables stay inside the text column (see _static/layout.css).
html_css_files = ["layout.css"]

html_theme = "alabaster"
html_theme_options = {
    "description": "Pessimistic edit locks for Flask REST APIs",
    "fixed_sidebar": True,
    "page_width": "1100px",
}
html_title = f"flask-locking {release}"
