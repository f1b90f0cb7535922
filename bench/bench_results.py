"""Parsing 100,000-case result streams: otto.results against the bare parser library, in one run.

    python3 bench/bench_results.py [--quick]

- TAP, kselftest-like: a diagnostic line before each result, one in ten
  ``not ok``, one in seventeen ``# SKIP``; and results only, with nothing
  between them (otto's worst case: it cannot pass over any line).
  Bare: ``for line in tap.parser.Parser().parse_text(text)`` (tap.py's own loop,
  which builds a line object per line and keeps nothing).
- JUnit, GoogleTest-like: 100 suites of 1,000 cases, one in ten with a
  ``<failure>``. Bare: ``JUnitXml.fromstring(text)`` and iterating every suite's
  cases; and again reading each case's name, class, time, results and
  system-out/err through junitparser (the same fields otto reads).
- otto: ``otto.results.parse(text, format=...)``, returning a list of ``Case``
  (name, status, output slice, message, duration) and every completeness check.

Rounds alternate; CPU time (``time.process_time``, steadier than wall time on
a shared machine) of the best round of each is shown, and the ratio.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from junitparser import JUnitXml
from tap.parser import Parser

from otto import results


def tap_stream(count: int, *, diagnostics: bool) -> str:
    lines = [f"1..{count}"]
    for n in range(1, count + 1):
        if diagnostics:
            lines.append(f"# selftests: bench: case_{n}")
        if n % 10 == 0:
            lines.append(f"not ok {n} selftests: bench: case_{n} # exit=1")
        elif n % 17 == 0:
            lines.append(f"ok {n} selftests: bench: case_{n} # SKIP no hardware")
        else:
            lines.append(f"ok {n} selftests: bench: case_{n}")
    return "\n".join(lines) + "\n"


def junit_stream(count: int) -> str:
    suites = max(1, count // 1000)
    per = count // suites
    parts = [f'<?xml version="1.0" encoding="UTF-8"?>\n<testsuites tests="{count}" name="All">']
    for s in range(suites):
        parts.append(f'<testsuite name="Suite{s}" tests="{per}" failures="{per // 10}">')
        for i in range(per):
            head = (
                f'<testcase name="Case{i}" file="t.cc" line="{i}" status="run" '
                f'result="completed" time="0.001" classname="Suite{s}"'
            )
            if i % 10 == 0:
                parts.append(
                    f'{head}><failure message="t.cc:{i}&#x0A;Expected 1, got 2" type="">'
                    f"<![CDATA[t.cc:{i}\nExpected 1, got 2]]></failure></testcase>"
                )
            else:
                parts.append(f"{head} />")
        parts.append("</testsuite>")
    parts.append("</testsuites>")
    return "\n".join(parts)


def bare_tap(text: str) -> None:
    for _ in Parser().parse_text(text):
        pass


def bare_junit(text: str) -> None:
    for suite in JUnitXml.fromstring(text):
        for _ in suite:
            pass


def bare_junit_fields(text: str) -> None:
    for suite in JUnitXml.fromstring(text):
        for case in suite:
            _ = (case.name, case.classname, case.time, case.result)
            _ = (case.system_out, case.system_err)


def cpu(fn: Callable[[], object]) -> float:
    started = time.process_time()
    fn()
    return time.process_time() - started


def compare(
    title: str, bare_name: str, bare: Callable[[], object], mine: Callable[[], object], reps: int
) -> float:
    bares, mines = [], []
    for _ in range(reps):
        bares.append(cpu(bare))
        mines.append(cpu(mine))
    best_bare, best_mine = min(bares), min(mines)
    ratio = best_mine / best_bare
    print(title)
    print(f"  {bare_name:44s} {best_bare * 1e3:8.1f} ms")
    print(f"  {'otto.results.parse':44s} {best_mine * 1e3:8.1f} ms")
    print(f"  ratio otto / bare: {ratio:.2f}x")
    return ratio


def main() -> None:
    quick = "--quick" in sys.argv
    count = 20_000 if quick else 100_000
    reps = 3 if quick else 7
    tap = tap_stream(count, diagnostics=True)
    tap_only = tap_stream(count, diagnostics=False)
    xml = junit_stream(count)
    assert len(results.parse(tap)) == count
    assert len(results.parse(tap_only)) == count
    assert len(results.parse(xml, format="junit")) == count
    print(f"{count:,} cases per stream, best of {reps} rounds, CPU time")
    compare(
        f"TAP, kselftest-like ({len(tap) / 1e6:.1f} MB)",
        "tap.py Parser().parse_text loop",
        lambda: bare_tap(tap),
        lambda: results.parse(tap, format="tap"),
        reps,
    )
    compare(
        f"TAP, results only ({len(tap_only) / 1e6:.1f} MB)",
        "tap.py Parser().parse_text loop",
        lambda: bare_tap(tap_only),
        lambda: results.parse(tap_only, format="tap"),
        reps,
    )
    compare(
        f"JUnit, GoogleTest-like ({len(xml) / 1e6:.1f} MB)",
        "junitparser fromstring + iterate cases",
        lambda: bare_junit(xml),
        lambda: results.parse(xml, format="junit"),
        reps,
    )
    compare(
        "JUnit, the same, reading the fields otto reads",
        "junitparser fromstring + iterate + fields",
        lambda: bare_junit_fields(xml),
        lambda: results.parse(xml, format="junit"),
        reps,
    )


if __name__ == "__main__":
    main()
