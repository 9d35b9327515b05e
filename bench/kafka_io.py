"""A benchmark's records on the broker: the pipeline's topics created, records produced (at a pace or all at
once), and a topic read from the start with each message's arrival time."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from processes import Processes

from iris_app.samples import read_samples

REPO = Path(__file__).resolve().parent.parent
PARTITIONS = 4


def records(n: int, seed: int = 7) -> list[tuple[bytes, bytes]]:
    rng = random.Random(seed)
    samples = read_samples(REPO / "data" / "iris.csv")
    return [(b"%d" % i, orjson.dumps(rng.choice(samples))) for i in range(n)]


TOPICS = ["iris", "iris-classified", "iris-dlq", "iris-classified-window-counts"]


async def create_topics(bootstrap: str) -> None:
    """The pipeline's topics, before any implementation starts (the reference creates none)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1) for topic in TOPICS])
    finally:
        await admin.close()


async def produce(bootstrap: str, batch: list[tuple[bytes, bytes]], rate: float | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    try:
        start = time.monotonic()
        for i, (key, value) in enumerate(batch):
            if rate is not None:
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await producer.send("iris", value, key=key, timestamp_ms=int(time.time() * 1000))
        await producer.flush()
    finally:
        await producer.stop()


class Reader:
    """Reads a topic from the start, noting when each message arrived."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=5,
        )
        self.topic = topic
        self.messages: list = []
        self.arrivals: list[float] = []
        self.keys: set[bytes] = set()  # distinct keys read: a record classified twice counts once
        self.firsts: list[float] = []  # when each distinct key was first read

    async def __aenter__(self) -> Reader:
        await self.consumer.start()
        self.consumer.assign([TopicPartition(self.topic, p) for p in range(PARTITIONS)])
        await self.consumer.seek_to_beginning()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.consumer.stop()

    async def read_until(self, done, timeout: float, procs: Processes) -> bool:
        """Read until done(messages); False after `timeout` seconds, or when a process has exited."""
        deadline = time.monotonic() + timeout
        while not done(self.messages):
            if time.monotonic() > deadline or procs.exited():
                return False
            batches = await self.consumer.getmany(timeout_ms=200)
            now = time.monotonic()
            for batch in batches.values():
                self.messages += batch
                self.arrivals += [now] * len(batch)
                for message in batch:
                    if message.key not in self.keys:
                        self.keys.add(message.key)
                        self.firsts.append(now)
        return True


def latest_counts_sum(messages) -> int:
    latest = {m.key: orjson.loads(m.value)["count"] for m in messages}
    return sum(latest.values())
