"""Whether a worker is healthy, checked from outside its consumer: progress per partition, and the broker.

The watchdog asks the broker itself, with a Kafka client of its own, for the
committed and end offsets of every input partition assigned to this worker. A
partition with records left to read whose committed offset has not moved for
IRIS_STALL_SECONDS is stalled: /health answers 503 naming it, a metric says so,
and the worker seeks it back to its committed offset (it reads the rest again).
A broker that does not answer within a few seconds makes /health answer 503 too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from . import metrics
from .connection import Connection

log = logging.getLogger(__name__)

BROKER_TIMEOUT = 5.0  # seconds the broker may take to answer the watchdog


@dataclass
class PartitionState:
    committed: int
    end: int
    since: float  # when the committed offset last moved (or the partition was first seen)

    @property
    def lag(self) -> int:
        return max(0, self.end - self.committed)


class Progress:
    """Committed and end offsets per partition over time, and which partitions are stuck."""

    def __init__(self, stall_seconds: float) -> None:
        self.stall_seconds = stall_seconds
        self.partitions: dict[TopicPartition, PartitionState] = {}

    def observe(
        self, committed: Mapping[TopicPartition, int], ends: Mapping[TopicPartition, int], now: float
    ) -> None:
        """Record one look at the partitions assigned now; partitions no longer assigned are forgotten."""
        states = {}
        for tp, end in ends.items():
            offset = committed.get(tp, 0)
            state = self.partitions.get(tp)
            if state is None or state.committed != offset or state.end <= state.committed:
                # Progress, or nothing was waiting: its clock starts again.
                state = PartitionState(offset, end, now)
            state.end = end
            states[tp] = state
        self.partitions = states

    def restart(self, now: float) -> None:
        """Start every partition's clock again (after a rebalance, table recovery or a heal)."""
        for state in self.partitions.values():
            state.since = now

    def stalled(self, now: float) -> list[TopicPartition]:
        return sorted(
            tp
            for tp, state in self.partitions.items()
            if state.lag > 0 and now - state.since >= self.stall_seconds
        )


class BrokerUnreachable(RuntimeError):
    """The broker did not answer the watchdog. The message is the error in full (for the log); `cause` is
    its kind alone, for /health, as the error's own text may hold the broker's address."""

    def __init__(self, error: BaseException) -> None:
        self.cause = type(error).__name__
        super().__init__(f"{self.cause}: {error}" if str(error) else self.cause)


