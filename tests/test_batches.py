"""`ahead`: the classify agent's pipeline stage, scoring the next batch while this one is forwarded."""

from __future__ import annotations

import asyncio

import pytest

from iris_app.pipeline import ahead


async def numbers(n: int, fail_after: bool = False):
    for i in range(n):
        yield i
    if fail_after:
        raise RuntimeError("the stream broke")


def test_the_next_item_is_started_while_the_caller_handles_this_one_and_results_keep_their_order():
    async def run() -> list[int]:
        started = {i: asyncio.Event() for i in range(3)}

        async def start(i: int) -> int:
            started[i].set()
            return i * 10

        results = []
        async for result in ahead(numbers(3), start):
            following = result // 10 + 1
            if following in started:  # while this result is handled, the next item is started
                await asyncio.wait_for(started[following].wait(), timeout=5)
            results.append(result)
        return results

    assert asyncio.run(run()) == [0, 10, 20]


def test_a_failing_source_fails_the_caller_after_the_items_before_it():
    async def run() -> list[int]:
        async def start(i: int) -> int:
            return i

        results = []
        with pytest.raises(RuntimeError, match="the stream broke"):
            async for result in ahead(numbers(2, fail_after=True), start):
                results.append(result)
        return results

    assert asyncio.run(run()) == [0, 1]


def test_a_failing_start_fails_the_caller_at_its_item():
    async def run() -> list[int]:
        async def start(i: int) -> int:
            if i == 1:
                raise ValueError("cannot score item 1")
            return i

        results = []
        with pytest.raises(ValueError, match="cannot score item 1"):
            async for result in ahead(numbers(3), start):
                results.append(result)
        return results

    assert asyncio.run(run()) == [0]
