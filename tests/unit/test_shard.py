"""``--shard I/N``: parsing, the split (every test exactly once, the same in every process),
balancing by recorded durations, and reading them from a run folder."""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otto.testing.records import TestRecord, write_record
from otto.testing.shard import (
    DURATIONS_FILE,
    assign,
    parse_run_dir,
    parse_shard,
    read_durations,
    shares,
    write_durations,
)

NODEIDS = st.lists(
    st.text(alphabet="abcdefgh/:.[]_-0123", min_size=1, max_size=12), max_size=60, unique=True
)
DURATIONS = st.dictionaries(
    st.text(alphabet="abcdefgh/:.[]_-0123", min_size=1, max_size=12),
    st.floats(min_value=0.0, max_value=1e4, allow_nan=False),
    max_size=60,
)


# --- parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "shard"), [("1/1", (1, 1)), ("2/7", (2, 7)), ("7/7", (7, 7))])
def test_parse_shard(text: str, shard: tuple[int, int]) -> None:
    assert parse_shard(text) == shard


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("3", "expected I/N, such as 1/4, not '3'"),
        ("a/b", "expected I/N with whole numbers"),
        ("1/0", "N must be at least 1"),
        ("0/3", "I must be between 1 and N (3), got '0/3'"),
        ("4/3", "I must be between 1 and N (3), got '4/3'"),
        ("-1/3", "I must be between 1 and N (3)"),
    ],
)
def test_bad_shards_are_refused(text: str, said: str) -> None:
    with pytest.raises(
        argparse.ArgumentTypeError, match=said.replace("(", r"\(").replace(")", r"\)")
    ):
        parse_shard(text)


def test_parse_run_dir(tmp_path: Path) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="is not a run folder"):
        parse_run_dir(str(tmp_path / "nowhere"))
    with pytest.raises(argparse.ArgumentTypeError, match=r"holds no records\*\.jsonl"):
        parse_run_dir(str(tmp_path))
    (tmp_path / "records-gw0.jsonl").write_text("")
    assert parse_run_dir(str(tmp_path)) == str(tmp_path)


# --- the split ------------------------------------------------------------------------------


def check_partition(nodeids: list[str], parts: list[list[str]]) -> None:
    flat = [n for part in parts for n in part]
    assert sorted(flat) == sorted(nodeids)  # every test, exactly once


@given(nodeids=NODEIDS, count=st.integers(1, 7), seed=st.integers(0, 2**32))
def test_shares_hold_every_test_once_and_do_not_depend_on_the_order(
    nodeids: list[str], count: int, seed: int
) -> None:
    parts = shares(nodeids, count)
    assert len(parts) == count
    check_partition(nodeids, parts)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    shuffled = list(nodeids)
    random.Random(seed).shuffle(shuffled)
    assert [sorted(p) for p in shares(shuffled, count)] == [sorted(p) for p in parts]
    assert shares(nodeids, count) == parts  # the same on a repeated run


@given(
    nodeids=NODEIDS,
    durations=DURATIONS,
    count=st.integers(1, 7),
    seed=st.integers(0, 2**32),
)
def test_balanced_shares_hold_every_test_once_and_do_not_depend_on_the_order(
    nodeids: list[str], durations: dict[str, float], count: int, seed: int
) -> None:
    # Some of the tests known, some not, some known tests no longer there.
    known = {**durations, **{n: durations.get(n, 1.5) for n in nodeids[::2]}}
    parts = shares(nodeids, count, known)
    check_partition(nodeids, parts)
    shuffled = list(nodeids)
    random.Random(seed).shuffle(shuffled)
    assert [sorted(p) for p in shares(shuffled, count, known)] == [sorted(p) for p in parts]
    # Greedy onto the least loaded share: none exceeds the mean by more than one test.
    if not nodeids or not known:
        return
    fill = statistics.median([known[n] for n in nodeids if n in known] or known.values())
    weights = {n: known.get(n, fill) for n in nodeids}
    loads = [sum(weights[n] for n in part) for part in parts]
    assert max(loads) <= sum(loads) / count + max(weights.values()) + 1e-6


