"""record_metric's values, and their Prometheus text exposition (read back by
prometheus_client's own parser)."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from otto import redact
from otto.testing.metrics import (
    MetricRecorder,
    make_metric,
    prometheus_name,
    prometheus_text,
    write_prometheus,
)
from otto.testing.records import Metric, TestRecord


def record(nodeid: str, *metrics: Metric, iteration: int = 1) -> TestRecord:
    return TestRecord(
        nodeid, nodeid, "passed", float(iteration), float(iteration) + 1, iteration,
        metrics=list(metrics),
    )  # fmt: skip


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge"
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest.mark.parametrize(
    ("value", "error", "said"),
    [
        (math.nan, ValueError, "finite"),
        (math.inf, ValueError, "finite"),
        (-math.inf, ValueError, "finite"),
        ("12", TypeError, "str '12'"),
        (None, TypeError, "NoneType"),
        (True, TypeError, "bool"),
        ([1], TypeError, "list"),
    ],
)
def test_a_value_that_is_not_a_finite_number_is_refused_naming_the_metric(
    value: object, error: type[Exception], said: str
) -> None:
    with pytest.raises(error, match=r"record_metric\('boot time'\)") as caught:
        make_metric("boot time", value)
    assert said in str(caught.value)


def test_numbers_of_every_kind_are_kept() -> None:
    assert make_metric("a", 3).value == 3
    assert make_metric("a", 2.5).value == 2.5
    assert make_metric("a", Fraction(1, 4)).value == 0.25
    with pytest.raises(TypeError, match="Decimal"):  # not a numbers.Real
        make_metric("a", Decimal("1.5"))


def test_name_unit_host_and_direction_are_checked() -> None:
    with pytest.raises(TypeError, match="non-empty string"):
        make_metric("", 1)
    with pytest.raises(TypeError, match=r"record_metric\('a'\): unit must be a string"):
        make_metric("a", 1, unit=5)
    with pytest.raises(ValueError, match="better must be 'lower' or 'higher'"):
        make_metric("a", 1, better="up")
    kept = make_metric("rate", 1, unit="MB/s", host="board1", better="higher")
    assert kept == Metric("rate", 1, "MB/s", "board1", "higher")


def test_the_recorder_appends_and_raises_before_recording() -> None:
    found: list[Metric] = []
    recorder = MetricRecorder(found)
    recorder("latency", 12.5, "ms", better="lower")
    with pytest.raises(ValueError, match="latency2"):
        recorder("latency2", math.nan)
    assert found == [Metric("latency", 12.5, "ms")]


def test_names_and_labels_are_redacted() -> None:
    secret = "s3cr3t-metric-label"
    redact.register(secret)
    try:
        metric = make_metric(f"m {secret}", 1, unit=secret, host=f"h-{secret}")
    finally:
        redact.forget(secret)
    assert secret not in repr(metric)


def test_an_error_never_shows_a_secret() -> None:
    secret = "s3cr3t-metric-error"
    redact.register(secret)
    try:
        with pytest.raises(TypeError) as caught:
            make_metric(f"m {secret}", f"value {secret}")
    finally:
        redact.forget(secret)
    assert secret not in str(caught.value) and "record_metric('m ***')" in str(caught.value)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("boot time", "boot_time"),
        ("net.rx-bytes/s", "net_rx_bytes_s"),
        ("9lives", "_9lives"),
        ("a:b", "a_b"),
        ("déjà", "d_j_"),
        ("ok_name", "ok_name"),
    ],
)
def test_prometheus_names_are_sanitized(name: str, expected: str) -> None:
    assert prometheus_name(name) == expected


def test_exposition_parses_with_hostile_labels_and_keeps_the_last_iteration() -> None:
    nodeid = 'tests/test_x.py::test_y[a"b\\c\nd]'
    records = [
        record(nodeid, Metric("boot time", 10, "s", 'host "1"\\x'), iteration=1),
        record(nodeid, Metric("boot time", 12.5, "s", 'host "1"\\x'), iteration=2),
        record("t.py::other", Metric("boot-time", 3), Metric("9 rate", 1e21, better="higher")),
    ]
    text = prometheus_text(records)
    assert text.count("# TYPE boot_time gauge") == 1  # one family, its samples together
    found = samples(text)
    assert found == {
        ("boot_time", (("host", 'host "1"\\x'), ("test", nodeid), ("unit", "s"))): 12.5,
        ("boot_time", (("test", "t.py::other"),)): 3.0,
        ("_9_rate", (("test", "t.py::other"),)): 1e21,
    }


def test_no_metrics_is_an_empty_file(tmp_path: Path) -> None:
    path = write_prometheus(tmp_path / "sub" / "m.prom", [record("t.py::a")])
    assert path.read_text() == ""
    assert list(text_string_to_metric_families("")) == []
