"""``--shard I/N``: a deterministic share of the collected tests, for one of N CI jobs.

Every process that collects the same tests with the same options computes the
same split (each pytest-xdist worker collects on its own): it depends only on
the tests' node ids and, with ``--shard-durations RUN_DIR`` (else
``--baseline RUN_DIR`` when that option is there), on the durations recorded
in that run folder (its ``durations.json``, written at the end of every run,
else its ``records*.jsonl``).

- With durations: longest processing time first, each test onto the share with
  the least time so far (ties: the lower share); a test the folder does not
  know counts the median of those it does; ties between tests are broken by
  node id.
- Without: the tests sorted by node id, cut into N runs of consecutive tests
  (sizes differ by at most one; a module's tests stay together, so its fixtures
  are set up in few shares).

The shares over I = 1..N hold every test exactly once. The tests left out are
deselected (pytest reports them so); the order of those kept is pytest's.
"""

from __future__ import annotations

import argparse
import heapq
import json
import logging
import operator
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pytest

from otto import redact
from otto.testing.records import TestRecord, read_records

__all__ = [
    "DURATIONS_FILE",
    "Shard",
    "assign",
    "check_shard_options",
    "mean_durations",
    "parse_run_dir",
    "parse_shard",
    "read_durations",
    "shares",
    "take_shard",
    "write_durations",
]

log = logging.getLogger("otto.testing")

_NODEID = operator.attrgetter("nodeid")

Shard = tuple[int, int]
"""``(I, N)``: share I (from 1) of N."""


def parse_shard(text: str) -> Shard:
    """``--shard I/N`` as ``(I, N)``; an ``argparse`` type (its error is a usage error)."""
    index, slash, count = text.partition("/")
    if not slash:
        raise argparse.ArgumentTypeError(f"expected I/N, such as 1/4, not {text!r}")
    try:
        i, n = int(index), int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected I/N with whole numbers, such as 1/4, not {text!r}"
        ) from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"N must be at least 1, got {text!r}")
    if not 1 <= i <= n:
        raise argparse.ArgumentTypeError(f"I must be between 1 and N ({n}), got {text!r}")
    return i, n


def parse_run_dir(text: str) -> str:
    """``--shard-durations RUN_DIR``, checked as it is parsed (its error is a usage error)."""
    folder = Path(text)
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is not a run folder")
    if not any(folder.glob("records*.jsonl")):
        raise argparse.ArgumentTypeError(
            f"{text} holds no records*.jsonl (not an otto run folder?)"
        )
    return text


DURATIONS_FILE = "durations.json"
"""Each test's mean duration, written beside the records at the end of a run: reading it
is a single JSON document, not one record per test run."""


def mean_durations(records: Iterable[TestRecord]) -> dict[str, float]:
    """Each test's mean duration per run (seconds), over the test records (not collection
    errors, crashes or never-run tests)."""
    totals: dict[str, list[float]] = {}
    for record in records:
        if record.kind == "test":
            spent = totals.setdefault(record.nodeid, [0.0, 0.0])
            spent[0] += max(record.duration, 0.0)
            spent[1] += 1
    return {nodeid: total / runs for nodeid, (total, runs) in totals.items()}


def write_durations(run_dir: Path, records: Iterable[TestRecord]) -> None:
    """Write ``durations.json`` in a run folder (what ``--shard-durations`` reads first); a
    failure is logged, never the run's."""
    try:
        text = json.dumps(mean_durations(records), sort_keys=True, separators=(",", ":"))
        # Node ids as the records hold them: redacted (a parameter may be a password).
        (run_dir / DURATIONS_FILE).write_text(redact.redact(text) + "\n", encoding="utf-8")
    except OSError as exc:
        log.warning("writing %s failed: %s", run_dir / DURATIONS_FILE, exc)


