"""report.html from hand-built records: escaped, self-contained, complete.

The page in a real browser is checked in tests/integration/test_otto_test.py.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from otto.monitor.store import Event, MetricStore
from otto.testing.records import TestRecord as Record
from otto.testing.report import MAX_REPORT_CHARS, stability, write_report
from tests.sample_records import HOSTILE, T0, sample_records


class Page(HTMLParser):
    """The tags, attributes, scripts and text of a page."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.text: list[str] = []
        self._script: dict[str, str | None] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self.text.append(" ")
        if tag in {"script", "style"}:
            self._script = {**dict(attrs), "tag": tag}

    def handle_endtag(self, tag: str) -> None:
        self.text.append(" ")
        if tag in {"script", "style"}:
            self._script = None

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self.scripts.append((self._script, data))
        else:
            self.text.append(data)

    def all_text(self) -> str:
        return "".join(self.text)

    def data(self) -> dict[str, list[dict[str, object]]]:
        (text,) = (body for attrs, body in self.scripts if attrs.get("id") == "report-data")
        loaded = json.loads(text)
        assert isinstance(loaded, dict)
        return loaded


@pytest.fixture
def report(tmp_path: Path) -> tuple[Path, Page]:
    path = write_report(tmp_path, sample_records(), title=f"nightly {HOSTILE}", threshold=80)
    return path, Page(path.read_text(encoding="utf-8"))


def test_written_in_the_run_folder(report: tuple[Path, Page], tmp_path: Path) -> None:
    path, _ = report
    assert path == tmp_path / "report.html"
    assert not (tmp_path / "report.html.part").exists()


def test_self_contained(report: tuple[Path, Page]) -> None:
    path, page = report
    for tag, attrs in page.tags:
        assert tag not in {"link", "img", "iframe", "object", "embed"}, tag
        assert "src" not in attrs, (tag, attrs)
        href = attrs.get("href") or ""
        assert not re.match(r"^[a-z][a-z0-9+.-]*:", href, re.I), href  # relative links only
    (csp,) = [a for t, a in page.tags if a.get("http-equiv") == "Content-Security-Policy"]
    assert "default-src 'none'" in (csp["content"] or "")
    assert "http://" not in path.read_text() and "https://" not in path.read_text().replace(
        "https://github.com/leeoniya/uPlot", ""
    )


def test_hostile_text_is_escaped(report: tuple[Path, Page]) -> None:
    path, page = report
    raw = path.read_text(encoding="utf-8")
    assert "<script>alert" not in raw
    # Only otto's own scripts: the data and the report's script (no charts, no uPlot).
    scripts = [attrs.get("type") for attrs, _ in page.scripts if attrs["tag"] == "script"]
    assert scripts == ["application/json", None]
    text = page.all_text()
    assert f"tests/test_hostile.py::test_name[{HOSTILE}]" in text
    assert f"nightly {HOSTILE}" in text
    assert f"echo '{HOSTILE}'" in text
    # Inside the data script too, as JSON that reads back exactly.
    labels = [s["label"] for s in page.data()["spans"]]
    assert f"test_name[{HOSTILE}]" in labels


def test_summary_counts_and_verdict(report: tuple[Path, Page]) -> None:
    _, page = report
    text = " ".join(page.all_text().split())
    for figure in ("7 tests", "10 runs", "4 passed", "4 failed", "1 errors", "1 skipped"):
        assert figure in text
    assert "44.4% pass rate" in text
    assert "Verdict failed" in text
    assert "hosts board-1, db, host-" in text
    assert "workers gw0" in text
    assert "5 below" in text


def test_pass_rates_per_test(report: tuple[Path, Page]) -> None:
    _, page = report
    text = " ".join(page.all_text().split())
    assert "Pass rate per test" in text
    assert "tests/test_net.py::test_ping[web-1] 4 3 1 0 0 0 75.0%" in text
    assert "3/4 passed (75.0%)" in text


def test_failure_evidence(report: tuple[Path, Page]) -> None:
    _, page = report
    text = page.all_text()
    assert "web-1 : ping -c 1 10.0.0.9 exited 1 (Failed)" in " ".join(text.split())
    assert "100% packet loss" in text
    assert "E       assert 1 == 0" in text
    assert "Device crash on board-1" in text
    assert 'Kernel panic - not syncing: <fatal> & "bad"' in text
    assert "otto.errors.ConnectError: db: connection refused" in text
    assert "needs a board with <wifi>" in text


def test_earlier_tries_are_kept(report: tuple[Path, Page]) -> None:
    _, page = report
    text = " ".join(page.all_text().split())
    assert "Earlier try 1 of 3: failed" in text
    assert "Earlier try 2 of 3: error" in text
    assert "link did not come up (try 1)" in text
    assert "fixture setup (try 2)" in text
    assert "still up (try 1)" in text and "still up (try 2)" in text and "still up (try 3)" in text


