"""TAP (and kselftest's and KTAP's nested TAP) as cases, read with tap.py's line parser.

tap.py reads the lines: a plan, ``Bail out!`` or version line goes through
``Parser.parse_line``; a result line through the parser's own ``ok``/``not ok``
patterns and ``Directive`` (``parse_line``'s result object is not needed, and
building one per line cost more than everything else here). A line that none of
tap.py's patterns can match (by its first character) is output, not parsed.
This module adds what a line parser cannot know: which lines belong to which
case, nesting, and whether the stream was complete.

- A case's output is the lines since the previous result at its level, through
  its own ``ok``/``not ok`` line, and the TAP 13 YAML block after it.
- Nested TAP (kselftest prefixes a subtest's lines with ``# ``, KTAP indents them
  by four spaces) becomes cases named ``parent/child``, listed before the parent.
- ``ok`` is passed; ``not ok`` failed (``# TIMEOUT`` an error); ``# SKIP`` skipped;
  the to-do directive (``not ok ... # todo``, any case) skipped (an expected
  failure), ``ok ... # todo`` passed.
- Never a pass when incomplete: no plan, a plan whose numbers were not all
  reported (each missing number is an ``error`` case), more results than
  planned, or ``Bail out!``.
"""

from __future__ import annotations

from tap.directive import Directive  # type: ignore[import-untyped]
from tap.line import Bail, Plan, Version  # type: ignore[import-untyped]
from tap.parser import Parser  # type: ignore[import-untyped]

from otto.results.model import (
    CASE_SETTERS,
    MAX_CASE_OUTPUT,
    SUITE,
    Case,
    CaseStatus,
    make_case,
    no_cases,
    slice_lines,
)

#: Deeper nesting than this is read as plain output (hostile input cannot build a deep stack).
MAX_DEPTH = 32
#: Missing test numbers reported one case each; beyond this, one case stands for the rest.
MAX_MISSING_CASES = 1000

_parse_line = Parser().parse_line
# The first character of every line tap.py can read as a result, plan, bail out or version;
# any other line is output, and is not handed to the parser at all.
_STARTS = frozenset("onB1T")
_NESTED = frozenset("# \t")
_INDENT = (" ", "\t")
_ENDS = ("", " ", "\t")


class _Level:
    """What one nesting level has seen since its stream began."""

    __slots__ = ("bail", "count", "entries", "last_start", "plan", "plan_skip", "seen", "start")

    def __init__(self, start: int) -> None:
        self.start = start  # the first line of the next case's output
        self.last_start = start  # the first line of the last case's output
        self.entries: list[Case] = []
        self.plan: int | None = None
        self.plan_skip: str | None = None
        self.count = 0  # results seen
        self.seen: set[int] | None = None  # the numbers seen, once they came out of order
        self.bail: str | None = None

    @property
    def started(self) -> bool:
        return self.count > 0 or self.plan is not None or self.bail is not None

    def note(self, number: int, count: int) -> None:
        """Remember ``number`` as seen; numbers stopped following the count."""
        if self.seen is None:
            self.seen = set(range(1, count))
        self.seen.add(number)

    def missing(self) -> tuple[list[int], int]:
        """The planned numbers not reported (the first ``MAX_MISSING_CASES``) and how many."""
        plan = self.plan or 0
        if self.seen is None:
            first = self.count + 1
            total = max(0, plan - self.count)
            return list(range(first, min(plan, first + MAX_MISSING_CASES - 1) + 1)), total
        seen = self.seen
        total = plan - sum(1 for number in seen if 1 <= number <= plan)
        numbers: list[int] = []
        number = 0
        # Bounded by the numbers seen plus MAX_MISSING_CASES, whatever the plan claims.
        while len(numbers) < min(total, MAX_MISSING_CASES):
            number += 1
            if number not in seen:
                numbers.append(number)
        return numbers, total

    def distinct(self) -> int:
        return self.count if self.seen is None else len(self.seen)


