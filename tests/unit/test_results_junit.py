"""JUnit XML as cases: GoogleTest, CTest and pytest flavours, cut-off XML, refused DOCTYPEs."""

from __future__ import annotations

from pathlib import Path

from otto.results import SUITE, Case, parse

DATA = Path(__file__).resolve().parents[1] / "data" / "results"


def junit(data: str | bytes) -> list[Case]:
    return parse(data, format="junit")


def test_googletest_flavour() -> None:
    cases = junit((DATA / "gtest.xml").read_bytes())
    assert [(c.name, c.status) for c in cases] == [
        ("Demo.Passes", "passed"),
        ("Demo.Fails", "failed"),
        ("Demo.Skips", "skipped"),
        ("Demo.DISABLED_Off", "skipped"),
    ]
    assert cases[1].message.startswith("t.cc:4\nExpected equality of these values:")
    assert "one is not two" in cases[1].output
    assert cases[2].message == "t.cc:5\nno hardware"
    assert cases[3].message == "not run (notrun)"
    assert cases[0].duration == 0.0


def test_ctest_flavour() -> None:
    cases = junit((DATA / "ctest.xml").read_text())
    assert [(c.name, c.status) for c in cases] == [
        ("boots", "passed"),
        ("leds", "failed"),
        ("wifi", "skipped"),
        ("usb", "skipped"),
    ]
    assert cases[0].output == "booted\n"
    assert cases[1].output == "led 3 stuck\n"
    assert cases[1].message == "failure"  # CTest writes message=""
    assert cases[2].message == "SKIP_RETURN_CODE=77"
    assert cases[0].duration == 0.00368203


def test_pytest_flavour() -> None:
    cases = junit((DATA / "pytest.xml").read_bytes())
    assert [(c.name, c.status) for c in cases] == [
        ("tests.test_board.test_boot", "passed"),
        ("tests.test_board.test_leds", "failed"),
        ("tests.test_board.test_wifi", "skipped"),
        ("tests.test_usb", "error"),
    ]
    assert cases[0].output == "uptime 12.0s\n"
    assert cases[1].message == "assert 3 == 4\n +  where 3 = stuck()"
    assert "AssertionError" in cases[1].output


def test_nested_suites_and_a_testsuite_root() -> None:
    cases = junit(
        '<testsuite name="outer"><testcase name="a"/>'
        '<testsuite name="inner"><testcase classname="K" name="b"><error message="boom"/>'
        "</testcase></testsuite></testsuite>"
    )
    assert [(c.name, c.status, c.message) for c in cases] == [
        ("a", "passed", ""),
        ("K.b", "error", "boom"),
    ]


def test_cut_off_xml_keeps_the_complete_cases_and_is_an_error() -> None:
    whole = (DATA / "gtest.xml").read_text()
    cut = whole[: whole.index('<testcase name="Skips"') + 30]
    cases = junit(cut)
    assert [(c.name, c.status) for c in cases] == [
        ("Demo.Passes", "passed"),
        ("Demo.Fails", "failed"),
        (SUITE, "error"),
    ]
    assert "cut off or malformed at line" in cases[-1].message
    assert "2 complete cases before it" in cases[-1].message


def test_a_suite_listing_fewer_tests_than_it_declares_is_an_error() -> None:
    cases = junit('<testsuite name="s" tests="3"><testcase name="a"/></testsuite>')
    assert [(c.name, c.status) for c in cases] == [("a", "passed"), ("s.(suite)", "error")]
    assert cases[-1].message == "suite s declares 3 tests but lists 1"


def test_not_junit_and_empty() -> None:
    assert "root element is <html>" in junit("<html/>")[0].message
    for text in ("", "<testsuites/>", "not xml at all"):
        cases = junit(text)
        assert [c.status for c in cases] == ["error"], text


def test_doctype_and_entities_are_refused_before_parsing() -> None:
    bomb = (
        '<?xml version="1.0"?>\n<!-- a comment first -->\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
        + "".join(
            f'<!ENTITY lol{n} "{("&lol" + str(n - 1) + ";") * 10 if n else "&lol;" * 10}">'
            for n in range(10)
        )
        + ']>\n<testsuite><testcase name="&lol9;"/></testsuite>'
    )
    cases = junit(bomb)
    assert len(cases) == 1
    assert cases[0].status == "error"
    assert cases[0].message.startswith("refused: the XML declares a document type")
    external = '<!DOCTYPE t [<!ENTITY x SYSTEM "file:///etc/passwd">]><testsuite/>'
    assert junit(external)[0].message.startswith("refused")
    utf16 = bomb.encode("utf-16")
    assert junit(utf16)[0].message.startswith("refused")


def test_cdata_mentioning_a_doctype_is_fine() -> None:
    cases = junit(
        '<testsuite><testcase name="a"><system-out><![CDATA[<!DOCTYPE html>]]>'
        "</system-out></testcase></testsuite>"
    )
    assert [(c.name, c.status, c.output) for c in cases] == [("a", "passed", "<!DOCTYPE html>")]


def test_deeply_nested_suites_are_refused_not_a_crash() -> None:
    depth = 5000
    text = "<testsuite>" * depth + '<testcase name="a"/>' + "</testsuite>" * depth
    cases = junit(text)
    assert [c.status for c in cases] == ["error"]
    assert "nested more than" in cases[0].message


def test_odd_attributes() -> None:
    cases = junit('<testsuite><testcase name="a" time="1,234.5"/><testcase time="x"/></testsuite>')
    assert [(c.name, c.duration) for c in cases] == [("a", 1234.5), ("(unnamed)", None)]


def test_latin1_bytes_are_read() -> None:
    data = '<?xml version="1.0" encoding="ISO-8859-1"?>'
    data += '<testsuite><testcase name="caf\xe9"/></testsuite>'
    assert junit(data.encode("latin-1"))[0].name == "caf\xe9"
