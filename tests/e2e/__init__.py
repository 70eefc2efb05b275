"""Browser tests of example_app (a package, so its conftest does not shadow tests/conftest.py)."""
