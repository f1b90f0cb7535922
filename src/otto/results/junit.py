"""JUnit/xUnit XML (GoogleTest, CTest, pytest, ...) as cases, read with junitparser.

junitparser reads the document and walks its suites (roots ``<testsuites>`` and
``<testsuite>``); each ``<testcase>`` is then read from its element in one pass
(junitparser's per-case wrapper, descriptors and result objects cost more than
the parse itself). A case is named ``classname.name`` (just ``name`` when the
class is missing or the same, as CTest writes it); its output is its failure or
error text, then its ``system-out`` and ``system-err``. ``<error>`` is an error,
``<failure>`` a failure, ``<skipped>`` (or GoogleTest's and CTest's
``status="notrun"``) a skip.

Never a pass when incomplete: XML that is cut off or malformed keeps the cases
that were complete before the break and adds an ``error`` case saying where it
broke; a suite declaring more tests than it lists is an error. A document type
declaration is refused before parsing (entities are the one way XML can grow
without bound), with one error case saying so.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from typing import cast

from junitparser import Attr, JUnitXml, JUnitXmlError, TestSuite

from otto.results.model import (
    CASE_SETTERS,
    MAX_CASE_OUTPUT,
    SUITE,
    Case,
    CaseStatus,
    cap_output,
    make_case,
    no_cases,
    suite_error,
)

#: Suites nested deeper than this are refused (hostile input cannot build a deep stack).
MAX_NESTING = 64


class _TestSuite(TestSuite):
    """junitparser's suite; ``tests`` read as written, never recomputed (that rewrites it)."""

    tests = Attr()

    def case_elements(self) -> Iterator[ET.Element]:
        """Its ``<testcase>`` elements, then its nested suites', as junitparser orders them."""
        stack: list[tuple[ET.Element, int]] = [(self._elem, 0)]
        while stack:
            elem, depth = stack.pop()
            yield from elem.iterfind("testcase")
            nested = elem.findall("testsuite")
            if nested and depth >= MAX_NESTING:
                raise _TooDeep
            stack.extend((child, depth + 1) for child in reversed(nested))


class _JUnitXml(JUnitXml):
    testsuite = _TestSuite


class _TooDeep(Exception):
    pass


_NOT_RUN = ("notrun", "disabled")
_FOUND: dict[str, CaseStatus] = {"error": "error", "failure": "failed", "skipped": "skipped"}
_RANK = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}
_OUTPUTS = ("system-out", "system-err")
_new = object.__new__
_set_name, _set_status, _set_output, _set_message, _set_duration = CASE_SETTERS


def _case(elem: ET.Element) -> Case:
    """One ``<testcase>`` element as a ``Case``."""
    get = elem.attrib.get
    name = get("name") or "(unnamed)"
    classname = get("classname")
    if classname and classname != name:
        name = classname + "." + name
    time = get("time")
    duration: float | None = None
    if time:
        try:
            duration = float(time)
        except ValueError:
            duration = _float(time)
    run = get("status")
    if not len(elem):
        # A passing case has no child: built here without the dataclass's __init__.
        case = _new(Case)
        _set_name(case, name)
        _set_output(case, "")
        _set_duration(case, duration)
        if run is None or run not in _NOT_RUN:
            _set_status(case, "passed")
            _set_message(case, "")
        else:
            _set_status(case, "skipped")
            _set_message(case, f"not run ({run})")
        return case
    status: CaseStatus = "passed"
    message = ""
    texts: list[str] = []
    for child in elem:
        tag = child.tag
        text = child.text
        found = _FOUND.get(tag) if isinstance(tag, str) else None
        if found is None:
            if text and tag in _OUTPUTS:
                texts.append(text)
            continue
        if _RANK[found] > _RANK[status]:
            status = found
            message = child.get("message") or (text or "").strip().partition("\n")[0] or tag
        if text:
            texts.insert(0, text)
    if status == "passed" and run in _NOT_RUN:
        status = "skipped"
        message = f"not run ({run})"
    output = texts[0] if len(texts) == 1 else "\n".join(texts)
    if len(output) > MAX_CASE_OUTPUT:
        output = cap_output(output)
    return make_case(name, status, output, cap_output(message, 4096), duration)


def _float(text: str) -> float | None:
    """A duration written with thousands separators ("1,234.5"), or None."""
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


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
        for suite in cast("Iterable[_TestSuite]", xml):
            before = len(cases)
            for elem in suite.case_elements():
                append(_case(elem))
            _check_count(suite, len(cases) - before, cases)
    except _TooDeep:
        message = f"refused: the XML's suites are nested more than {MAX_NESTING} deep"
        return [suite_error(message)]
    if not cases:
        return [no_cases("JUnit test cases")]
    return cases


def _check_count(suite: _TestSuite, listed: int, cases: list[Case]) -> None:
    """An error case when the suite declares more tests than it lists (it was cut short)."""
    value = suite.tests
    declared = int(value) if isinstance(value, str) and value.isdigit() else None
    if declared is not None and declared > listed:
        name = suite.name
        what = f"suite {name}" if name else "a suite"
        message = f"{what} declares {declared} tests but lists {listed}"
        cases.append(make_case(f"{name}.{SUITE}" if name else SUITE, "error", "", message))


def _salvage(text: str, error: ET.ParseError) -> list[Case]:
    """The complete cases before the point where the XML broke, then an error case for it."""
    cases: list[Case] = []
    parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(events=("end",))
    try:
        parser.feed(text)
        parser.close()
    except ET.ParseError:
        pass
    events = parser.read_events()
    while True:
        try:
            event = next(events)
        except (StopIteration, ET.ParseError):  # the error is queued after the last event
            break
        elem = event[-1]
        if isinstance(elem, ET.Element) and elem.tag == "testcase":
            cases.append(_case(elem))
    line, column = error.position
    what = str(error).partition(": line")[0]
    message = (
        f"the XML is cut off or malformed at line {line}, column {column} ({what}); "
        f"{len(cases)} complete case{'s' if len(cases) != 1 else ''} before it"
    )
    cases.append(suite_error(message, text[-2000:]))
    return cases
