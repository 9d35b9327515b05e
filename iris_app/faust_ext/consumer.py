"""The app's Kafka consumer: Faust's aiokafka consumer with its own drain loop, seeks (commits: commits.py).

What each piece changes in Faust, and why: the package's docstring (faust_ext/__init__.py).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from operator import attrgetter

import aiokafka as aiokafka_client
from aiokafka.errors import IllegalStateError
from aiokafka.structs import ConsumerRecord
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka
from faust.types import TP, EventT, Message
from mode import ServiceT

from .commits import Commits
from .fetches import Fetch, FetchQueue
from .offsets import already_delivered, contiguous, jumped, read_before
from .records import read_past_undecodable
from .schema import BytesSchema

# How long a broker may hold a fetch that finds no new records. Kafka answers as soon as records
# arrive, but tansu (tests, the embedded default) holds the fetch the whole time.
FETCH_MAX_WAIT_MS = 100

_offset = attrgetter("offset")


class ConsumerThread(aiokafka.AIOKafkaConsumerThread):
    async def on_start(self) -> None:
        read_past_undecodable()  # a record aiokafka cannot decode is delivered, marked (records.py)
        await super().on_start()

    def _create_worker_consumer(self, transport: aiokafka.Transport) -> aiokafka_client.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when it starts its fetcher
        return consumer


class Consumer(Commits, aiokafka.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._buffer_dropped = asyncio.Event()
        self._fetch_queues: dict[TP, FetchQueue] = {}
        # Partitions seeked in this assignment to where reading goes on (perform_seek, seek):
        # only their records are delivered.
        self._positioned: set[TP] = set()
        self._rewinds: dict[TP, int] = {}  # partition -> where to read again from (rewind)
        # The read offset each partition's last seek or rewind left: while it is still the read offset
        # (nothing delivered since), a fetch that jumps it holds records fetched before the move (on the
        # consumer's thread), not records missing.
        self._moved_to: dict[TP, int | None] = {}

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
                if self._rewinds:
                    await self._seek_rewinds()
                generation = self.app.consumer_generation_id
                for tp, records in (await self._next_records()).items():
                    track_end_offset(tp, self.highwater(tp))
                    deliver, acked_topic = callbacks.get(tp, on_message), acks_enabled_for(tp.topic)
                    into = self._fetch_queue_of(tp)
                    if into is not None:
                        await self._wait_as_the_conductor()
                    if self._assignment_changed(generation):
                        break  # the rest of the fetch is dropped, as Faust drops it
                    if acked_topic and tp not in self._positioned:
                        # Not seeked yet in this assignment (records buffered from before the rebalance,
                        # 11 and 12 say, committed 10): read again from the committed offset, once seeked.
                        continue
                    if into is not None:
                        await self._deliver_fetch(tp, records, generation, into)
                    else:
                        await self._deliver(tp, records, generation, deliver, acked_topic)
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
            if not await self._commit_if_due(generation):
                return
            await deliver(self._to_message(tp, record))
            if self._assignment_changed(generation):
                return  # of the old generation, the stream drops it: not marked read
            read_offset[tp] = offset

    async def _deliver_fetch(
        self, tp: TP, records: list[ConsumerRecord], generation: int, into: FetchQueue
    ) -> None:
        """Deliver a fetch's records of `tp` after the last one delivered as one Fetch, up to a jump (then
        seeking back to the first unread record), and mark them read.

        Read offset 41, fetch 40-49: 42-49 delivered. Fetch 42-45, 48, 49: 42-45, then a seek to 46."""
        last = self._read_offset[tp]
        start = 0 if last is None else bisect.bisect_right(records, last, key=_offset)
        fresh = records[start:]
        if not fresh:
            return
        if jumped(fresh[0].offset, last):
            await self._read_again_from(tp, last + 1, fetched=fresh[0].offset)
            return
        if not await self._commit_if_due(generation):
            return
        n = contiguous(fresh)
        self._unacked_fetches.update(into.add(fresh[:n], generation, self.ack_fetch))
        self._read_offset[tp] = fresh[n - 1].offset
        if n < len(fresh):
            await self._read_again_from(tp, fresh[n - 1].offset + 1, fetched=fresh[n].offset)

    def _assignment_changed(self, generation: int) -> bool:
        """Whether the flow has stopped or a rebalance has come since `generation` (say, during a wait).

        Fetched 40-49 in generation 3, delivering 40 waits out a rebalance; generation 4
        seeks to the committed offset 38 (read offset 37): 40 is not marked read, 41-49 are dropped."""
        return not (self.flow_active and self.app.consumer_generation_id == generation)

    async def _read_again_from(self, tp: TP, offset: int, fetched: int) -> None:
        """Seek `tp` back to `offset`, the first record a fetch starting at `fetched` has jumped, or to the
        first record left if retention deleted it (else every fetch would jump again: a loop).

        Right after a seek (a rebalance's, to the committed offset) the jump is of records fetched
        before it, and is logged at info; any other is a warning."""
        earliest = (await self.earliest_offsets(tp)).get(tp, 0)
        if earliest > offset:
            self.log.error("%s: records %d to %d were deleted unread (retention)", tp, offset, earliest - 1)
        start = max(offset, earliest)
        level = logging.INFO if self._moved_to.get(tp) == offset - 1 else logging.WARNING
        jump = "%s: fetched offset %d after %d: reading on from %d"
        self.log.log(level, jump, tp, fetched, offset - 1, start)
        await self.seek(tp, start)

    def rewind(self, cleared: Iterable[Fetch | EventT]) -> None:
        """Read each partition again from its first record in `cleared`, delivered to an agent's queue and
        taken out of it unhandled (faust_ext.flow): else the partition reads on after them, and they come
        again only after the next rebalance, behind later records.

        Delivered up to 242, 239-242 cleared: the read offset goes back to 238, so a fetch of 243 has
        jumped them; the drain loop seeks to 239 (_seek_rewinds) for a partition that fetches nothing more."""
        for item in cleared:
            if type(item) is Fetch:
                self._unacked_fetches.discard(item)  # never to be acknowledged
                tp, offset = item.tp, item.first
            elif isinstance(item, EventT):
                tp, offset = item.message.tp, item.message.offset
            else:
                continue
            if tp not in self._positioned:
                continue  # revoked: the next assignment seeks it
            last = self._read_offset[tp]
            if last is not None and last >= offset:
                self._read_offset[tp] = read_before(offset)
                self._rewinds[tp] = offset
                self._moved_to[tp] = read_before(offset)

    async def _seek_rewinds(self) -> None:
        """Seek each partition rewound back to its first record taken out of the queues, unless a seek has
        moved it since (a jump's, or perform_seek's to the committed offset, which comes before)."""
        rewinds, self._rewinds = self._rewinds, {}
        for tp, offset in rewinds.items():
            if tp in self._positioned and self._read_offset[tp] == read_before(offset):
                self.log.info(
                    "%s: records from %d taken out of the agent's queue unhandled: read again", tp, offset
                )
                try:
                    await self.seek(tp, offset)
                except IllegalStateError:  # revoked meanwhile: the next assignment seeks it
                    return

    def _fetch_queue_of(self, tp: TP) -> FetchQueue | None:
        """The stream queue `tp`'s fetches go into whole, as Fetches; None: its records go one by one.

        Only a partition read by one stream of raw bytes (the `iris` topic: the classify agent)."""
        channels = self.app.topics._tp_index.get(tp)
        if not channels or len(channels) != 1:
            return None
        (channel,) = channels
        if not isinstance(channel.schema, BytesSchema):
            return None
        queue = self._fetch_queues.get(tp)
        if queue is None or queue.channel is not channel:
            queue = self._fetch_queues[tp] = FetchQueue(channel, self, tp)
        return queue

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
        read = {tp: read_before(offset) for tp, offset in committed.items()}
        self._read_offset.update(read)
        self._positioned.update(committed)
        self._moved_to.update(read)
        self._committed_offset.update({tp: offset for tp, offset in committed.items() if offset is not None})

    async def seek(self, partition: TP, offset: int) -> None:
        """Seek `partition` to `offset`, the one before it counting as read: seeked to 42, 41 is read."""
        await super().seek(partition, offset)
        self._read_offset[partition] = read_before(offset)
        self._positioned.add(partition)
        self._moved_to[partition] = read_before(offset)

    async def _next_records(self) -> Mapping[TP, list]:
        """The next fetched records of the partitions whose stream buffers have room.

        While one buffer is full, poll again within 50 ms; while all are full, wait until one drains. While
        the flow is stopped, none: unlike Faust's getmany, no seek to the committed offsets either."""
        if not self.app.client_only and self._buffered_partitions and not self._get_active_partitions():
            self._buffer_dropped.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._buffer_dropped.wait()
        records, active = await self._wait_next_records(0.05 if self._buffered_partitions else 1.0)
        if records is None or self.should_stop or not self.flow_active:
            return {}  # the flow stopped for a rebalance: its recovery seeks to the committed offsets
        buffered = self._buffered_partitions
        return {tp: rs for tp, rs in records.items() if active is None or tp in active or tp in buffered}
