"""A partition's fetched records delivered to its agent as one `Fetch`, and acknowledged as one range.

Faust hands an agent one event per record: a Message, an Event, a queue put, a stream
step and an acknowledgement each, which together cost more than scoring the record.
A partition read by one stream of raw bytes (`iris`, the classify agent) gets instead
the records of each fetch as they come from aiokafka, in offset order and without
gaps, in one `Fetch`; the agent acknowledges it once everything it caused is
delivered, as one range of offsets (offsets.AckedRanges). Records that follow a
Fetch still in the queue join it, so that at a trickle of records (a few per fetch)
the queue holds a Fetch per partition, not one per fetch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiokafka.structs import ConsumerRecord
from faust.types import TP

# Records a Fetch holds at most: a larger fetch (up to max_partition_fetch_bytes, a MiB) is delivered
# as several, so that a batch, and what a worker holds in memory, stays bounded.
FETCH_RECORDS = 1000
# Fetches the agent's queue holds before a partition is paused: enough to keep the agent busy.
FETCHES_QUEUED = 8


class Fetch:
    """A partition's records of one fetch, in offset order without gaps: delivered and acknowledged as one."""

    __slots__ = ("tp", "records", "generation", "taken", "_ack")

    def __init__(
        self, tp: TP, records: list[ConsumerRecord], generation: int, ack: Callable[[Fetch], None]
    ) -> None:
        self.tp, self.records, self.generation, self._ack = tp, records, generation, ack
        self.taken = False  # out of the agent's queue (batches.batches): in a batch filling, or being handled

    @property
    def first(self) -> int:
        return self.records[0].offset

    @property
    def last(self) -> int:
        return self.records[-1].offset

    def ack(self) -> None:
        """Mark every record handled, so that offsets up to the last may be committed (Consumer.ack_fetch)."""
        self._ack(self)

    def __repr__(self) -> str:
        return f"<Fetch {self.tp.topic}[{self.tp.partition}] {self.first}-{self.last} gen {self.generation}>"


class FetchQueue:
    """The one stream queue of a partition of raw bytes, holding Fetches; pauses the partition when full."""

    def __init__(self, channel: Any, consumer: Any, tp: TP) -> None:
        self.tp = TP(tp.topic, tp.partition)  # a fetch names it by aiokafka's TopicPartition: Faust wants TP
        self.channel = channel
        self.queue = channel.queue
        self._last: Fetch | None = None  # the last Fetch queued: records that follow it join it until taken
        # The queue counts Fetches, not records: its pressure marks (mode's FlowControlQueue, 80 % and 40 %
        # of the stream buffer's size in events) pause the partition at FETCHES_QUEUED fetches instead,
        # and let it go on when half of them are taken.
        self.queue.pressure_high_size, self.queue.pressure_drop_size = FETCHES_QUEUED, FETCHES_QUEUED // 2
        on_topic_buffer_full = consumer.app.sensors.on_topic_buffer_full

        def on_pressure_high() -> None:  # as the conductor's: stop fetching the partition
            on_topic_buffer_full(self.tp)
            consumer.on_buffer_full(self.tp)

        def on_pressure_drop() -> None:
            consumer.on_buffer_drop(self.tp)

        self.on_pressure_high, self.on_pressure_drop = on_pressure_high, on_pressure_drop

    def add(
        self, records: list[ConsumerRecord], generation: int, ack: Callable[[Fetch], None]
    ) -> list[Fetch]:
        """Queue the partition's next records (in offset order, without gaps, following the last queued),
        FETCH_RECORDS to a Fetch at most; return the new Fetches.

        Records that follow the last Fetch queued join it while it is in the queue: the agent takes
        them all at once, and a trickle of small fetches does not reach the queue's pressure mark,
        which counts Fetches (FETCHES_QUEUED), pausing the partition. A Fetch the flow control took
        out of the queue is never joined: its partition's read offset goes back before it
        (Consumer.rewind), so the next records do not follow it.
        """
        last = self._last
        if (
            last is not None
            and not last.taken
            and last.generation == generation
            and last.last + 1 == records[0].offset
        ):
            room = FETCH_RECORDS - len(last.records)
            last.records += records[:room]
            records = records[room:]
        new = [
            Fetch(self.tp, records[i : i + FETCH_RECORDS], generation, ack)
            for i in range(0, len(records), FETCH_RECORDS)
        ]
        for fetch in new:
            self.put(fetch)
        if new:
            self._last = new[-1]
        return new

    def put(self, fetch: Fetch) -> None:
        """Queue `fetch` (no await: the queue takes it whatever its size); pause the partition at the mark."""
        self.queue.put_nowait_enhanced(
            fetch, on_pressure_high=self.on_pressure_high, on_pressure_drop=self.on_pressure_drop
        )