def test_links_are_relative_and_encoded(report: tuple[Path, Page]) -> None:
    _, page = report
    hrefs = [a["href"] for t, a in page.tags if t == "a" and a.get("href")]
    assert "tests/test_board.py__test_boot/transcript.log" in hrefs
    assert "tests/test_board.py__test_boot" in hrefs
    assert "tests/test_net.py__test_ping%5Bweb-1%5D/3/transcript.log" in hrefs
    hostile = [h for h in hrefs if h and "test_hostile" in h]
    assert hostile and all(re.fullmatch(r"[A-Za-z0-9_./%~-]+", h or "") for h in hostile)


def test_huge_output_is_cut_to_its_tail(report: tuple[Path, Page]) -> None:
    path, page = report
    assert path.stat().st_size < 10 * MAX_REPORT_CHARS
    text = page.all_text()
    assert text.count("the last line of a huge output") == 2
    assert "characters cut; the transcript has everything" in text


def test_spans_for_each_run(report: tuple[Path, Page]) -> None:
    _, page = report
    spans = page.data()["spans"]
    assert len(spans) == 10
    ping = [s for s in spans if str(s["label"]).startswith("test_ping")]
    assert [s["label"] for s in ping] == [f"test_ping[web-1] #{i}" for i in (1, 2, 3, 4)]
    assert ping[0]["t0"] == T0 and ping[0]["t1"] == T0 + 1.5
    assert [s["outcome"] for s in ping] == ["passed", "passed", "failed", "passed"]
    anchors = {a.get("id") for _, a in page.tags}
    assert all(s["anchor"] in anchors for s in spans)


def test_charts_from_the_monitor_database(tmp_path: Path) -> None:
    db = tmp_path / "monitor.db"
    with MetricStore(db) as store:
        for k in range(5000):
            store.write_round(
                T0 + k * 0.01,
                {
                    "web-1": {"cpu.percent": float(k % 100), "disk.used_percent[/home]": 40.0},
                    "web-2": {"cpu.percent": 1.0} if k % 2 else {},
                },
            )
        store.add_event(Event(1, T0, "start tests/test_net.py::test_ping[web-1]"))
        store.add_event(Event(2, T0 + 10, f"link flap {HOSTILE}", end=T0 + 11))
    page = Page(write_report(tmp_path, sample_records(), monitor_db=db).read_text())
    data = page.data()
    charts = {c["metric"]: c for c in data["charts"]}
    assert list(charts) == ["cpu.percent", "disk.used_percent[/home]"]
    cpu = charts["cpu.percent"]
    assert cpu["hosts"] == ["web-1", "web-2"] and cpu["unit"] == "%" and not cpu["detail"]
    xs, web1, web2 = cpu["data"]  # type: ignore[misc]
    assert len(xs) <= 2001 and xs[0] == T0 and xs[-1] == pytest.approx(T0 + 49.99)
    assert web1[0] == 0.0 and web2[0] is None
    assert charts["disk.used_percent[/home]"]["detail"]
    # The collector's per-test events are drawn as spans; other events stay.
    assert [e["label"] for e in data["events"]] == [f"link flap {HOSTILE}"]
    # uPlot is inlined (with its licence), and nothing else is loaded.
    assert sum(attrs["tag"] == "script" for attrs, _ in page.scripts) == 3
    assert "Per device (1 charts)" in page.all_text()


def test_a_missing_or_foreign_database_is_noted(tmp_path: Path) -> None:
    page = Page(write_report(tmp_path, [], monitor_db=tmp_path / "none.db").read_text())
    assert "no metric database at" in page.all_text()
    assert "No test ran." in page.all_text()
    foreign = tmp_path / "foreign.db"
    import sqlite3

    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE t (x)")
    page = Page(write_report(tmp_path, [], monitor_db=foreign).read_text())
    assert "another program's SQLite database" in page.all_text()


def test_interrupted_runs_say_so(tmp_path: Path) -> None:
    record = Record("t.py::test_a", "test_a", "passed", T0, T0 + 1)
    text = Page(write_report(tmp_path, [record], interrupted=True).read_text()).all_text()
    assert "interrupted (Ctrl-C)" in text
    assert "Verdict interrupted" in " ".join(text.split())
    text = Page(write_report(tmp_path, [record]).read_text()).all_text()
    assert "Verdict passed" in " ".join(text.split())


def test_stability_counts() -> None:
    stats = stability(sample_records())
    ping = stats["tests/test_net.py::test_ping[web-1]"]
    assert (ping.runs, ping.passed, ping.failed, ping.rate) == (4, 3, 1, 75.0)
    assert ping.outcome == "failed"
    assert stats["tests/test_flaky.py::TestLink::test_up"].outcome == "flaky"
    assert stats["tests/test_board.py::test_skip"].rate is None
    assert stats["tests/test_board.py::test_setup_error"].outcome == "error"
