"""The PostgreSQL store's turns on its connection: one call at a time, first come first served."""

from __future__ import annotations

import asyncio

import pytest

from otto.reservations.postgres import _Turns


async def test_callers_get_the_turn_in_the_order_they_asked() -> None:
    turns = _Turns()
    await turns.take()  # free: taken at once
    assert turns.busy
    order: list[int] = []

    async def caller(n: int) -> None:
        await turns.take()
        order.append(n)
        turns.give()

    tasks = [asyncio.create_task(caller(n)) for n in range(5)]
    await asyncio.sleep(0)  # one step: each has asked and waits
    assert len(turns.waiting) == 5
    assert order == []
    turns.give()
    async with asyncio.timeout(10):
        await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    assert not turns.busy and not turns.waiting


async def test_a_turn_given_back_is_not_taken_out_of_order() -> None:
    """A caller arriving after a hand-over, before the next in line has run, waits its turn."""
    turns = _Turns()
    await turns.take()
    order: list[str] = []

    async def caller(name: str) -> None:
        await turns.take()
        order.append(name)
        turns.give()

    first = asyncio.create_task(caller("first"))
    await asyncio.sleep(0)  # one step: it has asked and waits
    assert len(turns.waiting) == 1
    turns.give()  # handed to "first", which has not run yet
    assert turns.busy
    late = asyncio.create_task(caller("late"))
    async with asyncio.timeout(10):
        await asyncio.gather(first, late)
    assert order == ["first", "late"]
    assert not turns.busy


async def test_a_waiter_cancelled_in_line_leaves_it() -> None:
    turns = _Turns()
    await turns.take()
    got: list[str] = []

    async def caller(name: str) -> None:
        await turns.take()
        got.append(name)
        turns.give()

    gone = asyncio.create_task(caller("gone"))
    kept = asyncio.create_task(caller("kept"))
    await asyncio.sleep(0)  # one step: both have asked and wait
    assert len(turns.waiting) == 2
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert len(turns.waiting) == 1
    turns.give()
    async with asyncio.timeout(10):
        await kept
    assert got == ["kept"]
    assert not turns.busy and not turns.waiting


async def test_a_waiter_cancelled_as_it_is_handed_the_turn_passes_it_on() -> None:
    """Its turn was given but it never ran: the next caller gets it, nobody hangs."""
    turns = _Turns()
    await turns.take()
    got: list[str] = []

    async def caller(name: str) -> None:
        await turns.take()
        got.append(name)
        turns.give()

    handed = asyncio.create_task(caller("handed"))
    nxt = asyncio.create_task(caller("next"))
    await asyncio.sleep(0)  # one step: both have asked and wait
    assert len(turns.waiting) == 2
    turns.give()  # "handed" now holds the turn...
    handed.cancel()  # ...and is cancelled before it could run
    with pytest.raises(asyncio.CancelledError):
        await handed
    async with asyncio.timeout(10):
        await nxt
    assert got == ["next"]
    assert not turns.busy and not turns.waiting
