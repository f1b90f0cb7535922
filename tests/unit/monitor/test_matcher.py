"""The bounded matcher: a real worker process, lines answered in runs, a stuck line named."""

from __future__ import annotations

import asyncio
import re

import pytest

from otto.monitor.matcher import BoundedMatcher

WAIT = 30.0
HOSTILE = "a" * 33 + "b"  # minutes of backtracking for ^(a+)+$ in Python's re


async def test_hits_are_indexes_into_the_batch() -> None:
    matcher = BoundedMatcher(re.compile(r"ERROR \d+"))
    try:
        lines = [f"{'ERROR' if i % 7 == 0 else 'info'} {i} ünïcode \udcff" for i in range(20_000)]
        async with asyncio.timeout(WAIT):
            found = await matcher.search(lines)
        assert found.hits == list(range(0, 20_000, 7))
        assert found.skipped == []
        # Empty lines and a batch of one empty line are lines too.
        async with asyncio.timeout(WAIT):
            assert (await matcher.search(["", "ERROR 1", ""])).hits == [1]
            assert (await matcher.search([""])).hits == []
            assert (await matcher.search([])).hits == []
        assert matcher.restarts == 0
    finally:
        await matcher.close()


async def test_the_stuck_line_is_named_after_many_quick_ones() -> None:
    # The worker answers in runs: the quick lines before the stuck one must all have
    # been answered by the time the limit runs out, or the wrong line is named.
    matcher = BoundedMatcher(re.compile(r"^(a+)+$"), limit=0.5)
    lines = ["aaa"] * 50_000 + [HOSTILE] + ["x", "aa"]
    try:
        async with asyncio.timeout(WAIT):
            found = await matcher.search(lines)
        assert found.skipped == [50_000]
        assert found.hits == [*range(50_000), 50_002]
        assert matcher.restarts == 1
    finally:
        await matcher.close()


async def test_a_line_holding_a_newline_is_refused() -> None:
    matcher = BoundedMatcher(re.compile("x"))
    try:
        with pytest.raises(ValueError, match="holds a newline"):
            await matcher.search(["a", "b\nx"])
    finally:
        await matcher.close()
