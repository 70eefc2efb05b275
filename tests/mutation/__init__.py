"""A mutation run over the core: ``python -m tests.mutation`` (see docs/contributing.rst).

Not a test module: pytest collects nothing here (no ``test_*.py`` files), and ``.ci/run``
does not call it.
"""
