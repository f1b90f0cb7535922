"""The run as JUnit XML, the form CI servers read (``testsuites/testsuite/testcase``).

The layout follows Jenkins' ``junit-10.xsd`` and Maven Surefire's reports:

- one ``testcase`` per test run; a test run several times (``--iterations``,
  ``--duration``) gives one test case per iteration, named ``name [iteration N]``;
- ``failure``, ``error`` and ``skipped`` with a one-line ``message`` and the
  full report as text;
- a rerun test keeps its earlier tries: ``flakyFailure``/``flakyError`` when it
  finally passed, ``rerunFailure``/``rerunError`` when it finally did not, each
  with the try's report in ``stackTrace``, as Surefire writes them;
- ``system-out`` names the hosts and points at the test's transcript (also as a
  ``[[ATTACHMENT|path]]`` line, which Jenkins' attachments plugin picks up);
- a test with failed non-fatal checks has one ``failure`` whose message lists them all;
- each metric the test recorded is a ``property`` of its test case in ``properties``:
  ``metric:NAME`` (``metric:NAME@HOST`` with a host) holds the value, and
  ``metric-unit:NAME`` (``metric-unit:NAME@HOST``) its unit when it has one;
- each device-side case (``otto.results``) is a test case of its own, named
  ``<test>::<case>`` with its test's classname, its ``failure``/``error``/``skipped``,
  and its slice of the suite's output in ``system-out``.

Text that XML cannot hold (control characters, lone surrogates) is shown as
``\\xNN`` escapes; very long text is cut to its tail, with a note.
"""

from __future__ import annotations

import os
import re
import socket
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape

from otto.testing.checks import describe_checks
from otto.testing.evidence import write_text
from otto.testing.records import Attempt, DeviceCase, TestRecord

__all__ = ["MAX_TEXT", "junit_name", "write_junit"]

MAX_TEXT = 64 * 1024
"""Characters kept of one report or output in the XML (its tail)."""

_MAX_MESSAGE = 500
_MAX_CHECKS_MESSAGE = 4000

# Characters XML 1.0 allows (tab, newline and carriage return among the controls).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _clean(text: str, limit: int = MAX_TEXT) -> str:
    if len(text) > limit:
        cut = len(text) - limit
        text = f"[... {cut} characters cut; the transcript has everything]\n" + text[-limit:]
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _message(text: str, limit: int = _MAX_MESSAGE) -> str:
    """The first non-empty line of ``text``, short enough for an attribute."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    if len(line) > limit:
        line = line[: limit - 3] + "..."
    return _clean(line)


def _checks_message(record: TestRecord) -> str:
    """Every failed check of ``record`` on one line: ``N checks failed: file:line: what; ...``."""
    count = len(record.checks)
    items = "; ".join(
        f"{c.location}: {next(iter(c.message.splitlines()), '')}" for c in record.checks
    )
    return f"{count} check{'s' if count != 1 else ''} failed: {items}"


def _error_line(longrepr: str) -> str:
    """The line pytest marks with ``E`` (the assertion or exception), else the first line."""
    for line in longrepr.splitlines():
        if line.startswith("E "):
            return line[1:].strip()
    return longrepr


def junit_name(record: TestRecord, iterated: bool) -> tuple[str, str]:
    """``(classname, name)`` of a record's test case, as pytest's own JUnit writer names them.

    ``tests/test_a.py::TestX::test_y[p]`` gives ``("tests.test_a.TestX", "test_y[p]")``;
    with ``iterated``, the name ends with `` [iteration N]``.
    """
    parts = record.nodeid.split("::")
    module = parts[0].removesuffix(".py").replace("/", ".").replace("\\", ".")
    classname = ".".join([module, *parts[1:-1]]) if len(parts) > 1 else module
    name = record.name or parts[-1]
    if iterated:
        name = f"{name} [iteration {record.iteration}]"
    return classname, name


def _result_of(record: TestRecord) -> tuple[str, str, str] | None:
    """``(tag, message, text)`` of the final result, or None when the test passed."""
    if record.outcome == "passed":
        return None
    text = record.longrepr
    if record.crash is not None:
        crash = record.crash
        head = f"device crash on {crash.host} ({crash.pattern}):\n{crash.excerpt}"
        text = f"{head}\n\n{text}" if text else head
    if record.failures:
        lines = [
            f"{f.host}: {f.command!r} exited {f.retcode} ({f.status})"
            + (f": {f.error}" if f.error else "")
            for f in record.failures
        ]
        text = text + "\n\nfailed commands:\n" + "\n".join(lines)
    if record.checks:
        listed = describe_checks(record.checks)
        if listed not in text:  # the test also failed on its own
            text = f"{text}\n\n{listed}" if text else listed
    if record.outcome == "skipped":
        return "skipped", record.longrepr, text
    if record.crash is not None and not record.longrepr:
        message = f"device crash on {record.crash.host}: {record.crash.pattern}"
    elif record.checks and record.longrepr.startswith(describe_checks(record.checks)):
        message = _checks_message(record)
    else:
        message = _error_line(record.longrepr) or record.outcome
    return ("failure" if record.outcome == "failed" else "error"), message, text


def _attempt(parent: ET.Element, attempt: Attempt, finally_passed: bool) -> None:
    kind = "Error" if attempt.outcome == "error" else "Failure"
    tag = ("flaky" if finally_passed else "rerun") + kind
    element = ET.SubElement(
        parent,
        tag,
        message=_message(_error_line(attempt.longrepr) or attempt.outcome),
        type=f"pytest.{attempt.outcome}",
    )
    trace = ET.SubElement(element, "stackTrace")
    trace.text = _clean(attempt.longrepr)


class _Links:
    """A transcript's path from the JUnit file's folder, and its absolute path: the run
    folder's are found once (resolving a path per test case was most of the writing)."""

    def __init__(self, run_dir: Path, junit_dir: Path) -> None:
        self.absolute = str(run_dir.resolve())
        self.relative: str | None
        try:
            self.relative = os.path.relpath(run_dir, junit_dir)
        except ValueError:  # another drive on Windows
            self.relative = None

    def of(self, transcript: str) -> tuple[str, str]:
        """``(link from the JUnit file, absolute path)`` of a path relative to the run folder."""
        absolute = os.path.join(self.absolute, transcript)
        if self.relative is None:
            return absolute, absolute
        return os.path.normpath(os.path.join(self.relative, transcript)), absolute


