"""The run as one self-contained page: ``report.html`` in the run folder.

The page loads nothing: its CSS, its script and uPlot (the dashboard's vendored
copy) are inlined, and a Content-Security-Policy forbids any request. It holds:

- a summary: counts, the verdict, duration, hosts and workers, and each test's
  pass rate when tests ran more than once (against ``--threshold``);
- the metric charts of ``monitor.db`` (when given), a line per host, each
  test's span shaded and named; a click on a span opens that test;
- every test: outcome, duration, hosts; for a failure the failing commands
  (host, command, exit status, output tail), its failed non-fatal checks,
  pytest's report, a device crash with its console excerpt, the earlier tries
  of a rerun test, and links (relative) to the transcript and the test's folder;
  the device-side cases published during it, and the metrics it recorded (a
  chart across iterations when it ran more than once, a table otherwise);
- with ``--baseline``, each metric's baseline value, value now, change and verdict.

Every name and output is escaped: tests and devices print anything. Long text
is cut to its tail with a note (the transcript has it all).
"""

from __future__ import annotations

import functools
import html
import json
import math
import re
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from otto.errors import StoreError
from otto.testing.baseline import Comparison
from otto.testing.checks import describe_checks
from otto.testing.evidence import write_text
from otto.testing.records import (
    CommandFailure,
    DeviceCase,
    FailedCheck,
    TestRecord,
    describe_cases,
)
from otto.testing.verdict import Verdict, judge

__all__ = ["TestStats", "stability", "write_report"]

_STATIC = Path(__file__).with_name("static")
_UPLOT = Path(__file__).parents[1] / "monitor" / "static"

MAX_REPORT_CHARS = 20_000
"""Characters of pytest's report kept per test run (the tail)."""
MAX_OUTPUT_CHARS = 8_000
"""Characters of a failing command's output, a crash excerpt or an earlier try kept."""
MAX_PASSED_ROWS = 500
"""Passed iterations listed per test; the rest are counted."""
MAX_POINTS = 2_000
"""Points per chart line; longer runs are thinned evenly."""
MAX_EVENTS = 500
MAX_CASE_ROWS = 2_000
"""Device-side cases listed per test; the rest are counted."""
_CHART_W, _CHART_H, _CHART_PAD = 360, 90, 6

_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data:; base-uri 'none'; form-action 'none'"
)

# Charts shown first, in this order, with these titles; other whole-host metrics follow
# by name, and per-device ones ("disk.used_percent[/home]") go to a folded section.
_TITLES = {
    "cpu.percent": "CPU busy",
    "load.1m": "Load average, 1 min",
    "mem.percent": "Memory used (%)",
    "mem.used_bytes": "Memory used",
    "swap.percent": "Swap used (%)",
    "net.rx_bytes_per_s": "Network received",
    "net.tx_bytes_per_s": "Network sent",
    "disk.read_bytes_per_s": "Disk read",
    "disk.write_bytes_per_s": "Disk written",
    "disk.used_percent": "Disk used, root filesystem",
    "load.5m": "Load average, 5 min",
    "load.15m": "Load average, 15 min",
    "mem.total_bytes": "Memory total",
    "swap.used_bytes": "Swap used",
    "swap.total_bytes": "Swap total",
    "procs.running": "Processes running",
    "procs.total": "Processes",
}
_ORDER = list(_TITLES)


@dataclass
class TestStats:
    """How one test (node id) fared over its runs."""

    __test__ = False  # not a pytest test class

    nodeid: str
    runs: int = 0
    passed: int = 0
    failed: int = 0
    error: int = 0
    skipped: int = 0
    flaky: int = 0
    """Runs that passed after earlier failed tries."""
    total_time: float = 0.0
    max_time: float = 0.0

    @property
    def rate(self) -> float | None:
        """Percent of the runs that were not skipped which passed; None when all were skipped."""
        counted = self.runs - self.skipped
        return 100.0 * self.passed / counted if counted else None

    @property
    def outcome(self) -> str:
        """The worst outcome over the runs: error, failed, flaky, passed or skipped."""
        if self.error:
            return "error"
        if self.failed:
            return "failed"
        if self.flaky:
            return "flaky"
        return "passed" if self.passed else "skipped"


