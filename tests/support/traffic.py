"""Records flowing at a steady rate while the test disrupts the workers, and which came out classified."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from iris_app.connection import broker_addresses
from iris_app.settings import Settings

from .worker import REBALANCE, Worker


class Traffic:
    """Records flowing: a thread producing `rate` iris records a second (keys b"t0", b"t1", ...) while a
    second one reads iris-classified from the start, until `stop_producing()` and `close()`."""

    def __init__(self, url: str, rate: float, samples: list[dict]) -> None:
        self.bootstrap = ",".join(broker_addresses(url))
        self.rate = rate
        self.samples = samples
        self.sent: list[bytes] = []  # keys whose record the broker acknowledged, in order
        self.produced = 0  # records handed to the producer so far: t0 … t<produced - 1>
        self.failed: set[bytes] = set()  # keys whose send failed (never acknowledged)
        self.partition_of: dict[bytes, int] = {}  # key sent -> its partition of `iris`
        self.classified: Counter[bytes] = Counter()  # key -> times seen on iris-classified
        self._positions: dict[TopicPartition, int] = {}
        self._seen = threading.Condition()
        self._producing, self._reading = threading.Event(), threading.Event()
        self._producing.set()
        self._reading.set()
        self._threads = [
            threading.Thread(target=asyncio.run, args=(self._produce(),), daemon=True),
            threading.Thread(target=asyncio.run, args=(self._read(),), daemon=True),
        ]
        self._started = threading.Barrier(2, timeout=60)  # the producer connected, and the caller
        for thread in self._threads:
            thread.start()
        self._started.wait()

    async def _produce(self) -> None:
        # Every in-sync replica has each record, and a retried send is not written twice (idempotence):
        # the records sent are exactly those on `iris` when a leader is lost (test_broker_loss).
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True, request_timeout_ms=120_000
        )
        await producer.start()
        self._started.wait()
        pending: list[tuple[bytes, asyncio.Future]] = []
        try:
            i = 0
            started = time.monotonic()
            while self._producing.is_set():
                key = b"t%d" % i
                value = orjson.dumps(self.samples[i % len(self.samples)])
                self.produced = i + 1  # before the send: a record numbered at or above it comes later
                pending.append((key, await producer.send("iris", value, key=key)))
                i += 1
                pending = self._settle(pending)
                await asyncio.sleep(max(0.0, started + i / self.rate - time.monotonic()))
            await asyncio.wait([future for _, future in pending])
            self._settle(pending)
        finally:
            await producer.stop()

    def _settle(self, pending: list[tuple[bytes, asyncio.Future]]) -> list[tuple[bytes, asyncio.Future]]:
        left = []
        for key, future in pending:
            if not future.done():
                left.append((key, future))
            elif future.exception() is None:
                self.partition_of[key] = future.result().partition
                self.sent.append(key)
            else:
                self.failed.add(key)
        return left

    async def _read(self) -> None:
        while self._reading.is_set():
            try:
                await self._read_classified()
            except KafkaError:  # the broker is out of reach (an outage under test): again
                await asyncio.sleep(0.5)

    async def _read_classified(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            while self._reading.is_set() and "iris-classified" not in await consumer.topics():
                await asyncio.sleep(0.5)  # the workers create it: there is no event to wait on
            # Created by the workers, with the default partition count; read on from where it got to.
            partitions = [TopicPartition("iris-classified", p) for p in range(Settings().partitions)]
            consumer.assign(partitions)
            for tp in partitions:
                consumer.seek(tp, self._positions.get(tp, 0))
            while self._reading.is_set():
                batches = await consumer.getmany(timeout_ms=200)
                with self._seen:
                    for tp, batch in batches.items():
                        self.classified.update(m.key for m in batch)
                        self._positions[tp] = batch[-1].offset + 1
                    self._seen.notify_all()
        finally:
            await consumer.stop()

    def sent_from(self, number: int) -> list[bytes]:
        """The keys sent so far whose number (t<number>) is `number` or above: produced after `produced` read
        `number`."""
        return [key for key in self.sent if int(key[1:]) >= number]

    def wait_count(self, n: int, timeout: float) -> None:
        """Wait until `n` records came out classified (records flow: a test may go on)."""
        with self._seen:
            flowing = self._seen.wait_for(lambda: len(self.classified) >= n, timeout)
            assert flowing, f"records do not flow: {len(self.classified)} classified in {timeout} s, not {n}"

    def missing(self, upto: int | None = None) -> list[bytes]:
        """Keys sent (the first `upto` of them) and not seen classified."""
        with self._seen:
            return [key for key in self.sent[:upto] if key not in self.classified]

    def wait_classified(self, timeout: float) -> list[bytes]:
        """Wait until every record sent so far is classified; the keys still missing at the timeout."""
        upto = len(self.sent)
        with self._seen:
            self._seen.wait_for(lambda: not self.missing(upto), timeout)
        return self.missing(upto)

    def wait_produced(self, number: int, timeout: float) -> list[bytes]:
        """Wait until every record numbered below `number` is classified or its send failed, those sent to a
        partition without a leader too (acknowledged once it has one); the keys still missing at the
        timeout."""
        through = 0  # the records numbered below it are classified or failed

        def settled() -> bool:
            nonlocal through
            while through < number and ((key := b"t%d" % through) in self.classified or key in self.failed):
                through += 1
            return through == number

        with self._seen:
            self._seen.wait_for(settled, timeout)
            return [
                key
                for key in (b"t%d" % i for i in range(through, number))
                if key not in self.classified and key not in self.failed
            ]

    def wait_handed_over(self, number: int, timeout: float) -> list[bytes] | None:
        """Wait until every record numbered below `number` is classified (or its send failed), and on every
        partition of `iris` one record numbered `number` or above is classified too: records flow on every
        partition again. None once so; else the keys numbered below `number` still missing at the timeout
        ([] when only some partition had no later record classified yet)."""
        deadline = time.monotonic() + timeout
        missing = self.wait_produced(number, timeout)
        if missing:
            return missing
        partitions = Settings().partitions
        start = len(self.sent)  # the keys before it are numbered below `number` (sent in about that order)
        while start and int(self.sent[start - 1][1:]) >= number - 1000:
            start -= 1

        def flowing() -> bool:
            later = (key for key in self.sent[start:] if int(key[1:]) >= number and key in self.classified)
            return len({self.partition_of[key] for key in later}) == partitions

        with self._seen:
            return None if self._seen.wait_for(flowing, max(0.0, deadline - time.monotonic())) else []

    def wait_taken_over(self, survivor: Worker, seen: int, timeout: float) -> bool:
        """Wait until `survivor`, the other of two workers gone, classifies every partition's records: its
        rebalance has begun (a line from `seen` on), and records sent after that are classified on every
        partition. Records sent just after the other's SIGTERM can be its own last ones; those sent once
        the survivor's rebalance has begun (the other has left the group) can only be the survivor's."""
        deadline = time.monotonic() + timeout
        if survivor.wait_line(REBALANCE, seen, timeout) is None:
            return False
        return self.wait_handed_over(self.produced, max(0.0, deadline - time.monotonic())) is None

    def duplicated(self) -> int:
        """Classifications so far that repeat a record already classified."""
        with self._seen:
            return sum(self.classified.values()) - len(self.classified)

    def stop_producing(self) -> None:
        self._producing.clear()
        self._threads[0].join(timeout=150)

    def close(self) -> None:
        self.stop_producing()
        self._reading.clear()
        self._threads[1].join(timeout=10)
