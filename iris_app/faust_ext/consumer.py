"""The app's Kafka consumer: Faust's aiokafka consumer with its own drain loop, seeks and commit rule.

What each piece changes in Faust, and why: the package's docstring (faust_ext/__init__.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping

import aiokafka as aiokafka_client
import faust
from aiokafka.errors import IllegalStateError
from aiokafka.structs import ConsumerRecord
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka
from faust.types import TP, Message
from mode import ServiceT

from .records import read_past_undecodable
from .schema import BytesSchema

# How long a broker may hold a fetch that finds no new records. Kafka answers as soon as records
# arrive, but tansu (tests, the embedded default) holds the fetch the whole time.
FETCH_MAX_WAIT_MS = 100


class ConsumerThread(aiokafka.AIOKafkaConsumerThread):
    async def on_start(self) -> None:
        read_past_undecodable()  # a record aiokafka cannot decode is delivered, marked (records.py)
        await super().on_start()

    def _create_worker_consumer(self, transport: aiokafka.Transport) -> aiokafka_client.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when it starts its fetcher
        return consumer


def read_before(offset: int | None) -> int | None:
    """The last offset read before reading from `offset` (None: no offset, anything may come).

    Seeked to 42: 41 counts as read. Seeked to 0: -1, and a fetch beginning past 0 has jumped."""
    return None if offset is None else offset - 1


def already_delivered(offset: int, last: int | None) -> bool:
    """Whether the record at `offset` has been delivered, `last` being the last offset delivered.

    Read offset 41: a fetch of 40, 41, 42 delivers only 42."""
    return last is not None and offset <= last


def jumped(offset: int, last: int | None) -> bool:
    """Whether a fetch has moved past records not delivered yet, `last` being the last offset delivered.

    Read offset 41, fetch starts at 44: 42 and 43 are unread, so the partition is seeked to 42."""
    return last is not None and offset > last + 1


class Consumer(aiokafka.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._buffer_dropped = asyncio.Event()
        self._raw_queues: dict[TP, RawQueue] = {}
        # Partitions seeked in this assignment to where reading goes on (perform_seek, seek):
        # only their records are delivered.
        self._positioned: set[TP] = set()

    def on_buffer_drop(self, tp: TP) -> None:
        super().on_buffer_drop(tp)
        self._buffer_dropped.set()

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        """Fetch and deliver records until the consumer or `fetcher` stops: a fetch's partitions in turn.

        A partition's records wait for the seek of this assignment; when the assignment
        changes, the rest of the fetch is dropped (the new one reads it again from the
        committed offsets).
        """
        on_message = self.callback
        callbacks = self.app.topics._tp_to_callback  # updated in place, under a lock, with the subscription
        consumer_stopped, fetcher_stopped = self._stopped.is_set, fetcher._stopped.is_set
        acks_enabled_for = self.app.topics.acks_enabled_for
        track_end_offset = self.app.monitor.track_tp_end_offset
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                self.diag.set_flag(CONSUMER_FETCHING)
                await asyncio.sleep(0)  # records can come at once: let others run
                generation = self.app.consumer_generation_id
                for tp, records in (await self._next_records()).items():
                    track_end_offset(tp, self.highwater(tp))
                    deliver, acked_topic = callbacks.get(tp, on_message), acks_enabled_for(tp.topic)
                    into = self._raw_queue_of(tp)
                    if into is not None:
                        await self._wait_as_the_conductor()
                    if self._assignment_changed(generation):
                        break  # the rest of the fetch is dropped, as Faust drops it
                    if acked_topic and not self._seeked(tp):
                        continue  # read again from the committed offset, once seeked there
                    await self._deliver(tp, records, generation, deliver, into, acked_topic)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if not self.transport.app.should_stop:
                raise
        except asyncio.CancelledError:
            if not self.transport.app.should_stop:
                raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _deliver(
        self,
        tp: TP,
        records: list[ConsumerRecord],
        generation: int,
        deliver: Callable[[Message], Awaitable[None]],
        into: RawQueue | None,
        acked_topic: bool,
    ) -> None:
        """Deliver a fetch's records of `tp` after the last one delivered, marking each read once delivered.

        It stops at a jump (seeking back to the first unread record) and when the
        assignment changes; then the next partition's check drops the rest of the fetch.
        """
        read_offset = self._read_offset
        for record in records:
            offset, last = record.offset, read_offset[tp]
            if already_delivered(offset, last):
                continue
            if acked_topic and jumped(offset, last):
                await self._read_again_from(tp, last + 1, fetched=offset)
                return
            if self._commit_due():
                self._n_acked = 0
                await self.commit()
                if self._assignment_changed(generation):
                    return
            message = self._to_message(tp, record)
            if into is not None and not into.queue.full():  # no await: the assignment cannot change
                into.put(message)
            else:
                await deliver(message)
                if self._assignment_changed(generation):
                    return  # of the old generation, the stream drops it: not marked read
            read_offset[tp] = offset

    def _assignment_changed(self, generation: int) -> bool:
        """Whether the flow has stopped or a rebalance has come since `generation` (say, during a wait).

        Fetched 40-49 in generation 3, delivering 40 waits out a rebalance; generation 4
        seeks to the committed offset 38 (read offset 37): 40 is not marked read, 41-49 are dropped."""
        return not (self.flow_active and self.app.consumer_generation_id == generation)

    def _seeked(self, tp: TP) -> bool:
        """Whether `tp` has been seeked in this assignment to where reading goes on.

        Committed offset 10, records 11 and 12 buffered from before the rebalance
        arrive before the seek: dropped; after the seek to 10, 10, 11, 12 are delivered."""
        return tp in self._positioned

    def _commit_due(self) -> bool:
        """Whether `broker_commit_every` records have been acknowledged since the last commit.

        Every 100: offsets 0-99 acknowledged, the commit comes before offset 100 is delivered."""
        return self._commit_every is not None and self._n_acked >= self._commit_every

    async def _read_again_from(self, tp: TP, offset: int, fetched: int) -> None:
        """Seek `tp` back to `offset`, the first record a fetch starting at `fetched` has jumped, or to the
        first record left if retention deleted it (else every fetch would jump again: a loop)."""
        earliest = (await self.earliest_offsets(tp)).get(tp, 0)
        if earliest > offset:
            self.log.error("%s: records %d to %d were deleted unread (retention)", tp, offset, earliest - 1)
        start = max(offset, earliest)
        self.log.warning("%s: fetched offset %d after %d: reading on from %d", tp, fetched, offset - 1, start)
        await self.seek(tp, start)

    def _raw_queue_of(self, tp: TP) -> RawQueue | None:
        """The stream queue a fetch of `tp` may go into straight, record by record; None: it may not.

        Only a partition read by one stream of raw bytes (the `iris` topic: the classify agent)."""
        channels = self.app.topics._tp_index.get(tp)
        if not channels or len(channels) != 1:
            return None
        (channel,) = channels
        if not isinstance(channel.schema, BytesSchema):
            return None
        raw = self._raw_queues.get(tp)
        if raw is None or raw.channel is not channel:
            raw = self._raw_queues[tp] = RawQueue(channel, self, tp)
        return raw

    async def _wait_as_the_conductor(self) -> None:
        """Wait for the flow and the producer buffer, as Faust's conductor waits before each message."""
        await self.app.flow_control.acquire()
        await self.app.producer.buffer.wait_until_ebb()

    async def perform_seek(self) -> None:
        """Seek every partition to its committed offset, the one before it counting as read.

        Committed 42: the fetch starts at 42 and the read offset is 41. Nothing committed and
        `consumer_auto_offset_reset` "earliest": the partition starts at its first record, 0 say,
        as if committed there (read offset -1)."""
        committed = await self.seek_to_committed()
        # A rebalance may have revoked partitions meanwhile (Apache Kafka's are quick): the next
        # assignment seeks them again, and seeking them now would fail the fetcher.
        assigned = self.assignment()
        committed = {tp: offset for tp, offset in committed.items() if tp in assigned}
        # aiokafka seeks only to offsets it has: without this a partition stays where its fetch got to.
        fresh = [tp for tp, offset in committed.items() if offset is None or offset < 0]
        if fresh and self.app.conf.consumer_auto_offset_reset == "earliest":
            try:
                await self._thread.seek_to_beginning(*fresh)
                earliest = await self.earliest_offsets(*fresh)
            except IllegalStateError:  # revoked while seeking: as above
                return
            # Reading starts at the first record, as if committed there: a fetch that begins later (its
            # first records fetched before this seek and dropped) has jumped them, and no commit passes them.
            committed.update({tp: earliest[tp] for tp in fresh if tp in earliest})
        self._read_offset.update({tp: read_before(offset) for tp, offset in committed.items()})
        self._positioned.update(committed)
        self._committed_offset.update({tp: offset for tp, offset in committed.items() if offset is not None})

    def _new_offset(self, tp: TP) -> int | None:
        """The offset to commit: Faust's, held back while the committed offset's own record is unacknowledged.

        Committed 100, acknowledged 101-103: nothing to commit; with 100 acknowledged too: 104."""
        acked, committed = self._acked[tp], self._committed_offset[tp]
        if acked and committed is not None and min(acked) > committed:
            return None
        return super()._new_offset(tp)

    async def seek(self, partition: TP, offset: int) -> None:
        """Seek `partition` to `offset`, the one before it counting as read: seeked to 42, 41 is read."""
        await super().seek(partition, offset)
        self._read_offset[partition] = read_before(offset)
        self._positioned.add(partition)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        """Commit the acknowledged offsets of revoked partitions, then let Faust forget them."""
        self._positioned.difference_update(revoked)
        if revoked and not self.app.should_stop:
            try:
                await self.commit(revoked)
            except Exception as exc:  # the next owner reads them again: at least once
                self.log.warning("Could not commit revoked partitions: %r", exc)
        await super().on_partitions_revoked(revoked)

    async def _next_records(self) -> Mapping[TP, list]:
        """The next fetched records of the partitions whose stream buffers have room.

        While one buffer is full, poll again within 50 ms; while all are full, wait until one drains."""
        if not self.app.client_only and self._buffered_partitions and not self._get_active_partitions():
            self._buffer_dropped.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._buffer_dropped.wait()
        records, active = await self._wait_next_records(0.05 if self._buffered_partitions else 1.0)
        if records is None or self.should_stop:
            return {}
        if not self.flow_active:
            await self.perform_seek()  # back to the committed offsets, as Faust's getmany does
            return {}
        buffered = self._buffered_partitions
        return {tp: rs for tp, rs in records.items() if active is None or tp in active or tp in buffered}


class RawQueue:
    """The one stream queue of a partition of raw bytes, filled as the conductor fills it."""

    def __init__(self, channel: faust.ChannelT, consumer: Consumer, tp: TP) -> None:
        tp = TP(tp.topic, tp.partition)  # a fetch names it by aiokafka's TopicPartition: Faust wants TP
        self.channel = channel
        self.queue = channel.queue
        self._create_event = consumer.app.create_event
        on_topic_buffer_full = consumer.app.sensors.on_topic_buffer_full

        def on_pressure_high() -> None:  # as the conductor's: stop fetching the partition
            on_topic_buffer_full(tp)
            consumer.on_buffer_full(tp)

        def on_pressure_drop() -> None:
            consumer.on_buffer_drop(tp)

        self.on_pressure_high, self.on_pressure_drop = on_pressure_high, on_pressure_drop

    def put(self, message: Message) -> None:
        """Queue `message` as its event, its reference counted, with the pressure callbacks (no await)."""
        message.incref()
        self.queue.put_nowait_enhanced(
            self._create_event(message.key, message.value, message.headers, message),
            on_pressure_high=self.on_pressure_high,
            on_pressure_drop=self.on_pressure_drop,
        )