def stability(records: Iterable[TestRecord]) -> dict[str, TestStats]:
    """Each test's counts and pass rate over its runs, in the order tests first ran."""
    stats: dict[str, TestStats] = {}
    for record in sorted(records, key=lambda r: (r.start, r.iteration)):
        s = stats.setdefault(record.nodeid, TestStats(record.nodeid))
        s.runs += 1
        setattr(s, record.outcome, getattr(s, record.outcome) + 1)
        if record.outcome == "passed" and record.earlier:
            s.flaky += 1
        s.total_time += record.duration
        s.max_time = max(s.max_time, record.duration)
    return stats


# --- text helpers ---------------------------------------------------------------------------


_MARKUP = re.compile("[&<>\"']")


def _e(text: object) -> str:
    text = str(text)
    if _MARKUP.search(text) is None:  # most names and times: nothing to escape
        return text
    return html.escape(text, quote=True)


def _tail(text: str, limit: int) -> str:
    """``text`` escaped, cut to its last ``limit`` characters with a note."""
    if len(text) <= limit:
        return _e(text)
    cut = len(text) - limit
    return (
        f'<span class="note">[{cut:,} characters cut; the transcript has everything]</span>\n'
        + _e(text[-limit:])
    )


def _pre(text: str, limit: int) -> str:
    return f"<pre>{_tail(text, limit)}</pre>" if text else ""


def _href(path: str) -> str:
    # Percent-encoded (":" too), so a path can never become a javascript: URL.
    return _e(quote(path))