def parse_tap(text: str) -> list[Case]:
    """Parse a TAP stream into cases (see the module's docstring for the rules)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    out: list[Case] = []
    levels: list[_Level] = [_Level(0)]
    levels[0].entries = out
    parse_line = _parse_line
    # Cases are built here without the frozen dataclass's __init__: a stream holds 100,000s.
    new_case = object.__new__
    set_name, set_status, set_output, set_message, set_duration = CASE_SETTERS
    ok_match = Parser.ok.match
    not_ok_match = Parser.not_ok.match
    starts = _STARTS
    nested = _NESTED
    after = -1  # the depth of the result on the previous line: a YAML block may follow
    in_yaml = -1  # the depth of the result whose YAML block is being read
    for index, line in enumerate(lines):
        first = line[:1]
        if first in nested:
            depth = in_yaml if in_yaml >= 0 else after
            if depth > 0 or (depth == 0 and first != "#"):
                # A YAML block may follow a result: its lines are indented under it.
                inner = _strip(line, depth)
                if inner is not None and (
                    (in_yaml >= 0 and (inner[:1] in _INDENT or not inner.strip()))
                    or (inner[:1] == " " and inner.strip() == "---")
                ):
                    _extend_last(levels[depth], lines, index)
                    in_yaml = -1 if inner.strip() == "..." else depth
                    after = -1
                    continue
            after = in_yaml = -1
            depth = 0
            body = line
            while depth < MAX_DEPTH:
                if body[:2] == "# ":
                    body = body[2:]
                elif body[:4] == "    ":
                    body = body[4:]
                elif body[:1] == "\t":
                    body = body[1:]
                else:
                    break
                depth += 1
            if body[:1] not in starts:
                continue
        elif not line:
            if in_yaml >= 0:
                _extend_last(levels[in_yaml], lines, index)
            continue
        else:
            after = in_yaml = -1
            if first not in starts:
                continue
            depth = 0
            body = line
        body = body.rstrip()
        first = body[:1]
        if first in ("o", "n"):
            ok = first == "o"
            match = ok_match(body) if ok else not_ok_match(body)
            if match is None or (body[2:3] if ok else body[6:7]) not in _ENDS:
                continue  # "okay", "not okay": output, not a result
            nlevels = len(levels)
            level = levels[depth] if depth < nlevels else _level(levels, depth)
            count = level.count + 1
            level.count = count
            digits, name, message = match.groups()
            if not digits:
                number = count
            else:
                number = int(digits)
                if number != count or level.seen is not None:
                    level.note(number, count)
            name = name.strip()
            if name[:2] == "- ":
                name = name[2:]
            if not name:
                name = f"test {number}"
            if not message:
                status: CaseStatus = "passed" if ok else "failed"
                if not ok:
                    message = "not ok"
            else:
                directive = Directive(message)
                if directive.skip:
                    status = "skipped"
                elif directive.todo:
                    status = "passed" if ok else "skipped"
                elif ok:
                    status = "passed"
                else:
                    status = "error" if message[:7].upper() == "TIMEOUT" else "failed"
            entries = level.entries
            if depth + 1 < nlevels:
                # The subtests printed before this line are this case's children.
                entries.extend(_renamed(f"{name}/", _fold(levels, depth, lines, index)))
            start = level.start
            if start == index and len(line) <= MAX_CASE_OUTPUT:
                output = line
            elif start == index - 1 and len(line) + len(lines[start]) < MAX_CASE_OUTPUT:
                output = lines[start] + "\n" + line  # the usual "# what runs" line before
            else:
                output = slice_lines(lines, start, index + 1)
            case = new_case(Case)
            set_name(case, name)
            set_status(case, status)
            set_output(case, output)
            set_message(case, message)
            set_duration(case, None)
            entries.append(case)
            level.last_start = start
            level.start = index + 1
            after = depth
            continue
        try:
            parsed = parse_line(body)
        except ValueError:  # "TAP version 12": tap.py refuses versions below 13
            continue
        kind = type(parsed)
        if kind is Plan:
            if body[:3] != "1..":
                continue  # tap.py's plan pattern also takes "1005 bytes"
            level = _level(levels, depth)
            if level.plan is not None:
                level = _restart(levels, depth, lines, index)
            level.plan = parsed.expected_tests
            if parsed.directive.skip:
                level.plan_skip = parsed.directive.reason or ""
            if not level.count:
                level.start = index + 1  # the header is the stream's, not its first case's
        elif kind is Bail:
            level = _level(levels, depth)
            level.bail = parsed.reason or "no reason given"
            message = f"Bail out! {parsed.reason}".rstrip()
            output = slice_lines(lines, level.start, index + 1)
            level.entries.append(make_case(SUITE, "error", output, message))
            level.start = index + 1
        elif kind is Version:
            level = _level(levels, depth)
            if level.started:
                level = _restart(levels, depth, lines, index)
            level.start = index + 1
    # Whatever is still open at the end was cut off: its parent's result line never came.
    stop = len(lines)
    if len(levels) > 1:
        out.extend(_renamed(f"test {levels[0].count + 1}/", _fold(levels, 0, lines, stop)))
    _close(levels[0], lines, stop, top=True)
    if not out:
        return [no_cases("TAP")]
    return out


def _strip(line: str, depth: int) -> str | None:
    """``line`` without ``depth`` nesting prefixes, or None when it has fewer."""
    for _ in range(depth):
        if line[:2] == "# ":
            line = line[2:]
        elif line[:4] == "    ":
            line = line[4:]
        elif line[:1] == "\t":
            line = line[1:]
        else:
            return None
    return line


def _extend_last(level: _Level, lines: list[str], index: int) -> None:
    """Add line ``index`` (of a YAML block) to the output of the level's last case."""
    if not level.entries:
        return
    last = level.entries[-1]
    output = slice_lines(lines, level.last_start, index + 1)
    level.entries[-1] = make_case(last.name, last.status, output, last.message, last.duration)
    level.start = index + 1


