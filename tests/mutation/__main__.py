"""Run every mutant of :mod:`tests.mutation.mutants` against its tests; report per file.

Each worker copies the project into a temporary directory once. For each mutant it writes
the mutated file into its copy, runs pytest (``-x``: the first failure kills the mutant) on
the test files chosen for that source file, and puts the original back. The package is
imported from the copy (``PYTHONPATH``), never from the checkout, and no bytecode is
written, so a mutated module can never be served from a stale ``.pyc``.

Exit status: 0 when every surviving mutant is documented as equivalent, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .mutants import MUTANTS, Mutant

ROOT = Path(__file__).resolve().parents[2]

# The tests run against each mutant of a file: the first two files are a first stage (with
# -x, most mutants die there, and collecting two files is cheap), the rest a second stage
# run only for a mutant that survived the first. Missing files are skipped, so the lists
# survive test files being renamed; add new test files here.
#
# The files written to kill mutants (NEW_TESTS) come last, after the suite that existed
# before them: a mutant they kill survived everything else, so one run gives the score
# without them too ("before", see the summary).
NEW_TESTS = [
    "tests/test_core_boundaries.py",
    "tests/test_store_edges.py",
    "tests/test_reshaped_core.py",
]
_STORE_TESTS = [
    "tests/test_store_contract.py",
    "tests/test_python_api.py",
    "tests/test_guard.py",
    "tests/test_signals.py",
    "tests/test_races.py",
    "tests/test_release_tombstone.py",
    *NEW_TESTS,
]
TESTS: dict[str, list[str]] = {
    "flask_locking/guard.py": [
        "tests/test_guard.py",
        "tests/test_extension.py",
        "tests/test_audit.py",
        "tests/test_jobs_dialect.py",
        "tests/test_content_dialect.py",
        "tests/test_unlock_on_save.py",
        *NEW_TESTS,
    ],
    "flask_locking/engine.py": [
        "tests/test_python_api.py",
        "tests/test_tokens_resources.py",
        "tests/test_guard.py",
        "tests/test_signals.py",
        "tests/test_extension.py",
        "tests/test_audit.py",
        "tests/test_events.py",
        *NEW_TESTS,
    ],
    "flask_locking/lock.py": [
        "tests/test_python_api.py",
        "tests/test_events.py",
        "tests/test_guard.py",
        *NEW_TESTS,
    ],
    "flask_locking/tokens.py": [
        "tests/test_tokens_resources.py",
        "tests/test_guard.py",
        "tests/test_bad_input.py",
        "tests/test_extension.py",
        *NEW_TESTS,
    ],
    "flask_locking/keys.py": [
        "tests/test_resource_identity.py",
        "tests/test_key_agreement.py",
        "tests/test_tenants.py",
        "tests/test_guard.py",
        "tests/test_jobs_dialect.py",
        *NEW_TESTS,
    ],
    "flask_locking/verified.py": [
        "tests/test_guard.py",
        "tests/test_writes.py",
        "tests/test_extension.py",
        *NEW_TESTS,
    ],
    "flask_locking/identity.py": [
        "tests/test_guard.py",
        "tests/test_extension.py",
        "tests/test_audit.py",
        *NEW_TESTS,
    ],
    "flask_locking/resources.py": [
        "tests/test_tokens_resources.py",
        "tests/test_guard.py",
        "tests/test_store_contract.py",
        "tests/test_python_api.py",
        "tests/test_bad_input.py",
        *NEW_TESTS,
    ],
    "flask_locking/store/sql.py": _STORE_TESTS,
    "flask_locking/store/mysql.py": _STORE_TESTS,
    "flask_locking/store/sqlite.py": _STORE_TESTS,
    "flask_locking/store/upsert.py": _STORE_TESTS,
}

_BACKEND_VARIABLES = (
    "LOCKING_TEST_POSTGRESQL_URL",
    "LOCKING_TEST_MYSQL_URL",
    "LOCKING_TEST_REDIS_URL",
)


def _apply(source: str, mutant: Mutant) -> str | None:
    """The mutated source, or ``None`` when the snippet is gone or ambiguous (stale)."""
    if source.count(mutant.find) != 1:
        return None
    return source.replace(mutant.find, mutant.replace)


def _copy_tree(target: Path) -> None:
    ignore = shutil.ignore_patterns(
        "__pycache__",
        "*.pyc",
        ".git",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        "_build",
        "node_modules",
    )
    for name in ("flask_locking", "tests", "example_app", "docs"):  # docs: tests run its examples
        shutil.copytree(ROOT / name, target / name, ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", target / "pyproject.toml")


#: Plugins the selected tests do not use: not loading them saves seconds per mutant.
_UNUSED_PLUGINS = ("cacheprovider", "benchmark", "anyio", "schemathesis")


class _Runner:
    """Runs pytest in a worker's copy of the project through a fork server (see
    :mod:`tests.mutation.forkserver`)."""

    def __init__(self, copy: Path, env: dict[str, str]) -> None:
        self.copy = copy
        self.log = copy.parent / "pytest.log"
        self.server = subprocess.Popen(
            [sys.executable, "-m", "tests.mutation.forkserver"],
            cwd=copy,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def close(self) -> None:
        assert self.server.stdin is not None
        self.server.stdin.close()
        self.server.wait()

    def staged(self, tests: list[str], timeout: float) -> tuple[str, str]:
        """Run the first two (most pointed) test files, then the rest only if the mutant
        survived them: most mutants die in the first stage, which collects far fewer tests."""
        deadline = time.monotonic() + timeout
        outcome, detail = "survived", ""
        for stage in (tests[:2], tests[2:]):
            if stage:
                outcome, detail = self.run(stage, max(1.0, deadline - time.monotonic()))
                if outcome != "survived":
                    break
        return outcome, detail

    def run(self, tests: list[str], timeout: float) -> tuple[str, str]:
        present = [t for t in tests if (self.copy / t).exists()]
        if not present:
            return "survived", "no test file present"
        plugins = [arg for name in _UNUSED_PLUGINS for arg in ("-p", f"no:{name}")]
        # (the server imported Hypothesis before pytest could mark it for assertion rewriting)
        quiet = ["-W", "ignore::pytest.PytestAssertRewriteWarning"]
        args = [
            "-x",
            "-q",
            *plugins,
            *quiet,
            "--basetemp",
            str(self.copy.parent / "pytest-tmp"),
            *present,
        ]
        assert self.server.stdin is not None and self.server.stdout is not None
        request = {"args": args, "log": str(self.log), "timeout": timeout}
        self.server.stdin.write(json.dumps(request) + "\n")
        self.server.stdin.flush()
        answer = self.server.stdout.readline().strip()
        output = self.log.read_text(errors="replace") if self.log.exists() else ""
        tail = (output.strip().splitlines() or [""])[-1]
        if answer == "timeout":
            return "timeout", ""
        if answer == "0":
            return "survived", tail
        if answer == "1":
            return "killed", _first_failure(output) or tail
        # 2: interrupted / collection error (e.g. the mutant does not import); 3, 4: internal
        return "error", f"pytest exit {answer}: {tail}"


def _first_failure(output: str) -> str:
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line
    return ""


def _environment(copy: Path, all_backends: bool) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(copy)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if not all_backends:
        for variable in _BACKEND_VARIABLES:
            env.pop(variable, None)
    return env


def _worker(
    number: int,
    jobs: queue.Queue[Mutant],
    results: list[dict[str, Any]],
    lock: threading.Lock,
    args: argparse.Namespace,
    base: Path,
) -> None:
    copy = base / f"worker{number}" / "project"
    copy.parent.mkdir(parents=True)
    _copy_tree(copy)
    runner = _Runner(copy, _environment(copy, args.all_backends))
    try:
        _work(runner, jobs, results, lock, args)
    finally:
        runner.close()


def _work(
    runner: _Runner,
    jobs: queue.Queue[Mutant],
    results: list[dict[str, Any]],
    lock: threading.Lock,
    args: argparse.Namespace,
) -> None:
    while True:
        try:
            mutant = jobs.get_nowait()
        except queue.Empty:
            return
        path = runner.copy / mutant.file
        original = path.read_text()
        mutated = _apply(original, mutant)
        started = time.monotonic()
        if mutated is None:
            outcome, detail = "stale", f"snippet found {original.count(mutant.find)} times"
        elif mutant.needs and not args.all_backends:
            outcome, detail = "skipped", f"only {mutant.needs} shows it: run with --all-backends"
        else:
            path.write_text(mutated)
            try:
                outcome, detail = runner.staged(TESTS[mutant.file], args.timeout)
            finally:
                path.write_text(original)
        seconds = time.monotonic() - started
        record = {
            **mutant._asdict(),
            "outcome": outcome,
            "detail": detail,
            "seconds": round(seconds, 1),
        }
        with lock:
            results.append(record)
            flag = " (equivalent)" if outcome == "survived" and mutant.equivalent else ""
            print(
                f"[{len(results):3}/{args.total}] {outcome:8} {mutant.id}{flag}  "
                f"{seconds:.0f}s  {detail}",
                flush=True,
            )


def _by_new_test(record: dict[str, Any]) -> bool:
    return any(str(record["detail"]).startswith((f"FAILED {t}", f"ERROR {t}")) for t in NEW_TESTS)


def _summary(results: list[dict[str, Any]]) -> tuple[str, bool]:
    header = (
        f"{'file':34} {'mutants':>7} {'killed':>6} {'survived':>8} {'equiv.':>6} "
        f"{'stale':>5} {'score':>6} {'score*':>6} {'before':>6}"
    )
    lines = [header]
    files = sorted({r["file"] for r in results})
    clean = True
    for name in [*files, "TOTAL"]:
        rows = [r for r in results if name in (r["file"], "TOTAL")]
        ran = [r for r in rows if r["outcome"] not in ("stale", "skipped")]
        killed = sum(r["outcome"] in ("killed", "timeout", "error") for r in ran)
        before = sum(
            r["outcome"] in ("killed", "timeout", "error") and not _by_new_test(r) for r in ran
        )
        survived = [r for r in ran if r["outcome"] == "survived"]
        equivalent = sum(bool(r["equivalent"]) for r in survived)
        stale = sum(r["outcome"] == "stale" for r in rows)
        score = killed / len(ran) if ran else 1.0
        real = len(ran) - equivalent
        score_real = killed / real if real else 1.0
        lines.append(
            f"{name:34} {len(ran):7} {killed:6} {len(survived):8} {equivalent:6} {stale:5} "
            f"{score:6.0%} {score_real:6.0%} {before / len(ran) if ran else 1:6.0%}"
        )
    survivors = [r for r in results if r["outcome"] == "survived"]
    if survivors:
        lines.append("\nSurvivors:")
    for r in sorted(survivors, key=lambda r: r["id"]):
        if r["equivalent"]:
            lines.append(f"  {r['id']} (equivalent: {r['equivalent']})")
        else:
            clean = False
            lines.append(f"  {r['id']} NOT KILLED: {r['what']}  [{r['file']}: {r['find']!r}]")
    for r in results:
        if r["equivalent"] and r["outcome"] in ("killed", "timeout", "error"):
            clean = False
            lines.append(
                f"  {r['id']} is marked equivalent but was KILLED ({r['detail']}): drop the claim"
            )
        if r["outcome"] == "skipped":
            lines.append(f"  {r['id']} skipped: {r['detail']}")
    stale = [r for r in results if r["outcome"] == "stale"]
    for r in stale:
        clean = False  # a stale mutant tests nothing: fix its snippet before trusting the score
        lines.append(
            f"  {r['id']} STALE ({r['detail']}): update its snippet in tests/mutation/mutants.py"
        )
    lines.append(
        "\nscore = killed / mutants; score* = killed / (mutants - documented equivalents);\n"
        "before = killed / mutants without the tests in NEW_TESTS (they run last, so a\n"
        "mutant they kill survived every other test)"
    )
    return "\n".join(lines), clean


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutation", description=__doc__)
    parser.add_argument("-j", "--jobs", type=int, default=2, help="parallel workers (default 2)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=300,
        help="seconds one mutant's test run may take; longer counts as killed",
    )
    parser.add_argument(
        "--file",
        action="append",
        default=[],
        help="only mutants of this source file (repeatable), e.g. engine.py",
    )
    parser.add_argument("--id", action="append", default=[], help="only this mutant (repeatable)")
    parser.add_argument(
        "--all-backends",
        action="store_true",
        help="keep LOCKING_TEST_*_URL (PostgreSQL/MariaDB too); default SQLite only",
    )
    parser.add_argument("--json", type=Path, help="also write every result to this file")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="skip checking that the selected tests pass unmutated",
    )
    args = parser.parse_args(argv)

    selected = [
        m
        for m in MUTANTS
        if (not args.file or any(m.file.endswith(f) for f in args.file))
        and (not args.id or m.id in args.id)
    ]
    if args.list:
        for m in selected:
            print(f"{m.id:32} {m.file:32} {m.what}" + (" [equivalent]" if m.equivalent else ""))
        return 0
    args.total = len(selected)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="flask-locking-mutation-") as tmp:
        base = Path(tmp)
        if not args.no_baseline:
            copy = base / "baseline" / "project"
            copy.parent.mkdir(parents=True)
            _copy_tree(copy)
            tests = sorted({t for m in selected for t in TESTS[m.file]})
            runner = _Runner(copy, _environment(copy, args.all_backends))
            try:
                outcome, detail = runner.run(tests, args.timeout * 3)
            finally:
                runner.close()
            if outcome != "survived":
                print(f"The unmutated tests do not pass ({outcome}): {detail}", file=sys.stderr)
                return 2
            print(f"baseline: selected tests pass unmutated ({detail})", flush=True)
        jobs: queue.Queue[Mutant] = queue.Queue()
        for mutant in selected:
            jobs.put(mutant)
        results: list[dict[str, Any]] = []
        lock = threading.Lock()
        workers = [
            threading.Thread(target=_worker, args=(n, jobs, results, lock, args, base))
            for n in range(max(1, args.jobs))
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    report, clean = _summary(results)
    print("\n" + report)
    print(
        f"\nwall time: {time.monotonic() - started:.0f}s for {len(results)} mutants, "
        f"{args.jobs} workers"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