def _summary(run_dir: Path, files: Sequence[Path]) -> dict[str, float] | None:
    """``durations.json`` when it is there, newer than every record, and well formed."""
    path = run_dir / DURATIONS_FILE
    try:
        if path.stat().st_mtime < max(f.stat().st_mtime for f in files):
            return None
        # Every number as a float: one look at the set of value types checks them all.
        data = json.loads(path.read_text(encoding="utf-8"), parse_int=float)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not set(map(type, data.values())) <= {float}:
        return None
    return data


def read_durations(run_dir: Path, option: str = "--shard-durations") -> dict[str, float]:
    """Each test's mean duration per run (seconds) in a run folder: its ``durations.json``,
    else its ``records*.jsonl``.

    Raises:
        pytest.UsageError: the folder does not exist or holds no records.
    """
    if not run_dir.is_dir():
        raise pytest.UsageError(f"{option}: {run_dir} is not a run folder")
    files = sorted(run_dir.glob("records*.jsonl"))
    if not files:
        raise pytest.UsageError(
            f"{option}: {run_dir} holds no records*.jsonl (not an otto run folder?)"
        )
    summary = _summary(run_dir, files)
    if summary is not None:
        return summary
    try:
        return mean_durations(read_records(files))
    except (OSError, ValueError, TypeError) as exc:
        raise pytest.UsageError(f"{option}: cannot read the records in {run_dir}: {exc}") from None


def assign(
    nodeids: Sequence[str], count: int, durations: Mapping[str, float] | None = None
) -> list[int]:
    """The share (0 to ``count`` - 1) of each of ``nodeids``, in their order.

    The result depends on the node ids as a set (not their order) and on
    ``durations``: every process computes the same split. Repeated node ids
    are kept apart in the order given.
    """
    order = sorted(range(len(nodeids)), key=nodeids.__getitem__)  # stable: repeats in order
    bins = [0] * len(nodeids)
    if count <= 1 or not nodeids:
        return bins
    if not durations:
        total = len(order)
        for position, k in enumerate(order):
            bins[k] = position * count // total
        return bins
    known = [durations[n] for n in nodeids if n in durations]
    fill = statistics.median(known) if known else statistics.median(durations.values())
    weights = [durations.get(n, fill) for n in nodeids]
    # Longest first; the sort is stable (reverse too): equal durations keep nodeid order.
    order.sort(key=weights.__getitem__, reverse=True)
    heap = [(0.0, b) for b in range(count)]
    for k in order:
        load, b = heap[0]
        bins[k] = b
        heapq.heapreplace(heap, (load + weights[k], b))
    return bins


def shares(
    nodeids: Sequence[str], count: int, durations: Mapping[str, float] | None = None
) -> list[list[str]]:
    """The node ids of each share, from share 1 to ``count``."""
    out: list[list[str]] = [[] for _ in range(count)]
    for nodeid, b in zip(nodeids, assign(nodeids, count, durations), strict=True):
        out[b].append(nodeid)
    return out


def _durations_folder(config: pytest.Config) -> tuple[Path, str] | None:
    opt = config.option
    for dest, option in (
        ("otto_shard_durations", "--shard-durations"),
        ("otto_baseline", "--baseline"),
    ):
        given = getattr(opt, dest, None)
        if given:
            return Path(config.invocation_params.dir, given), option
    return None


def check_shard_options(config: pytest.Config) -> None:
    """Refuse ``--shard-durations`` without ``--shard`` (when pytest is configured).

    Raises:
        pytest.UsageError: saying so.
    """
    opt = config.option
    if getattr(opt, "otto_shard_durations", None) and getattr(opt, "otto_shard", None) is None:
        raise pytest.UsageError("--shard-durations is only used with --shard I/N")


def take_shard(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep in ``items`` the share ``--shard I/N`` asks for; the others are deselected.

    Raises:
        pytest.UsageError: the durations' folder cannot be read.
    """
    shard: Shard | None = getattr(config.option, "otto_shard", None)
    if shard is None:
        return
    index, count = shard
    folder = _durations_folder(config)
    durations = read_durations(*folder) if folder is not None else None
    if count == 1:
        return
    bins = assign(list(map(_NODEID, items)), count, durations)
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item, b in zip(items, bins, strict=True):
        (kept if b == index - 1 else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
