"""pipeline.py: `ahead`, the classify agent's stage scoring the next batch while this one is forwarded,
and `Delivery`, which acknowledges input only once everything it caused is delivered."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from iris_app.pipeline import Delivery, ahead


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


class Event:
    """An input event as the agents see it: read in the app's current assignment, acknowledged or not."""

    def __init__(self, app: SimpleNamespace) -> None:
        self.app, self.message, self.acked = app, SimpleNamespace(generation_id=1), False

    def ack(self) -> None:
        self.acked = True


def events(n: int) -> list[Event]:
    app = SimpleNamespace(flow_control=SimpleNamespace(is_active=lambda: True), consumer_generation_id=1)
    return [Event(app) for _ in range(n)]


def test_input_is_acknowledged_once_every_output_it_caused_is_delivered():
    async def run() -> None:
        sent = [asyncio.get_running_loop().create_future() for _ in range(2)]
        delivery = Delivery(events(3))
        delivery.add(*sent)
        settling = asyncio.ensure_future(delivery.settle())
        sent[0].set_result(None)
        await asyncio.sleep(0)  # settle runs up to its wait: one output is still on its way
        assert not any(event.acked for event in delivery.inputs)
        sent[1].set_result(None)
        acknowledged = delivery.inputs
        await settling
        assert all(event.acked for event in acknowledged)

    asyncio.run(run())


def test_a_failed_send_fails_the_agent_and_leaves_its_input_unacknowledged():
    """The agent's failure stops the worker (CrashingSupervisor): the input is read again, never skipped."""

    async def run() -> list[Event]:
        failed = asyncio.get_running_loop().create_future()
        failed.set_exception(ConnectionError("broker gone"))
        delivery = Delivery(events(3))
        delivery.add(failed)
        with pytest.raises(ConnectionError, match="broker gone"):
            await delivery.settle()
        return delivery.inputs

    assert not any(event.acked for event in asyncio.run(run()))
