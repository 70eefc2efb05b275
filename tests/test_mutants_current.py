"""Every mutant of the mutation run (``python -m tests.mutation``) still finds its snippet.

The run takes minutes and is not part of the suite; this check is, so that a refactor of
the core that moves a mutated line fails here at once instead of leaving a mutant that
tests nothing (docs/contributing.rst).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.mutation.mutants import MUTANTS, Mutant

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.id for m in MUTANTS])
def test_mutant_snippet_is_found_exactly_once(mutant: Mutant) -> None:
    source = (ROOT / mutant.file).read_text(encoding="utf-8")
    assert source.count(mutant.find) == 1, (
        f"{mutant.id}: the snippet stands {source.count(mutant.find)} times in {mutant.file}; "
        "update it in tests/mutation/mutants.py"
    )
    assert mutant.find != mutant.replace