def _properties(case: ET.Element, record: TestRecord) -> None:
    if not record.metrics:
        return
    properties = ET.SubElement(case, "properties")
    for metric in record.metrics:
        key = metric.name + (f"@{metric.host}" if metric.host else "")
        ET.SubElement(properties, "property", name=_clean(f"metric:{key}"), value=f"{metric.value}")
        if metric.unit:
            ET.SubElement(
                properties, "property", name=_clean(f"metric-unit:{key}"), value=_clean(metric.unit)
            )


_CASE_TAGS = {"failed": "failure", "error": "error", "skipped": "skipped"}


def _device_case(
    suite: ET.Element, record: TestRecord, case: DeviceCase, classname: str, name: str
) -> None:
    element = ET.SubElement(
        suite,
        "testcase",
        name=_clean(name),
        classname=_clean(classname),
        time=f"{max(case.duration or 0.0, 0.0):.3f}",
    )
    tag = _CASE_TAGS.get(case.status)
    if tag is not None:
        result = ET.SubElement(
            element, tag, message=_message(case.message or f"{case.status} on the device")
        )
        if tag != "skipped":
            result.set("type", f"otto.results.{case.status}")
        result.text = _clean(case.message) if case.message else None
    out = [f"from: {case.source}"] if case.source else []
    if case.output:
        out.append(case.output)
    if out:
        ET.SubElement(element, "system-out").text = _clean("\n".join(out))


def _testcase(suite: ET.Element, record: TestRecord, iterated: bool, links: _Links) -> None:
    classname, name = junit_name(record, iterated)
    case = ET.SubElement(
        suite,
        "testcase",
        name=_clean(name),
        classname=_clean(classname),
        time=f"{max(record.duration, 0.0):.3f}",
    )
    _properties(case, record)
    result = _result_of(record)
    if result is not None:
        tag, message, text = result
        limit = _MAX_CHECKS_MESSAGE if record.checks else _MAX_MESSAGE
        element = ET.SubElement(case, tag, message=_message(message, limit))
        if tag != "skipped":
            element.set("type", "otto.crash" if record.crash and tag == "failure" else tag)
        element.text = _clean(text) if text else None
    for attempt in record.earlier:
        _attempt(case, attempt, finally_passed=record.outcome == "passed")
    out: list[str] = []
    if record.hosts:
        out.append("hosts: " + ", ".join(record.hosts))
    if record.worker:
        out.append(f"worker: {record.worker}")
    if record.transcript:
        link, absolute = links.of(record.transcript)
        out.append(f"transcript: {link}")
        out.append(f"[[ATTACHMENT|{absolute}]]")
    if out:
        ET.SubElement(case, "system-out").text = _clean("\n".join(out))
    if record.cases:
        _, base = junit_name(record, iterated=False)
        suffix = f" [iteration {record.iteration}]" if iterated else ""
        for device_case in record.cases:
            _device_case(
                suite, record, device_case, classname, f"{base}::{device_case.name}{suffix}"
            )