def _renamed(prefix: str, cases: list[Case]) -> list[Case]:
    return [make_case(prefix + c.name, c.status, c.output, c.message, c.duration) for c in cases]


def _level(levels: list[_Level], depth: int) -> _Level:
    """The level at ``depth``; a new one's first case starts where its parent's case does."""
    if depth >= len(levels):
        start = levels[-1].start
        levels.extend(_Level(start) for _ in range(depth + 1 - len(levels)))
    return levels[depth]


def _close(level: _Level, lines: list[str], stop: int, top: bool) -> list[Case]:
    """Add an error case to the level's cases for each way it is incomplete; return them."""
    entries = level.entries
    if not level.started:
        return entries
    plan = level.plan
    if plan is None:
        if top and level.bail is None:
            got = f"{level.count} result{'s' if level.count != 1 else ''}"
            message = f"no plan (1..N), {got}: the run ended early, or is not TAP"
            output = slice_lines(lines, level.start, stop)
            entries.append(make_case(SUITE, "error", output, message))
        return entries
    if plan == 0 and level.plan_skip is not None:
        message = f"all skipped: {level.plan_skip}" if level.plan_skip else "all skipped"
        entries.append(make_case(SUITE, "skipped", slice_lines(lines, level.start, stop), message))
        return entries
    numbers, total = level.missing()
    if total:
        if level.bail is not None:
            why = f"not run: the suite bailed out ({level.bail})"
        else:
            why = "never reported"
        distinct = level.distinct()
        for number in numbers:
            message = f"planned 1..{plan}, got {distinct}: test {number} {why}"
            entries.append(make_case(f"test {number}", "error", "", message))
        if total > len(numbers):
            message = (
                f"planned 1..{plan}, got {distinct}: {total - len(numbers)} more tests after "
                f"test {numbers[-1]} {why}"
            )
            entries.append(make_case(SUITE, "error", "", message))
    if level.count > plan:
        message = f"planned 1..{plan} but got {level.count} results"
        entries.append(make_case(SUITE, "error", "", message))
    return entries


def _fold(levels: list[_Level], depth: int, lines: list[str], stop: int) -> list[Case]:
    """Close every level below ``depth``; return the cases of the one just below it.

    A level deeper than that one was cut off before its parent's result line, so
    its cases are named after the number that parent would have had.
    """
    for deeper in range(len(levels) - 1, depth + 1, -1):
        parent = levels[deeper - 1]
        closed = _close(levels[deeper], lines, stop, top=False)
        parent.entries.extend(_renamed(f"test {parent.count + 1}/", closed))
    cases = _close(levels[depth + 1], lines, stop, top=False)
    del levels[depth + 1 :]
    return cases


def _restart(levels: list[_Level], depth: int, lines: list[str], index: int) -> _Level:
    """A new stream begins at ``depth`` (a second version line or plan): close the old one."""
    old = levels[depth]
    if depth + 1 < len(levels):
        old.entries.extend(_renamed(f"test {old.count + 1}/", _fold(levels, depth, lines, index)))
    fresh = _Level(index)
    fresh.entries = _close(old, lines, index, top=depth == 0)
    levels[depth] = fresh
    return fresh