def test_longest_first_onto_the_least_loaded_share() -> None:
    durations = {"a": 7.0, "b": 5.0, "c": 4.0, "d": 3.0, "e": 1.0}
    assert shares(list(durations), 2, durations) == [["a", "d"], ["b", "c", "e"]]


def test_unknown_tests_count_the_median() -> None:
    durations = {"a": 10.0, "b": 1.0, "c": 2.0}
    # new1 and new2 count 2.0 each: a (10) alone; b, c and the new ones (7) together.
    assert shares(["a", "b", "c", "new1", "new2"], 2, durations) == [
        ["a"],
        ["b", "c", "new1", "new2"],
    ]


def test_ties_are_broken_by_nodeid() -> None:
    durations = dict.fromkeys(["d", "c", "b", "a"], 1.0)
    assert shares(["d", "c", "b", "a"], 2, durations) == [["c", "a"], ["d", "b"]]


def test_no_durations_cuts_the_sorted_tests_into_runs() -> None:
    nodeids = [f"t.py::test_{i}" for i in range(10)]
    random.Random(1).shuffle(nodeids)
    parts = shares(nodeids, 3)
    ordered = sorted(nodeids)
    assert [sorted(p) for p in parts] == [ordered[0:4], ordered[4:7], ordered[7:10]]


def test_repeated_nodeids_are_kept() -> None:
    assert sorted(assign(["a", "a", "b"], 2)) == [0, 0, 1]


# --- durations from a run folder ------------------------------------------------------------


def record(nodeid: str, seconds: float, **kw: object) -> TestRecord:
    return TestRecord(
        nodeid=nodeid, name=nodeid, outcome="passed", start=100.0, stop=100.0 + seconds, **kw
    )  # type: ignore[arg-type]


def test_read_durations(tmp_path: Path) -> None:
    write_record(tmp_path / "records-gw0.jsonl", record("t::a", 2.0, iteration=1))
    write_record(tmp_path / "records-gw1.jsonl", record("t::a", 4.0, iteration=2))
    write_record(tmp_path / "records-gw1.jsonl", record("t::b", 0.5))
    write_record(tmp_path / "records.jsonl", record("t.py", 9.0, kind="collection"))
    assert read_durations(tmp_path) == {"t::a": 3.0, "t::b": 0.5}


def test_read_durations_says_which_folder(tmp_path: Path) -> None:
    with pytest.raises(pytest.UsageError, match=r"--baseline: .* is not a run folder"):
        read_durations(tmp_path / "nowhere", "--baseline")
    with pytest.raises(pytest.UsageError, match=r"--shard-durations: .* holds no records"):
        read_durations(tmp_path)
    (tmp_path / "records.jsonl").write_text("{not json\n")
    with pytest.raises(pytest.UsageError, match=r"cannot read the records in"):
        read_durations(tmp_path)


def test_durations_json_is_read_first_while_it_is_fresh(tmp_path: Path) -> None:
    records = [record("t::a", 2.0), record("t::a", 4.0, iteration=2), record("t::b", 0.5)]
    for each in records:
        write_record(tmp_path / "records.jsonl", each)
    write_durations(tmp_path, records)
    summary = tmp_path / DURATIONS_FILE
    assert json.loads(summary.read_text()) == {"t::a": 3.0, "t::b": 0.5}
    summary.write_text(json.dumps({"t::a": 7.0}))  # what is read is the summary
    assert read_durations(tmp_path) == {"t::a": 7.0}
    # Records written after it (a rerun of the report): the records win.
    os.utime(summary, (1.0, 1.0))
    assert read_durations(tmp_path) == {"t::a": 3.0, "t::b": 0.5}
    for bad in ("{not json", "[1, 2]", '{"t::a": "slow"}', '{"t::a": true}'):
        summary.write_text(bad)
        assert read_durations(tmp_path) == {"t::a": 3.0, "t::b": 0.5}, bad


def test_durations_json_is_redacted(tmp_path: Path) -> None:
    from otto import redact

    secret = "Sh4rd-s3cret-pw"
    redact.register(secret)
    write_durations(tmp_path, [record(f"t::test_login[{secret}]", 1.0)])
    assert secret not in (tmp_path / DURATIONS_FILE).read_text()
