"""``python -m benchmarks.instructions [--requests N] [--only NAME ...] [--json FILE]``

Instructions per operation under ``valgrind --tool=callgrind``: the in-process lock cycle and
guard comparisons, counted instead of timed. The count of one binary on the same input
repeats to a few parts per million whatever else the machine does, so a change of a percent
shows, where the CPU-time ratios of ``python -m benchmarks`` move by tens of percent between
batches on a shared machine. Also a section of ``python -m benchmarks`` (``--only
instructions``; never in the default set: it takes minutes).

Each variant runs in its own process under callgrind, twice: N operations, then 2N (each
after the same warm-up). The difference divided by N is one operation's instructions; the
interpreter's start, the imports, the app's setup, the warm-up and the exit cancel out. To
keep the section to minutes, the process runs without instrumentation until its warm-up is
done and then turns it on with ``callgrind_control --instr=on`` (it ships with valgrind).

An instruction count is a proxy: it leaves out cache misses and system calls (SQLite's file
I/O), so the products' CPU-time ratios are lower than these.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from .common import Report, Settings, warn

#: operations run before the counted ones, in both runs of a variant
WARMUP = 100
#: N, the default number of counted operations (the second run does 2N)
REQUESTS = 200

#: comparison -> (title, its baseline, the variant issue 13's target is about, the others);
#: the keys are the kinds of :data:`benchmarks.inprocess.TARGETS`
COMPARISONS: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "cycle": ("Lock cycle (content @lock POST + DELETE, SQLite)", "cycle-bare", "cycle-lock",
              ("cycle-raw", "cycle-lock-events-off")),
    "unguarded": ("GET (not guarded)", "get-plain", "get-guarded", ()),
    "guarded-unlocked": ("PATCH, unlocked resource", "patch-plain", "patch-guarded", ()),
    "guarded-locked": ("PATCH, locked resource + right token", "token-plain", "token-guarded",
                       ()),
}

#: variant -> (comparison, which of its operations): a label of
#: :func:`benchmarks.inprocess.lock_cycle_variants`, or the side of a
#: :func:`benchmarks.inprocess.guard_pairs` pair ("without" = the plain app)
VARIANTS: dict[str, tuple[str, str]] = {
    "cycle-bare": ("cycle", "bare Flask route pair"),
    "cycle-raw": ("cycle", "raw SQLite upsert route pair"),
    "cycle-lock": ("cycle", "flask-locking @lock cycle"),
    "cycle-lock-events-off": ("cycle", "flask-locking @lock cycle, events off"),
    "get-plain": ("unguarded", "without"),
    "get-guarded": ("unguarded", "with"),
    "patch-plain": ("guarded-unlocked", "without"),
    "patch-guarded": ("guarded-unlocked", "with"),
    "token-plain": ("guarded-locked", "without"),
    "token-guarded": ("guarded-locked", "with"),
}

#: set by the parent for a child under callgrind: the ``callgrind_control`` to call
CONTROL_ENV = "BENCH_CALLGRIND_CONTROL"
MISSING = "valgrind (with callgrind_control) is not installed: apt-get install valgrind"
ROOT = Path(__file__).resolve().parent.parent
_COLLECTED = re.compile(r"^==\d+== Collected : (\d+)\s*$", re.MULTILINE)


@contextmanager
def variant_op(name: str) -> Iterator[Callable[[], object]]:
    """One operation of variant ``name``, built by the in-process section's own builders."""
    from .inprocess import guard_pairs, lock_cycle_variants

    comparison, which = VARIANTS[name]
    if comparison == "cycle":
        with lock_cycle_variants() as (variants, _app, _directory):
            yield variants[which]
        return
    with guard_pairs() as (pairs, _app, _right):
        for _title, without, with_, kind in pairs:
            if kind == comparison:
                yield without if which == "without" else with_
                return
        raise LookupError(f"no guard comparison of kind {comparison!r}")


def run_child(name: str, count: int) -> None:
    """The process callgrind watches: build the variant, warm up, turn callgrind's
    instrumentation on (when run under it), run ``count`` operations."""
    with variant_op(name) as op:
        for _ in range(WARMUP):
            op()
        control = os.environ.get(CONTROL_ENV)
        if control:
            done = subprocess.run([control, "--instr=on", str(os.getpid())],
                                  capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"{control} --instr=on failed: {done.stdout}{done.stderr}")
        for _ in range(count):
            op()


def collected(stderr: str) -> int:
    """The instruction total of callgrind's ``Collected : <n>`` line."""
    found = _COLLECTED.findall(stderr)
    if len(found) != 1:
        raise ValueError(f"no single 'Collected :' line in callgrind's output: {stderr[-500:]!r}")
    return int(found[0])


