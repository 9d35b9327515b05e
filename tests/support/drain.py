"""The app's consumer driven without a broker: its drain loop fed given fetches, its seeks and Fetches."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka.structs import ConsumerRecord
from faust.types import TP

from iris_app.faust_ext.app import App
from iris_app.faust_ext.consumer import Consumer
from iris_app.faust_ext.fetches import Fetch

IRIS_0 = TP("iris", 0)


def records(offsets: Iterable[int]) -> list[ConsumerRecord]:
    """Records of `iris` partition 0 at `offsets`, each an empty JSON object."""
    return [ConsumerRecord("iris", 0, o, 0, 0, None, b"{}", None, 0, 2, ()) for o in offsets]


def consumer() -> Consumer:
    """The app's consumer, not started: no broker is asked anything."""
    return App("consumer-test", broker="kafka://localhost:9").consumer


class Collected:
    """In place of a partition's FetchQueue: the offsets of the Fetches put in it."""

    def __init__(self, delivered: list[int]) -> None:
        self.delivered = delivered

    def add(self, records: list[ConsumerRecord], generation: int, ack) -> list[Fetch]:
        self.delivered += [record.offset for record in records]
        return [Fetch(IRIS_0, records, generation, ack)]


def drain(consumer: Consumer, steps: list, bulk: bool = False) -> list[int]:
    """The offsets the drain loop delivers, given what each fetch returns (offsets of `iris` partition 0) or
    what happens between fetches (a coroutine function run with the consumer); `bulk`: a fetch at a time
    (the classify agent's path), else record by record."""
    delivered: list[int] = []
    fetcher = App("fetcher", broker="kafka://localhost:9").consumer  # a service: its `_stopped` ends the loop

    async def next_records(timeout: float) -> tuple[dict | None, None]:
        while steps:
            step = steps.pop(0)
            if callable(step):
                await step(consumer)
                continue
            return {IRIS_0: records(step)}, None
        fetcher._stopped.set()
        return None, None

    async def deliver(message) -> None:
        delivered.append(message.offset)

    async def nowhere(*args) -> None:
        return None

    consumer._wait_next_records, consumer.callback, consumer._seek = next_records, deliver, nowhere
    queue = Collected(delivered) if bulk else None
    consumer._fetch_queue_of, consumer.highwater = lambda tp: queue, lambda tp: 0
    consumer._wait_as_the_conductor = nowhere
    consumer.app.topics.acks_enabled_for = lambda topic: True
    consumer.flow_active = True
    asyncio.run(consumer._drain_messages(fetcher))
    return delivered


def seek_to_committed(offset: int):
    """A step: the consumer seeks to the committed offsets (Faust's perform_seek), `offset` for iris 0."""

    async def seek(consumer: Consumer) -> None:
        async def committed() -> dict:
            return {IRIS_0: offset}

        consumer.seek_to_committed = committed
        consumer.assignment = lambda: {IRIS_0}  # still assigned when the committed offsets come
        await consumer.perform_seek()

    return seek


def seeks_of(c: Consumer, earliest: int = 0) -> list[int]:
    """The offsets `c` seeks iris 0 to, its first record at `earliest`."""
    seeks = []
    c_seek = c.seek

    async def seek(partition, offset):
        seeks.append(offset)
        await c_seek(partition, offset)

    async def earliest_offsets(*partitions) -> dict:
        return {IRIS_0: earliest}

    c.seek, c.earliest_offsets = seek, earliest_offsets
    return seeks


def fetch(c: Consumer, first: int, last: int) -> Fetch:
    """A Fetch of iris 0's records `first` to `last`, read in `c`'s current assignment."""
    return Fetch(IRIS_0, records(range(first, last + 1)), c.app.consumer_generation_id, c.ack_fetch)


async def rebalance_begins(consumer: Consumer) -> None:
    """A step: a rebalance revokes the partition (its records wait for the next seek) and stops the flow."""
    consumer._positioned.discard(IRIS_0)
    consumer.flow_active = False


async def flow_resumes(consumer: Consumer) -> None:
    """A step: the rebalance's recovery resumes the flow (its seek is a step of its own)."""
    consumer.flow_active = True