class OffsetsProbe:
    """A Kafka client of the watchdog's own: committed offsets of the app's group, end offsets of partitions.

    It joins no group (it only reads the group's committed offsets), so it never
    takes part in a rebalance.
    """

    def __init__(self, kafka: Connection, group_id: str) -> None:
        self.kafka = kafka
        self.group_id = group_id
        self._consumer: AIOKafkaConsumer | None = None  # made on first use: aiokafka wants a running loop
        self._admin: AIOKafkaAdminClient | None = None

    async def offsets(
        self, partitions: Iterable[TopicPartition]
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        """(committed, end) offsets of `partitions`; BrokerUnreachable when the broker does not answer."""
        tps = list(partitions)
        try:
            async with asyncio.timeout(BROKER_TIMEOUT * 2):
                if self._consumer is None:
                    consumer = AIOKafkaConsumer(
                        **self.kafka.client_options(),
                        group_id=self.group_id,
                        enable_auto_commit=False,
                        request_timeout_ms=int(BROKER_TIMEOUT * 1000),
                    )
                    await consumer.start()
                    self._consumer = consumer
                await self._consumer.topics()  # a metadata request: the broker answers, or not
                if not tps:
                    return {}, {}
                ends = await self._consumer.end_offsets(tps)
                committed = {tp: await self._consumer.committed(tp) or 0 for tp in tps}
        except Exception as e:  # aiokafka's errors, timeouts, refused connections: all mean the same here
            raise BrokerUnreachable(e) from None
        return committed, ends

    async def under_replicated(self, topics: Iterable[str]) -> list[str]:
        """Partitions of `topics` with fewer in-sync replicas than replicas, or no leader: a broker of the
        cluster is down or behind. BrokerUnreachable when the broker does not answer."""
        try:
            async with asyncio.timeout(BROKER_TIMEOUT * 2):
                if self._admin is None:
                    admin = AIOKafkaAdminClient(
                        **self.kafka.client_options(), request_timeout_ms=int(BROKER_TIMEOUT * 1000)
                    )
                    await admin.start()
                    self._admin = admin
                described = await self._admin.describe_topics(sorted(topics))
        except Exception as e:  # as in offsets()
            raise BrokerUnreachable(e) from None
        return sorted(
            f"{topic['topic']}[{partition['partition']}]"
            for topic in described
            for partition in topic["partitions"]
            if partition["leader"] < 0 or len(partition["isr"]) < len(partition["replicas"])
        )

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._admin is not None:
            await self._admin.close()


class Watchdog:
    """Every few seconds: how each assigned input partition moves (asked of the broker); stalls healed.

    `reason` is None while the worker is healthy, else what /health says.
    """

    def __init__(
        self,
        app: faust.App,
        topics: Iterable[str],
        stall_seconds: float,
        kafka: Connection,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.clock = clock
        self.topics = set(topics)
        self.progress = Progress(stall_seconds)
        self.probe = OffsetsProbe(kafka, app.conf.id)
        self.broker_error: str | None = None  # the kind of error (BrokerUnreachable.cause) while out of reach
        self.degraded: list[str] = []  # input partitions under-replicated: /health says so, still 200
        self.stalled: list[TopicPartition] = []
        self._healed_at: dict[TopicPartition, float] = {}

    async def check(self) -> None:
        now = self.clock()
        # The broker is asked even while partitions move: a broker back after an outage is said at once,
        # not after the rebalance it often brings.
        settling = self.app.rebalancing or self.app.tables.recovery.in_recovery
        assigned = (
            set() if settling else {tp for tp in self.app.consumer.assignment() if tp.topic in self.topics}
        )
        try:
            committed, ends = await self.probe.offsets(
                TopicPartition(tp.topic, tp.partition) for tp in assigned
            )
        except BrokerUnreachable as e:
            if self.broker_error is None:
                log.warning("The broker does not answer: %s", e)
            self.broker_error = e.cause
            return
        if self.broker_error is not None:
            log.info("The broker answers again")
        self.broker_error = None
        await self._look_at_replicas()
        if settling:
            self.progress.restart(now)  # partitions wait for the rebalance: not a stall
            self.stalled = []  # and what stalled before it is read again from its committed offset
            metrics.partition_stalled.clear()
            return
        self.progress.observe(committed, ends, now)
        self.stalled = self.progress.stalled(now)
        metrics.consumer_lag.clear()
        metrics.partition_stalled.clear()
        for tp, state in self.progress.partitions.items():
            metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(state.lag)
            metrics.partition_stalled.labels(tp.topic, str(tp.partition)).set(tp in self.stalled)
        for tp in self.stalled:
            if now - self._healed_at.get(tp, 0.0) >= self.progress.stall_seconds:
                self._healed_at[tp] = now
                state = self.progress.partitions[tp]
                log.warning(
                    "%s: no progress for %.0f s with %d records to read: seeking back to committed offset %d",
                    self.describe(tp),
                    now - state.since,
                    state.lag,
                    state.committed,
                )
                await self.app.consumer.seek(tp, state.committed)

    async def _look_at_replicas(self) -> None:
        """Note (and log once) input partitions missing a replica: the cluster is degraded, not the worker."""
        try:
            degraded = await self.probe.under_replicated(self.topics)
        except BrokerUnreachable:
            return  # said by the next look at the offsets
        if degraded and degraded != self.degraded:
            log.warning("A broker is down or behind: %d partition(s) under-replicated", len(degraded))
        elif self.degraded and not degraded:
            log.info("Every partition has all its replicas again")
        self.degraded = degraded
        metrics.under_replicated.set(len(degraded))

    @property
    def cluster_note(self) -> str | None:
        """What /health adds while the cluster is degraded (the worker itself still classifies)."""
        if not self.degraded:
            return None
        return f"a broker is down or behind: {len(self.degraded)} partition(s) under-replicated"

    def describe(self, tp: TopicPartition) -> str:
        state = self.progress.partitions[tp]
        return f"{tp.topic}[{tp.partition}] (committed {state.committed}, end {state.end})"

    @property
    def reason(self) -> str | None:
        if self.broker_error is not None:
            return f"cannot reach the broker: {self.broker_error}"
        if self.stalled:
            return "stalled: " + ", ".join(map(self.describe, self.stalled))
        return None