def per_operation(total_n: int, total_2n: int, n: int) -> float:
    """Instructions of one operation from the totals of a run of N and one of 2N operations."""
    return (total_2n - total_n) / n


def python_binary() -> str:
    """The interpreter's real executable: callgrind must start the ELF binary itself, not a
    launcher script (a pyenv shim) that would start it as a child it does not follow."""
    path = os.path.realpath(sys.executable)
    with open(path, "rb") as handle:
        if handle.read(4) != b"\x7fELF":
            raise RuntimeError(f"{sys.executable} ({path}) is not an ELF executable; run "
                               "this with the interpreter's real binary")
    return path


def callgrind_tools() -> tuple[str, str] | None:
    """``valgrind`` and ``callgrind_control``, or ``None`` when either is missing."""
    valgrind, control = shutil.which("valgrind"), shutil.which("callgrind_control")
    return (valgrind, control) if valgrind and control else None


def count_instructions(tools: tuple[str, str], name: str, count: int, directory: str) -> int:
    """Total instructions of one child process running variant ``name`` (from the end of
    its warm-up on)."""
    valgrind, control = tools
    env = {**os.environ, "PYTHONHASHSEED": "0", CONTROL_ENV: control,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [valgrind, "--tool=callgrind", "--instr-atstart=no",
         f"--callgrind-out-file={os.path.join(directory, f'{name}-{count}.out')}",
         python_binary(), "-m", "benchmarks.instructions", "--child", name, str(count)],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{name} x{count} under callgrind failed ({done.returncode}): "
                           f"{done.stderr[-2000:]}")
    return collected(done.stderr)


def measure(tools: tuple[str, str], names: list[str], n: int) -> dict[str, float]:
    """Instructions per operation of every variant, two callgrind processes at a time."""
    jobs = [(name, count) for name in names for count in (2 * n, n)]
    with tempfile.TemporaryDirectory(prefix="flbench-callgrind-") as directory, \
            ThreadPoolExecutor(max_workers=2) as pool:
        totals = dict(zip(jobs, pool.map(
            lambda job: count_instructions(tools, job[0], job[1], directory), jobs), strict=True))
    return {name: per_operation(totals[name, n], totals[name, 2 * n], n) for name in names}


def report_instructions(report: Report, tools: tuple[str, str], names: list[str], n: int) -> None:
    """Measure ``names`` and report them by comparison, with issue 13's targets."""
    from .inprocess import TARGETS

    report.section(f"Instructions per operation (callgrind, N = {n}, per op = "
                   f"(total(2N) - total(N)) / N)")
    figures = measure(tools, names, n)
    for kind, (title, baseline, product, others) in COMPARISONS.items():
        shown = [name for name in (baseline, *others[:1], product, *others[1:])
                 if name in figures]
        if not shown:
            continue
        report.note(title)
        for name in shown:
            values: dict[str, object] = {"instr_op": round(figures[name])}
            if baseline in figures:
                values["ratio"] = round(figures[baseline] / figures[name], 3)
            report.row(name, **values)
        if baseline in figures and product in figures:
            report.note(f"{title}: {figures[baseline] / figures[product]:.3f}x "
                        f"(issue 13 target >= {TARGETS[kind]:.2f}x, on CPU time)")
    report.note("instruction ratios are a proxy: they leave out cache misses and system calls "
                "(SQLite's file I/O), so the CPU-time ratios of the cycle and guard sections "
                "are lower")


def run_instructions(report: Report, settings: Settings) -> None:
    """The ``instructions`` section of ``python -m benchmarks`` (skipped without valgrind)."""
    tools = callgrind_tools()
    if tools is None:
        report.section("Instructions per operation (callgrind)")
        warn(MISSING + ": section skipped")
        return
    report_instructions(report, tools, list(VARIANTS), settings.instruction_requests)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=REQUESTS, metavar="N",
                        help=f"counted operations of the first run (default {REQUESTS})")
    parser.add_argument("--only", nargs="+", choices=[*COMPARISONS, *VARIANTS], metavar="NAME",
                        help="comparisons or variants to run: "
                             f"{', '.join([*COMPARISONS, *VARIANTS])}")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child(args.child[0], int(args.child[1]))
        return 0
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    tools = callgrind_tools()
    if tools is None:
        print(MISSING + ": nothing measured", file=sys.stderr)
        return 2
    names: list[str] = []
    for choice in args.only or list(COMPARISONS):
        if choice in COMPARISONS:
            _title, baseline, product, others = COMPARISONS[choice]
            names += [baseline, product, *others]
        else:
            names.append(choice)
    report = Report()
    report_instructions(report, tools, list(dict.fromkeys(names)), args.requests)
    if args.json:
        report.dump(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