def _duration(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def _when(t: float) -> str:
    return _second(math.floor(t))


@functools.lru_cache(maxsize=64)
def _second(t: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def _rate(rate: float | None) -> str:
    if rate is None:
        return '<span class="muted">–</span>'
    return f'<span class="rate"><span style="width:{rate:.1f}%"></span></span>{rate:.1f}%'


# --- monitor charts ---------------------------------------------------------------------------


def _unit(metric: str) -> str:
    base = metric.split("[", 1)[0]
    if base.endswith("bytes_per_s"):
        return "B/s"
    if base.endswith("bytes"):
        return "B"
    if base.endswith("percent"):
        return "%"
    return ""


def _title(metric: str) -> str:
    base, _, device = metric.partition("[")
    title = _TITLES.get(base, base)
    return f"{title.split(',')[0]}: {device.rstrip(']')}" if device else title


def _rank(metric: str) -> tuple[int, str]:
    base = metric.split("[", 1)[0]
    return (_ORDER.index(base) if base in _ORDER else len(_ORDER), metric)


def _thin(xs: list[float]) -> list[float]:
    if len(xs) <= MAX_POINTS:
        return xs
    step = math.ceil(len(xs) / MAX_POINTS)
    kept = xs[::step]
    return kept if kept[-1] == xs[-1] else [*kept, xs[-1]]


def _monitor_data(
    db: Path, records: Sequence[TestRecord]
) -> tuple[list[dict[str, object]], list[dict[str, object]], str]:
    """``(charts, events, problem)`` read from a metric database."""
    from otto.monitor.store import MetricStore

    if not db.is_file():
        return [], [], f"no metric database at {db}"
    try:
        with MetricStore(db) as store:
            hosts = store.host_names()
            charts: list[dict[str, object]] = []
            for metric in sorted(store.metric_names(), key=_rank):
                lines = {host: dict(store.series(host, metric)) for host in hosts}
                lines = {h: points for h, points in lines.items() if points}
                if not lines:
                    continue
                xs = _thin(sorted({t for points in lines.values() for t in points}))
                charts.append(
                    {
                        "metric": metric,
                        "title": _title(metric),
                        "unit": _unit(metric),
                        "detail": "[" in metric,
                        "hosts": list(lines),
                        "data": [xs, *([points.get(t) for t in xs] for points in lines.values())],
                    }
                )
            nodeids = {r.nodeid for r in records}
            events: list[dict[str, object]] = [
                dict(ev.as_dict())
                for ev in store.events()
                # The collector's events at each test's start and end are drawn as spans.
                if not any(nodeid in ev.label for nodeid in nodeids)
            ][:MAX_EVENTS]
    except StoreError as exc:
        return [], [], str(exc)
    return charts, events, ""


def _json_script(data: object) -> str:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    # Inside <script>, "</script>" or "<!--" in a test name would end or confuse it.
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="report-data">{text}</script>'


def _inline_script(text: str) -> str:
    return "<script>" + text.replace("</script", "<\\/script") + "</script>"


# --- the page -----------------------------------------------------------------------------


def _failure(failure: CommandFailure) -> str:
    error = f' <span class="muted">{_e(failure.error)}</span>' if failure.error else ""
    return (
        f'<div class="command"><b>{_e(failure.host)}</b>: <code>{_e(failure.command)}</code> '
        f"exited <b>{failure.retcode}</b> ({_e(failure.status)}){error}"
        f"{_pre(failure.output_tail, MAX_OUTPUT_CHARS)}</div>"
    )


def _links(record: TestRecord) -> str:
    folder = record.folder
    if folder and record.transcript == f"{folder}/transcript.log":  # as the plugin writes them
        href = _href(folder)  # quote() is per character: the transcript's is this + its name
        return f'<a href="{href}/transcript.log">transcript</a> · <a href="{href}">test folder</a>'
    links = []
    if record.transcript:
        links.append(f'<a href="{_href(record.transcript)}">transcript</a>')
    if record.folder:
        links.append(f'<a href="{_href(record.folder)}">test folder</a>')
    return " · ".join(links)


def _run_block(record: TestRecord, anchor: str, iterated: bool) -> str:
    outcome = record.outcome
    label = f"iteration {record.iteration}" if iterated else "run"
    facts = [
        f'<span class="badge {outcome}">{outcome}</span>',
        f"<b>{label}</b>",
        _e(_when(record.start)),
        _e(_duration(record.duration)),
    ]
    if record.hosts:
        facts.append("hosts: " + _e(", ".join(record.hosts)))
    if record.worker:
        facts.append(f"worker {_e(record.worker)}")
    if links := _links(record):
        facts.append(links)
    parts = [f'<div class="run {outcome}" id="{anchor}"><div class="run-head">']
    parts += [f"<span>{f}</span>" for f in facts]
    parts.append("</div>")
    if record.crash is not None:
        crash = record.crash
        parts.append(
            f'<div class="crash"><b>Device crash on {_e(crash.host)}</b> '
            f"(matched <code>{_e(crash.pattern)}</code>)"
            f"{_pre(crash.excerpt, MAX_OUTPUT_CHARS)}</div>"
        )
    if record.failures:
        parts.append("<h4>Failing commands</h4>")
        parts += [_failure(f) for f in record.failures]
    if record.checks:
        parts.append(_checks(record.checks))
    bad = [c for c in record.cases if c.bad]
    if bad:
        parts.append(
            "<h4>Failed device-side cases</h4><ul>"
            + "".join(
                f"<li>{_case_badge(c.status)} <code>{_e(c.name)}</code>"
                + (f": {_e(c.message)}" if c.message else "")
                + "</li>"
                for c in bad
            )
            + "</ul>"
        )
    generated = (record.checks and record.longrepr.startswith(describe_checks(record.checks))) or (
        bad and record.longrepr == describe_cases(record.cases)
    )
    if record.longrepr and not generated:
        heading = "Reason" if outcome == "skipped" else "pytest's report"
        parts.append(f"<h4>{heading}</h4>{_pre(record.longrepr, MAX_REPORT_CHARS)}")
    for number, attempt in enumerate(record.earlier, 1):
        parts.append(
            f"<details><summary>Earlier try {number} of {len(record.earlier) + 1}: "
            f'<span class="badge {attempt.outcome}">{attempt.outcome}</span> '
            f"{_e(_when(attempt.start))}, {_e(_duration(attempt.stop - attempt.start))}</summary>"
            f"{_pre(attempt.longrepr, MAX_OUTPUT_CHARS)}</details>"
        )
    parts.append("</div>")
    return "".join(parts)


def _case_badge(status: str) -> str:
    # Styled inline: the test block's own outcome class would colour a nested badge.
    return (
        f'<span class="badge {status}" style="color:var(--{status});'
        f'background:var(--{status}-bg)">{_e(status)}</span>'
    )


def _checks(checks: list[FailedCheck]) -> str:
    count = len(checks)
    items = "".join(
        f"<li><code>{_e(c.location)}</code> "
        + (_pre(c.message, MAX_OUTPUT_CHARS) if "\n" in c.message else _e(c.message))
        + "</li>"
        for c in checks
    )
    return (
        f'<h4>{count} failed check{"s" if count != 1 else ""}</h4><ol class="checks">{items}</ol>'
    )


def _number(value: float | None, unit: str | None = None) -> str:
    if value is None:
        return "–"
    text = f"{value:.6g}"
    return f"{text} {unit}" if unit else text


def _svg_chart(points: list[tuple[int, float]], label: str) -> str:
    """A small line chart of ``(iteration, value)`` points (inline SVG: no script)."""
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if y1 == y0:
        y0, y1 = y0 - 1, y1 + 1
    w, h, pad = _CHART_W, _CHART_H, _CHART_PAD

    def px(x: int) -> float:
        return pad + (w - 2 * pad) * ((x - x0) / (x1 - x0) if x1 > x0 else 0.5)

    def py(y: float) -> float:
        return h - pad - (h - 2 * pad) * (y - y0) / (y1 - y0)

    line = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
    dots = "".join(
        f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="#4e79a7">'
        f"<title>iteration {x}: {_e(f'{y:.6g}')}</title></circle>"
        for x, y in points[:MAX_POINTS]
    )
    return (
        f'<svg class="metric-chart" role="img" aria-label="{_e(label)}" width="{w}" '
        f'height="{h}" viewBox="0 0 {w} {h}" style="border:1px solid #ccc;background:#fff">'
        f'<polyline fill="none" stroke="#4e79a7" stroke-width="1.5" points="{line}"/>'
        f"{dots}</svg>"
    )


def _metrics_section(runs: list[TestRecord], iterated: bool) -> str:
    series: dict[tuple[str, str | None], list[tuple[int, float]]] = {}
    units: dict[tuple[str, str | None], str | None] = {}
    better: dict[tuple[str, str | None], str] = {}
    for record in runs:
        for metric in record.metrics:
            key = (metric.name, metric.host)
            series.setdefault(key, []).append((record.iteration, float(metric.value)))
            units[key] = metric.unit
            better[key] = metric.better
    if not series:
        return ""
    rows = []
    for key, points in series.items():
        name, host = key
        values = [v for _, v in points]
        unit = units[key]
        chart = _svg_chart(points, f"{name} across iterations") if iterated else ""
        rows.append(
            f'<tr class="metric"><td><code>{_e(name)}</code></td><td>{_e(host or "")}</td>'
            f"<td class=num>{_e(_number(values[-1], unit))}</td>"
            + (
                f"<td class=num>{_e(_number(min(values), unit))}</td>"
                f"<td class=num>{_e(_number(math.fsum(values) / len(values), unit))}</td>"
                f"<td class=num>{_e(_number(max(values), unit))}</td><td>{chart}</td>"
                if iterated
                else ""
            )
            + f"<td>{_e(better[key])} is better</td></tr>"
        )
    head = (
        "<th>metric</th><th>host</th><th class=num>last</th><th class=num>min</th>"
        "<th class=num>mean</th><th class=num>max</th><th>across iterations</th>"
        if iterated
        else "<th>metric</th><th>host</th><th class=num>value</th>"
    )
    return (
        f'<h4>Metrics</h4><table class="metrics"><thead><tr>{head}<th></th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _cases_section(runs: list[TestRecord], iterated: bool) -> str:
    found: list[tuple[TestRecord, DeviceCase]] = [(r, c) for r in runs for c in r.cases]
    if not found:
        return ""
    counts = Counter(c.status for _, c in found)
    shown = found[:MAX_CASE_ROWS]
    rows = "".join(
        f'<tr class="case {c.status}">'
        + (f"<td class=num>{r.iteration}</td>" if iterated else "")
        + f"<td><code>{_e(c.name)}</code></td><td>{_case_badge(c.status)}</td>"
        f"<td>{_e(c.message)}</td>"
        f"<td class=num>{_e(_duration(c.duration)) if c.duration is not None else ''}</td>"
        f"<td>{_e(c.source)}</td><td>"
        + (
            f"<details><summary>output</summary>{_pre(c.output, MAX_OUTPUT_CHARS)}</details>"
            if c.output
            else ""
        )
        + "</td></tr>"
        for r, c in shown
    )
    more = (
        f'<p class="note">{len(found) - len(shown)} more cases not listed (junit.xml has them).</p>'
        if len(found) > len(shown)
        else ""
    )
    tally = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return (
        f'<h4>Device-side cases ({_e(tally)})</h4><table class="cases"><thead><tr>'
        + ("<th class=num>iteration</th>" if iterated else "")
        + "<th>case</th><th>status</th><th>message</th><th class=num>duration</th>"
        f"<th>from</th><th>output</th></tr></thead><tbody>{rows}</tbody></table>{more}"
    )


def _baseline_section(comparisons: list[Comparison]) -> str:
    if not comparisons:
        return ""
    badge = {"regressed": "failed", "improved": "passed", "ok": "passed", "new": "skipped"}
    rows = "".join(
        f'<tr class="{"below" if c.verdict == "regressed" else ""}" data-verdict="{c.verdict}">'
        f"<td><code>{_e(c.nodeid)}</code></td><td><code>{_e(c.name)}</code></td>"
        f"<td>{_e(c.host or '')}</td><td class=num>{_e(_number(c.baseline, c.unit))}</td>"
        f"<td class=num>{_e(_number(c.now, c.unit))}</td>"
        f"<td class=num>{_e(f'{c.change:+.1f}%' if c.change is not None else '–')}</td>"
        f"<td class=num>{c.tolerance:g}%</td><td>{_e(c.better)}</td>"
        f'<td><span class="badge {badge.get(c.verdict, "skipped")}">{_e(c.verdict)}</span></td>'
        "</tr>"
        for c in comparisons
    )
    return (
        '<h2 id="baseline">Metrics against the baseline</h2><table class="baseline"><thead><tr>'
        "<th>test</th><th>metric</th><th>host</th><th class=num>baseline</th>"
        "<th class=num>now</th><th class=num>difference</th><th class=num>tolerance</th>"
        "<th>better</th><th>verdict</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def _passed_rows(rows: list[tuple[TestRecord, str]], iterated: bool) -> str:
    shown = rows[:MAX_PASSED_ROWS]
    body = "".join(
        f'<tr id="{anchor}"><td>{r.iteration if iterated else ""}</td>'
        f"<td>{_e(_when(r.start))}</td><td class=num>{_e(_duration(r.duration))}</td>"
        f"<td>{_e(', '.join(r.hosts))}</td><td>{_e(r.worker)}</td><td>{_links(r)}</td></tr>"
        for r, anchor in shown
    )
    more = (
        f'<p class="note">{len(rows) - len(shown)} more passed runs not listed.</p>'
        if len(rows) > len(shown)
        else ""
    )
    return f"{_PASSED_HEAD}{body}</tbody></table>{more}"


def _passed_block(index: int, record: TestRecord) -> tuple[str, list[dict[str, object]]] | None:
    """:func:`_test_block` of a test that ran once and passed at its first try, recording
    nothing more than its hosts, worker and evidence (most tests), written in one go;
    None for any other test."""
    if record.outcome != "passed" or record.earlier or record.cases or record.metrics:
        return None
    anchor = f"run-{index}-0"
    nodeid = _e(record.nodeid)
    took = _e(_duration(record.duration))
    hosts = f'<span class="muted">{_e(", ".join(sorted(set(record.hosts))))}</span>'
    page = (
        f'<details class="test passed" id="test-{index}" data-kinds="passed" '
        f'data-nodeid="{nodeid}"><summary><span class="badge passed">passed</span>'
        f'<span class="nodeid">{nodeid}</span><span class="muted">{took}</span>'
        f"{hosts if record.hosts else ''}</summary><div class=body>{_PASSED_HEAD}"
        f'<tr id="{anchor}"><td></td><td>{_e(_when(record.start))}</td>'
        f"<td class=num>{took}</td><td>{_e(', '.join(record.hosts))}</td>"
        f"<td>{_e(record.worker)}</td><td>{_links(record)}</td></tr></tbody></table>"
        "</div></details>"
    )
    span: dict[str, object] = {
        "t0": record.start,
        "t1": record.stop,
        "label": record.name or record.nodeid.rsplit("::", 1)[-1],
        "outcome": "passed",
        "anchor": anchor,
    }
    return page, [span]


_PASSED_HEAD = (
    '<table class="passed"><thead><tr><th>iteration</th><th>started</th>'
    "<th class=num>duration</th><th>hosts</th><th>worker</th><th>evidence</th></tr></thead>"
    "<tbody>"
)


def _test_block(
    index: int, stats: TestStats, runs: list[TestRecord], threshold: float | None
) -> tuple[str, list[dict[str, object]]]:
    iterated = len(runs) > 1
    outcome = stats.outcome
    kinds = {r.outcome for r in runs} | ({"flaky"} if stats.flaky else set())
    hosts = sorted({h for r in runs for h in r.hosts})
    summary = [
        f'<span class="badge {outcome}">{outcome}</span>',
        f'<span class="nodeid">{_e(stats.nodeid)}</span>',
    ]
    if iterated:
        below = threshold is not None and stats.rate is not None and stats.rate < threshold
        summary.append(
            f'<span class="{"badge failed" if below else "muted"}">'
            f"{stats.passed}/{stats.runs - stats.skipped} passed"
            f"{f' ({stats.rate:.1f}%)' if stats.rate is not None else ''}</span>"
        )
    summary.append(f'<span class="muted">{_e(_duration(stats.total_time))}</span>')
    if hosts:
        summary.append(f'<span class="muted">{_e(", ".join(hosts))}</span>')
    spans: list[dict[str, object]] = []
    blocks: list[str] = []
    passed: list[tuple[TestRecord, str]] = []
    short = runs[0].name or stats.nodeid.rsplit("::", 1)[-1]
    for number, record in enumerate(runs):
        anchor = f"run-{index}-{number}"
        spans.append(
            {
                "t0": record.start,
                "t1": record.stop,
                "label": f"{short} #{record.iteration}" if iterated else short,
                "outcome": record.outcome,
                "anchor": anchor,
            }
        )
        if record.outcome == "passed" and not record.earlier:
            passed.append((record, anchor))
        else:
            blocks.append(_run_block(record, anchor, iterated))
    if passed:
        blocks.append(_passed_rows(passed, iterated))
    blocks.append(_cases_section(runs, iterated))
    blocks.append(_metrics_section(runs, iterated))
    is_open = " open" if outcome in {"failed", "error", "flaky"} else ""
    page = (
        f'<details class="test {outcome}" id="test-{index}"{is_open} '
        f'data-kinds="{_e(" ".join(sorted(kinds)))}" data-nodeid="{_e(stats.nodeid)}">'
        f"<summary>{''.join(summary)}</summary><div class=body>{''.join(blocks)}</div></details>"
    )
    return page, spans


_SEVERITY = {"error": 0, "failed": 1, "flaky": 2, "passed": 3, "skipped": 4}


def _summary(
    records: Sequence[TestRecord],
    stats: dict[str, TestStats],
    threshold: float | None,
    interrupted: bool,
    links: str,
    *,
    verdict: Verdict | None = None,
) -> tuple[str, bool]:
    counts = Counter(r.outcome for r in records)
    flaky = sum(s.flaky for s in stats.values())
    counted = len(records) - counts["skipped"]
    if verdict is None:
        verdict = judge(records, threshold=threshold, interrupted=interrupted)
    below = verdict.below
    ok = verdict.passed
    shown = verdict.headline
    badge = {"passed": "passed", "no tests": "skipped"}.get(shown, "failed")
    start = min((r.start for r in records), default=0.0)
    stop = max((r.stop for r in records), default=0.0)
    hosts = sorted({h for r in records for h in r.hosts})
    workers = sorted({r.worker for r in records if r.worker})
    cells = [
        (str(len(stats)), "tests"),
        (str(len(records)), "runs"),
        (str(counts["passed"]), "passed"),
        (str(counts["failed"]), "failed"),
        (str(counts["error"]), "errors"),
        (str(counts["skipped"]), "skipped"),
        (str(flaky), "flaky (passed on a rerun)"),
        (f"{100 * counts['passed'] / counted:.1f}%" if counted else "–", "pass rate"),
        (_duration(stop - start) if records else "–", "duration"),
    ]
    facts = []
    if records:
        facts.append(("started", _e(_when(start))))
        facts.append(("ended", _e(_when(stop))))
    facts.append(("hosts", _e(", ".join(hosts)) or '<span class="muted">none</span>'))
    if workers:
        facts.append(("workers", _e(", ".join(workers))))
    if threshold is not None:
        facts.append(
            (
                "threshold",
                f"each test must pass at least {threshold:g}% of its runs: "
                + (
                    f'<b class="badge failed">{len(below)} below</b>'
                    if below
                    else '<b class="badge passed">all above</b>'
                ),
            )
        )
    if verdict.headline == "interrupted":
        facts.append(("note", "<b>interrupted (Ctrl-C): these are the results so far</b>"))
    elif verdict.reasons and not verdict.passed:
        facts.append(
            ("why", "<br>".join(f'<span class="reason">{_e(r)}</span>' for r in verdict.reasons))
        )
    if links:
        facts.append(("files", links))
    page = (
        '<section class="card" id="summary">'
        f'<div>Verdict <span class="verdict badge {badge}" id="verdict">{_e(shown)}</span></div>'
        '<div class="stats">'
        + "".join(
            f'<div class="stat"><div class="value">{_e(v)}</div>'
            f'<div class="label">{_e(k)}</div></div>'
            for v, k in cells
        )
        + '</div><dl class="facts">'
        + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
        + "</dl></section>"
    )
    return page, ok


def _stability_table(
    stats: dict[str, TestStats], anchors: dict[str, int], threshold: float | None
) -> str:
    rows = []
    for s in sorted(
        stats.values(), key=lambda s: (s.rate if s.rate is not None else 101, s.nodeid)
    ):
        below = threshold is not None and s.rate is not None and s.rate < threshold
        rows.append(
            f'<tr class="{"below" if below else ""}">'
            f'<td><a href="#test-{anchors[s.nodeid]}"><code>{_e(s.nodeid)}</code></a></td>'
            f"<td class=num>{s.runs}</td><td class=num>{s.passed}</td>"
            f"<td class=num>{s.failed}</td><td class=num>{s.error}</td>"
            f"<td class=num>{s.skipped}</td><td class=num>{s.flaky}</td>"
            f"<td>{_rate(s.rate)}</td>"
            f"<td class=num>{_e(_duration(s.total_time / s.runs))}</td>"
            f"<td class=num>{_e(_duration(s.max_time))}</td></tr>"
        )
    return (
        '<h2 id="stability">Pass rate per test</h2><table><thead><tr><th>test</th>'
        "<th class=num>runs</th><th class=num>passed</th><th class=num>failed</th>"
        "<th class=num>errors</th><th class=num>skipped</th><th class=num>flaky</th>"
        "<th>pass rate</th><th class=num>mean</th><th class=num>max</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _charts_section(charts: list[dict[str, object]], problem: str) -> str:
    if problem:
        return f'<h2 id="metrics">Metrics</h2><p class="note">{_e(problem)}</p>'
    detail = sum(1 for c in charts if c["detail"])
    legend = "".join(
        f'<span><span class="swatch" style="background:{color};opacity:.5"></span>{name}</span>'
        for name, color in (
            ("passed", "#2b8a3e"),
            ("failed", "#c92a2a"),
            ("error", "#d9480f"),
            ("skipped", "#868e96"),
        )
    )
    more = (
        f'<details id="more"><summary>Per device ({detail} charts)</summary>'
        '<div class="charts" id="more-charts"></div></details>'
        if detail
        else ""
    )
    return (
        '<h2 id="metrics">Metrics</h2>'
        f'<div class="legend"><span class="muted">test spans:</span>{legend}'
        '<span class="muted">click a span to open its test; drag to zoom, double-click to reset'
        "</span></div>"
        f'<div class="charts" id="charts"></div>{more}'
    )


def write_report(
    run_dir: Path,
    records: list[TestRecord],
    *,
    monitor_db: Path | None = None,
    title: str = "otto test run",
    threshold: float | None = None,
    interrupted: bool = False,
    junit: Path | None = None,
    verdict: Verdict | None = None,
) -> Path:
    """Write ``report.html`` into ``run_dir`` (replacing it at once) and return its path.

    Args:
        run_dir: the run folder; records' transcript and folder paths are relative to it.
        records: one per test run, in any order.
        monitor_db: the run's ``monitor.db``; its charts are drawn with each test's span.
        title: the page's heading.
        threshold: the minimum pass rate per test, in percent (``--threshold``).
        interrupted: the run was stopped early (the page says so).
        junit: the JUnit file, linked from the summary.
        verdict: the run's verdict (:func:`otto.testing.verdict.judge`); without it, it is
            judged from the records, ``threshold`` and ``interrupted``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ordered = sorted(records, key=lambda r: (r.start, r.iteration))
    stats = stability(ordered)
    by_test: dict[str, list[TestRecord]] = {}
    for record in ordered:
        by_test.setdefault(record.nodeid, []).append(record)
    anchors = {nodeid: index for index, nodeid in enumerate(stats)}
    tests_order = sorted(stats.values(), key=lambda s: _SEVERITY[s.outcome])
    blocks: list[str] = []
    spans: list[dict[str, object]] = []
    for s in tests_order:
        runs = by_test[s.nodeid]
        done = _passed_block(anchors[s.nodeid], runs[0]) if len(runs) == 1 else None
        page, test_spans = done or _test_block(anchors[s.nodeid], s, runs, threshold)
        blocks.append(page)
        spans += test_spans
    files = []
    for name in ("otto.log", "records.jsonl"):
        if (run_dir / name).exists():
            files.append(f'<a href="{_href(name)}">{name}</a>')
    if junit is not None:
        try:
            files.append(f'<a href="{_href(str(junit.resolve().relative_to(run_dir.resolve())))}">'
                         f"{_e(junit.name)}</a>")  # fmt: skip
        except ValueError:
            files.append(f"JUnit: <code>{_e(junit)}</code>")
    links = " · ".join(files)
    summary, _ = _summary(ordered, stats, threshold, interrupted, links, verdict=verdict)
    baseline_html = _baseline_section(verdict.metrics) if verdict is not None else ""
    charts: list[dict[str, object]] = []
    events: list[dict[str, object]] = []
    charts_html = ""
    if monitor_db is not None:
        charts, events, problem = _monitor_data(Path(monitor_db), ordered)
        charts_html = _charts_section(charts, problem)
    iterated = any(s.runs > 1 for s in stats.values())
    counts = Counter(s.outcome for s in stats.values())
    filters = "".join(
        f'<button type="button" data-filter="{kind}" aria-pressed="{str(kind == "all").lower()}">'
        f"{label}</button>"
        for kind, label in (
            ("all", f"all {len(stats)}"),
            ("failed", "failed"),
            ("error", "errors"),
            ("flaky", f"flaky {counts['flaky']}"),
            ("passed", "passed"),
            ("skipped", "skipped"),
        )
    )
    scripts = ""
    if charts:
        scripts += _inline_script(
            "/* uPlot, MIT License: "
            + (_UPLOT / "uPlot.LICENSE").read_text(encoding="utf-8").replace("*/", "* /")
            + "*/\n"
            + (_UPLOT / "uPlot.iife.min.js").read_text(encoding="utf-8")
        )
    scripts += _inline_script((_STATIC / "report.js").read_text(encoding="utf-8"))
    css = (_STATIC / "report.css").read_text(encoding="utf-8")
    if charts:
        css = (_UPLOT / "uPlot.min.css").read_text(encoding="utf-8") + "\n" + css
    css = css.replace("</style", "<\\/style")
    page = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{_e(title)}</title>
<style>{css}</style>
</head>
<body>
<main>
<h1>{_e(title)}</h1>
<div class="muted">written {_e(_when(time.time()))} in {_e(run_dir.resolve())}</div>
{summary}
{baseline_html}
{_stability_table(stats, anchors, threshold) if iterated else ""}
{charts_html}
<h2 id="tests">Tests</h2>
<div class="filters">{filters}<input id="search" type="search" placeholder="filter by name"
 aria-label="filter tests by name"></div>
{"".join(blocks) or '<p class="note">No test ran.</p>'}
<footer>otto test · records: one per test run · times in UTC</footer>
</main>
{_json_script({"charts": charts, "spans": spans, "events": events})}
{scripts}
</body>
</html>
"""
    return write_text(run_dir / "report.html", page)
