"""JUnit/xUnit XML (GoogleTest, CTest, pytest, ...) as cases, read with junitparser.

Roots ``<testsuites>`` and ``<testsuite>`` are both read, nested suites too. A
case is named ``classname.name`` (just ``name`` when the class is missing or the
same, as CTest writes it); its output is its failure or error text, then its
``system-out`` and ``system-err``. ``<error>`` is an error, ``<failure>`` a
failure, ``<skipped>`` (or GoogleTest's and CTest's ``status="notrun"``) a skip.

Never a pass when incomplete: XML that is cut off or malformed keeps the cases
that were complete before the break and adds an ``error`` case saying where it
broke; a suite declaring more tests than it lists is an error. A document type
declaration is refused before parsing (entities are the one way XML can grow
without bound), with one error case saying so.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from junitparser import (
    Attr,
    Error,
    Failure,
    JUnitXml,
    JUnitXmlError,
    Skipped,
    SystemErr,
    SystemOut,
    TestCase,
    TestSuite,
)

from otto.results.model import (
    SUITE,
    Case,
    CaseStatus,
    cap_output,
    make_case,
    no_cases,
    suite_error,
)


class _TestCase(TestCase):
    """junitparser's test case, with GoogleTest's and CTest's ``status`` attribute."""

    status = Attr()


class _TestSuite(TestSuite):
    """junitparser's suite; ``tests`` read as written, never recomputed (that rewrites it)."""

    testcase = _TestCase
    tests = Attr()


class _JUnitXml(JUnitXml):
    testsuite = _TestSuite


_NOT_RUN = ("notrun", "disabled")


def _decode(data: bytes) -> str:
    """Text of an XML file: UTF-16 when its first bytes say so, UTF-8, else Latin-1."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in data[:4]:
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _declares(text: str) -> bool:
    """Whether the prolog (before the root element) holds a ``<!DOCTYPE`` or other ``<!`` form."""
    pos = 0
    while True:
        at = text.find("<", pos)
        if at < 0:
            return False
        if text.startswith("<?", at):
            end = text.find("?>", at + 2)
        elif text.startswith("<!--", at):
            end = text.find("-->", at + 4)
        else:
            return text.startswith("<!", at)
        if end < 0:
            return False
        pos = end + 2


def _case(case: Any) -> Case:
    """One junitparser test case as a ``Case``."""
    name = case.name or "(unnamed)"
    classname = case.classname
    if classname and classname != name:
        name = f"{classname}.{name}"
    status: CaseStatus = "passed"
    message = ""
    texts: list[str] = []
    for entry in case:
        kind = type(entry)
        if kind is SystemOut or kind is SystemErr:
            if entry.text:
                texts.append(entry.text)
            continue
        if kind is Error:
            found: CaseStatus = "error"
        elif kind is Failure:
            found = "failed"
        elif kind is Skipped:
            found = "skipped"
        else:
            continue
        if _RANK[found] > _RANK[status]:
            status = found
            message = entry.message or (entry.text or "").strip().partition("\n")[0] or found
        if entry.text:
            texts.insert(0, entry.text)
    if status == "passed" and case.status in _NOT_RUN:
        status = "skipped"
        message = f"not run ({case.status})"
    try:
        duration = case.time
    except ValueError:
        duration = None
    output = texts[0] if len(texts) == 1 else "\n".join(texts)
    return make_case(name, status, cap_output(output), cap_output(message, 4096), duration)


_RANK = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}


def parse_junit(data: str | bytes) -> list[Case]:
    """Parse JUnit/xUnit XML into cases (see the module's docstring for the rules)."""
    text = data if isinstance(data, str) else _decode(data)
    if _declares(text):
        return [
            suite_error(
                "refused: the XML declares a document type (<!DOCTYPE>/<!ENTITY>), "
                "which JUnit files never need and which can expand without bound"
            )
        ]
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        return _salvage(text, exc)
    try:
        xml = _JUnitXml.fromroot(root)  # type: ignore[arg-type]  # it takes ElementTree's
    except JUnitXmlError:
        return [
            suite_error(
                f"not JUnit XML: the root element is <{root.tag}>, not <testsuites> or <testsuite>"
            )
        ]
    cases: list[Case] = []
    append = cases.append
    try:
        for suite in xml:
            before = len(cases)
            for case in suite:
                append(_case(case))
            declared = _declared(suite)
            listed = len(cases) - before
            if declared is not None and declared > listed:
                what = f"suite {suite.name}" if suite.name else "a suite"
                message = f"{what} declares {declared} tests but lists {listed}"
                append(
                    make_case(
                        f"{suite.name}.{SUITE}" if suite.name else SUITE, "error", "", message
                    )
                )
    except RecursionError:
        return [suite_error("refused: the XML's suites are nested too deeply to read")]
    if not cases:
        return [no_cases("JUnit test cases")]
    return cases


def _declared(suite: Any) -> int | None:
    value = suite.tests
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _salvage(text: str, error: ET.ParseError) -> list[Case]:
    """The complete cases before the point where the XML broke, then an error case for it."""
    cases: list[Case] = []
    parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(events=("end",))
    try:
        parser.feed(text)
        parser.close()
    except ET.ParseError:
        pass
    for event in parser.read_events():
        elem = event[-1]
        if isinstance(elem, ET.Element) and elem.tag == "testcase":
            cases.append(_case(_TestCase.fromelem(elem)))  # type: ignore[no-untyped-call]
    line, column = error.position
    what = str(error).partition(": line")[0]
    message = (
        f"the XML is cut off or malformed at line {line}, column {column} ({what}); "
        f"{len(cases)} complete case{'s' if len(cases) != 1 else ''} before it"
    )
    tail = text[-2000:]
    cases.append(suite_error(message, tail))
    return cases