_ATTRIBUTE_ENTITIES = {'"': "&quot;", "\r": "&#13;", "\n": "&#10;", "\t": "&#09;"}
"""What ElementTree escapes in an attribute's value beyond ``& < >``."""


def _attribute(text: str) -> str:
    """``text`` escaped as ElementTree escapes an attribute's value."""
    return escape(text, _ATTRIBUTE_ENTITIES)


def _character_data(text: str) -> str:
    """``text`` escaped as ElementTree escapes an element's text."""
    return escape(text)


def _attributes(values: dict[str, str]) -> str:
    return "".join(f' {key}="{_attribute(value)}"' for key, value in values.items())


_CASE_INDENT = "\n    "
"""What goes before a test case in the file (``ET.indent``'s, two levels deep)."""


def _passed_case(record: TestRecord, iterated: bool, links: _Links) -> str | None:
    """The test case of a run that passed at its first try and recorded nothing more than
    its hosts, worker and transcript (most runs), as :func:`_tree_cases` writes it; None
    for any other run."""
    if (
        record.outcome != "passed"
        or record.earlier
        or record.metrics
        or record.cases
        or record.checks
        or record.crash is not None
    ):
        return None
    classname, name = junit_name(record, iterated)
    head = (
        f'<testcase name="{_attribute(_clean(name))}" '
        f'classname="{_attribute(_clean(classname))}" time="{max(record.duration, 0.0):.3f}"'
    )
    out: list[str] = []
    if record.hosts:
        out.append("hosts: " + ", ".join(record.hosts))
    if record.worker:
        out.append(f"worker: {record.worker}")
    if record.transcript:
        link, absolute = links.of(record.transcript)
        out.append(f"transcript: {link}")
        out.append(f"[[ATTACHMENT|{absolute}]]")
    if not out:
        return head + " />"
    text = _character_data(_clean("\n".join(out)))
    return f"{head}>{_CASE_INDENT}  <system-out>{text}</system-out>{_CASE_INDENT}</testcase>"


def _tree_cases(record: TestRecord, iterated: bool, links: _Links) -> list[str]:
    """The test cases of ``record`` (its own and its device-side cases') as ElementTree
    writes them, indented as in the whole file."""
    holder = ET.Element("testsuite")
    _testcase(holder, record, iterated, links)
    ET.indent(holder, level=1)
    written = []
    for case in holder:
        case.tail = None
        written.append(ET.tostring(case, encoding="unicode"))
    return written


def write_junit(
    path: Path,
    records: Sequence[TestRecord],
    *,
    suite_name: str = "otto",
    run_dir: Path | None = None,
) -> None:
    """Write ``records`` to ``path`` as JUnit XML (replacing the file at once).

    Args:
        path: the XML file; its folder is created.
        records: one per test run, in any order (sorted here by start time).
        suite_name: the ``testsuite``'s name.
        run_dir: the run folder the records' transcript paths are relative to
            (default: ``path``'s folder).
    """
    path = Path(path)
    run_dir = Path(run_dir) if run_dir is not None else path.parent
    ordered = sorted(records, key=lambda r: (r.start, r.nodeid, r.iteration))
    runs = Counter(r.nodeid for r in ordered)
    iterated = {r.nodeid for r in ordered if runs[r.nodeid] > 1 or r.iteration > 1}
    counts = Counter(r.outcome for r in ordered)
    cases = [c for r in ordered for c in r.cases]
    counts.update(c.status for c in cases)
    start = min((r.start for r in ordered), default=time.time())
    stop = max((r.stop for r in ordered), default=start)
    totals: dict[str, str] = {
        "name": _clean(suite_name),
        "tests": str(len(ordered) + len(cases)),
        "failures": str(counts["failed"]),
        "errors": str(counts["error"]),
        "time": f"{max(stop - start, 0.0):.3f}",
    }
    suite = {
        **totals,
        "skipped": str(counts["skipped"]),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start)),
        "hostname": _clean(socket.gethostname()),
    }
    links = _Links(run_dir, path.parent.resolve())
    # The file ElementTree would write (ET.indent, then tostring), written as strings:
    # a tree of every test case, indented and serialized, was most of a run's ending.
    written: list[str] = []
    for record in ordered:
        iterated_run = record.nodeid in iterated
        case = _passed_case(record, iterated_run, links)
        if case is None:
            written += _tree_cases(record, iterated_run, links)
        else:
            written.append(case)
    head = f"<testsuites{_attributes(totals)}>\n  <testsuite{_attributes(suite)}"
    body = f">{_CASE_INDENT}{_CASE_INDENT.join(written)}\n  </testsuite>" if written else " />"
    text = f"{head}{body}\n</testsuites>"
    write_text(path, "<?xml version='1.0' encoding='utf-8'?>\n" + text + "\n")
