"""A plain aiokafka client for the tests: produce records, read a topic until a condition holds, and say
where records are on the pipeline's topics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from iris_app.connection import broker_addresses
from iris_app.settings import Settings


@dataclass
class Message:
    key: bytes | None
    value: bytes | None
    timestamp: int
    partition: int
    headers: tuple
    offset: int

    def json(self) -> dict:
        return orjson.loads(self.value)


class Kafka:
    """A plain aiokafka client: produce records, and read a topic until a condition holds."""

    def __init__(self, url: str) -> None:
        self.bootstrap = ",".join(broker_addresses(url))

    def produce(self, topic: str, records: list[tuple[bytes | None, bytes, int | None]]) -> None:
        """Send (key, value, timestamp_ms) records in order and wait until all are acknowledged."""

        async def run() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
            await producer.start()
            try:
                futures = [
                    await producer.send(topic, value, key=key, timestamp_ms=ts) for key, value, ts in records
                ]
                await asyncio.gather(*futures)
            finally:
                await producer.stop()

        asyncio.run(run())

    def read_until(
        self, topic: str, done: Callable[[list[Message]], bool], timeout: float = 60.0
    ) -> list[Message]:
        """Every message of `topic` from the start, read until `done(messages)` is true."""

        async def run() -> list[Message]:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
            )
            await consumer.start()
            try:
                # The worker creates the topic, with the default partition count, before it is ready.
                consumer.assign([TopicPartition(topic, p) for p in range(Settings().partitions)])
                await consumer.seek_to_beginning()
                messages: list[Message] = []
                async with asyncio.timeout(timeout):
                    while not done(messages):
                        batches = await consumer.getmany(timeout_ms=500)
                        for batch in batches.values():
                            messages += [
                                Message(m.key, m.value, m.timestamp, m.partition, m.headers, m.offset)
                                for m in batch
                            ]
                return messages
            finally:
                await consumer.stop()

        try:
            return asyncio.run(run())
        except TimeoutError:
            raise AssertionError(f"{topic}: condition not met within {timeout} s") from None

    def read_all(self, topic: str, quiet: float = 3.0) -> list[Message]:
        """Every message of `topic`, read until nothing new comes for `quiet` seconds from the first look
        (the consumer started and seeked: that may take seconds on a loaded machine). tansu's end offsets
        are not to be trusted (docs/SPEC.md)."""
        last: list = [None, 0]

        def settled(messages: list[Message]) -> bool:
            if last[0] is None or len(messages) != last[1]:
                last[:] = time.monotonic(), len(messages)
            return time.monotonic() - last[0] > quiet

        return self.read_until(topic, settled, timeout=600)


def whereabouts(url: str, keys: list[bytes]) -> str:
    """Where records are on the input, output and dead-letter topics: lost, or missed by a reader?"""
    wanted, kafka, lines = set(keys), Kafka(url), []
    for topic in ("iris", "iris-classified", "iris-dlq"):
        places: dict[bytes, list[str]] = {key: [] for key in keys}
        for m in kafka.read_all(topic):
            if m.key in wanted:
                source = dict(m.headers).get("iris-source-offset")
                places[m.key].append(
                    f"{m.partition}@{m.offset}" + (f" from @{source.decode()}" if source else "")
                )
        lines.append(
            f"{topic}: " + "; ".join(f"{key.decode()} {', '.join(at) or '-'}" for key, at in places.items())
        )
    return "\n".join(lines)
