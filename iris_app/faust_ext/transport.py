"""Faust's aiokafka transport, made for batches and for failures: the consumer and the producer.

What it changes, and why (written for faust-streaming 0.15.3 and aiokafka 0.14.0):

- The drain loop (Faust's `Consumer._drain_messages` with its `getmany` inlined):
  Faust races each delivery against "flow suspended" with four new tasks and reads
  the high-water mark and the callback (under a lock) per message; here those are
  once per partition and fetch, and partitions take turns as in Faust's round
  robin. A delivery that waited out a rebalance (the conductor waits while the
  flow is stopped) no longer marks its offset read: that stale mark made the new
  assignment drop every record up to it as "already read", and the partition
  stalled for good (issue 9). A jump in offsets is read again from where it
  started, where Faust counts the missing records as handled (a "gap", which only
  compaction or transactions make, and the app's inputs have neither); and the
  read offset always means the last offset delivered (after a seek Faust recorded
  the next one to read, so a fetch that began one record late lost that record).
  A partition's records are delivered only once it is seeked to its committed offset
  in this assignment: Faust resumes the flow for table recovery before that seek, and
  a fetch meanwhile (records buffered from before the rebalance) went through
  unchecked, out of order, which made a window's count skip the records it jumped.
  Errors of the loop are logged, as Faust logs them. A partition read by one
  stream of raw bytes (`iris`) skips the conductor's per-message coroutines
  (flow control, the producer buffer's wait, decoding: once per fetch instead),
  and its records go straight into the stream's queue while it has room.
- The fetch: no idling while a stream buffer is full (aiokafka fetches nothing
  from a broker while a paused partition's records sit unread), and a broker may
  hold an empty fetch 100 ms, not Faust's hard-coded 1.5 s.
- Commits: never past the committed offset's own record while it is unacknowledged
  (Faust lets a run of acknowledged offsets start one past it: faust-streaming #606).
  Revoked partitions: their acknowledged offsets are committed before Faust
  forgets them, so the next owner does not read them again.
- The producer: `send_batches` sends a batch of records as one record batch per
  partition, as large as a request may be (`producer_max_request_size`), not
  `producer_max_batch_size` (16 KiB): aiokafka sends one batch per partition and
  request, so a classify batch in 16 KiB pieces took several round trips to the
  broker, one after another. Every topic sent to stays in aiokafka's metadata
  requests.
- `App`: the Faust app hooks that install this transport.
Everything else (gaps, the bookkeeping of acknowledged offsets, rebalances) is Faust's own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Iterable, Mapping

import aiokafka as aiokafka_client
import faust
from aiokafka.producer.message_accumulator import BatchBuilder
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka
from faust.types import TP
from mode import ServiceT

from ..models import Output
from .schema import BytesSchema

# How long a broker may hold a fetch that finds no new records. Faust asks for 1.5 s:
# Kafka answers as soon as records arrive, but tansu (tests, the embedded default) holds
# the fetch the whole time, so records waited about half a second (p50 at 2,000/s).
FETCH_MAX_WAIT_MS = 100


class ConsumerThread(aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: aiokafka.Transport) -> aiokafka_client.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when it starts its fetcher
        return consumer


def read_before(offset: int | None) -> int | None:
    """The last offset read before reading from `offset` (None: nothing yet, or no offset)."""
    return offset - 1 if offset is not None and offset > 0 else None


class Consumer(aiokafka.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._buffer_dropped = asyncio.Event()
        self._raw_queues: dict[TP, RawQueue] = {}
        # Partitions of this assignment seeked to where reading goes on (perform_seek, seek): only
        # their records are delivered. Until then a fetch may hold records from anywhere (below).
        self._positioned: set[TP] = set()

    def on_buffer_drop(self, tp: TP) -> None:
        super().on_buffer_drop(tp)
        self._buffer_dropped.set()

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        """Faust's loop (Consumer._drain_messages, with its getmany inlined), less its per-message costs.

        Faust races each delivery against "flow suspended" with four new tasks (mode's
        `wait_first`), reads the partition's high-water mark for each message and looks
        up its callback under a lock; here those are once per partition and fetch, and
        a fetch's partitions are delivered one after the other (Faust interleaves topics
        record by record). When the flow stops (a rebalance) or the generation changes,
        the rest of the fetch is dropped, as Faust drops it: the new assignment reads it
        again from the committed offsets.
        """
        on_message = self.callback
        # Rebuilt, under the lock, when the subscription changes: meanwhile on_message waits for it.
        callbacks = self.app.topics._tp_to_callback
        consumer_stopped, fetcher_stopped = self._stopped.is_set, fetcher._stopped.is_set
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        to_message, track_end_offset = self._to_message, self.app.monitor.track_tp_end_offset
        create_event = self.app.create_event
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                self.diag.set_flag(CONSUMER_FETCHING)
                await asyncio.sleep(0)  # records can come at once: let others run
                generation = self.app.consumer_generation_id
                for tp, records in (await self._next_records()).items():
                    track_end_offset(tp, self.highwater(tp))
                    deliver = callbacks.get(tp, on_message)
                    acked_topic = acks_enabled_for(tp.topic)
                    into = await self._raw_queue(tp)
                    if not self._same_assignment(generation):
                        # A rebalance came while this fetch waited (for the fetch itself, flow control
                        # or the producer buffer): a record delivered now would carry the new generation
                        # though it was fetched before the seek. The rest is dropped, as Faust drops it.
                        break
                    if acked_topic and tp not in self._positioned:
                        # Faust resumes the flow for table recovery before it seeks the new assignment's
                        # partitions to their committed offsets: a fetch meanwhile may hold records from
                        # where the partition was read before (a record buffered since, say), and with
                        # no read offset to compare they would be delivered, out of order and past
                        # records not read yet. They are read again from the committed offset.
                        continue
                    for record in records:
                        offset, last = record.offset, read_offset[tp]
                        if last is not None and offset <= last:
                            continue  # already delivered: Faust drops it too
                        if last is not None and offset > last + 1 and acked_topic:
                            # Faust takes a jump for a gap (compaction, transaction markers) and
                            # counts the missing offsets as handled; the app's inputs have neither,
                            # so the fetch position moved past records nobody here has read (a
                            # fetch raced the seek of a rebalance): read them, rather than commit past.
                            self.log.warning(
                                "%s: fetched offset %d after %d: reading on from %d",
                                tp,
                                offset,
                                last,
                                last + 1,
                            )
                            await self.seek(tp, last + 1)
                            break
                        if self._commit_every is not None and self._n_acked >= self._commit_every:
                            self._n_acked = 0
                            await self.commit()
                            if not self._same_assignment(generation):
                                break  # a rebalance came while committing: the rest is dropped
                        message = to_message(tp, record)
                        if into is not None and not into.queue.full():  # no await: nothing changed
                            message.incref()
                            into.queue.put_nowait_enhanced(
                                create_event(message.key, message.value, message.headers, message),
                                on_pressure_high=into.on_pressure_high,
                                on_pressure_drop=into.on_pressure_drop,
                            )
                        else:
                            await deliver(message)
                            # The delivery waits while the flow is stopped, so a rebalance may have
                            # come and gone meanwhile: the new assignment has set this partition's read
                            # offset to its committed offset, and the record, of the old generation, is
                            # dropped by the stream. Marking it read would drop every record up to it;
                            # the rest of the fetch is dropped too, as Faust drops it.
                            if not self._same_assignment(generation):
                                break
                        read_offset[tp] = offset
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

    async def _raw_queue(self, tp: TP) -> RawQueue | None:
        """Where a fetch of `tp` may go straight, record by record, past Faust's conductor; None: it may not.

        Faust's conductor (`TopicConductor._build_handler`) takes each message through
        flow control, the producer buffer's wait, and decoding, each a coroutine call;
        for a partition read by one stream of raw bytes (the `iris` topic: the classify
        agent) that is most of the cost of delivery. Here those waits are once per fetch,
        and each record becomes its event as the conductor would make it (its reference
        counted, put in the stream's queue with the same pressure callbacks). A full
        queue, or any other partition, takes the conductor's own path.
        """
        channels = self.app.topics._tp_index.get(tp)
        if not channels or len(channels) != 1:
            return None
        (channel,) = channels
        if not isinstance(channel.schema, BytesSchema):
            return None
        await self.app.flow_control.acquire()
        await self.app.producer.buffer.wait_until_ebb()
        raw = self._raw_queues.get(tp)
        if raw is None or raw.channel is not channel:
            raw = self._raw_queues[tp] = RawQueue(channel, self, tp)
        return raw

    async def perform_seek(self) -> None:
        """Seek every partition to its committed offset (Faust's), recording the offset before it as read.

        Faust records the committed offset itself, the next one to read, as read,
        where the loop records the last one delivered: a fetch that raced the seek
        and began one record later then looked like no jump, and that record was
        never read. Here the read offset always means the last offset delivered.
        """
        committed = await self.seek_to_committed()
        # A partition nothing was committed for stays where the fetch had got to (aiokafka seeks only
        # to offsets it has): records fetched and dropped by a rebalance would never be read again, and
        # Faust, knowing no committed offset, would commit the first run acknowledged after them.
        # Start it where the consumer starts any partition without a committed offset.
        fresh = [tp for tp, offset in committed.items() if offset is None or offset < 0]
        if fresh and self.app.conf.consumer_auto_offset_reset == "earliest":
            await self._thread.seek_to_beginning(*fresh)
        self._read_offset.update({tp: read_before(offset) for tp, offset in committed.items()})
        self._positioned.update(committed)
        self._committed_offset.update({tp: offset for tp, offset in committed.items() if offset is not None})

    def _new_offset(self, tp: TP) -> int | None:
        """The offset to commit: Faust's, held back while the committed offset's own record is unacknowledged.

        Faust commits the first run of acknowledged offsets if it starts at most one past
        the committed offset (faust-streaming #606): a record at the committed offset still
        being handled was committed past, and lost if the worker stopped before it was done.
        The app's inputs have no gaps to step over, so the run must start at the committed offset.
        """
        acked, committed = self._acked[tp], self._committed_offset[tp]
        if acked and committed is not None and min(acked) > committed:
            return None
        return super()._new_offset(tp)

    async def seek(self, partition: TP, offset: int) -> None:
        await super().seek(partition, offset)
        self._read_offset[partition] = read_before(offset)
        self._positioned.add(partition)

    def _same_assignment(self, generation: int) -> bool:
        """True while the flow runs and no rebalance has happened since `generation`."""
        return self.flow_active and self.app.consumer_generation_id == generation

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        """Commit the acknowledged offsets of revoked partitions before Faust forgets them.

        Faust drops its records of revoked partitions (acks, gaps, read offsets) and
        only then stops the flow; what was acknowledged but not yet committed would be
        read again by the next owner.
        """
        self._positioned.difference_update(revoked)
        if revoked and not self.app.should_stop:
            try:
                await self.commit(revoked)
            except Exception as exc:  # the next owner reads them again: at least once
                self.log.warning("Could not commit revoked partitions: %r", exc)
        await super().on_partitions_revoked(revoked)

    async def _next_records(self) -> Mapping[TP, list]:
        """The next fetched records of the partitions whose stream buffers have room.

        A full buffer takes its partition out of the fetch until it drains. aiokafka
        sends a broker no fetch while it holds unread records of any partition the
        broker leads, so until that buffer drains the other partitions get nothing
        new either: poll again soon rather than wait out a second. When every buffer
        is full, Faust would sleep a second; wait until one drains instead.
        """
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
    """The one stream queue of a partition of raw bytes, with the conductor's pressure callbacks for it."""

    def __init__(self, channel: faust.ChannelT, consumer: Consumer, tp: TP) -> None:
        tp = TP(tp.topic, tp.partition)  # a fetch names it by aiokafka's TopicPartition: Faust wants TP
        self.channel = channel
        self.queue = channel.queue
        on_topic_buffer_full = consumer.app.sensors.on_topic_buffer_full

        def on_pressure_high() -> None:  # as the conductor's: stop fetching the partition
            on_topic_buffer_full(tp)
            consumer.on_buffer_full(tp)

        def on_pressure_drop() -> None:
            consumer.on_buffer_drop(tp)

        self.on_pressure_high, self.on_pressure_drop = on_pressure_high, on_pressure_drop


class TopicTrackingProducer(aiokafka_client.AIOKafkaProducer):
    """aiokafka's producer, asking for the metadata of every topic it has sent to.

    aiokafka's client first fetches all topics' metadata, then asks only for the topics
    added to it, and `send` adds a topic only when its metadata is missing. So a topic
    known from the first fetch drops out at the next update, and its queued batches
    wait for a leader in a tight loop of metadata requests: a worker stuck at 70 % CPU.
    """

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self._tracked: set[str] = set()

    async def send(self, topic: str, *args, **kwargs) -> asyncio.Future:
        self._track(topic)
        return await super().send(topic, *args, **kwargs)

    async def send_batch(self, batch, topic: str, *, partition: int) -> asyncio.Future:
        self._track(topic)
        return await super().send_batch(batch, topic, partition=partition)

    def _track(self, topic: str) -> None:
        if topic not in self._tracked:
            self._tracked.add(topic)
            self.client.add_topic(topic)


class Producer(aiokafka.Producer):
    _producer_type = TopicTrackingProducer

    async def send_batches(self, topic: str, records: Iterable[Output]) -> list[asyncio.Future]:
        """Queue records as record batches, one or more per partition; the futures say when delivered.

        Partitioned as Faust's sends are (by default aiokafka's murmur2 of the key, as Kafka's Java clients).
        """
        records = list(records)
        if not records:  # most batches have no dead letter: no metadata lookup for them
            return []
        producer = self._ensure_producer()
        partitions = sorted(await producer.partitions_for(topic))
        by_partition: defaultdict[int, list[Output]] = defaultdict(list)
        for record in records:
            by_partition[self.partitioner(record.key, partitions, partitions)].append(record)
        delivered = []
        for partition, batch_records in by_partition.items():
            batch = self._new_batch(producer)
            for key, value, timestamp, headers in batch_records:
                while (
                    batch.append(key=key, value=value, timestamp=timestamp, headers=headers) is None
                ):  # full
                    delivered.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = self._new_batch(producer)
            delivered.append(await producer.send_batch(batch, topic, partition=partition))
        return delivered

    def _new_batch(self, producer: aiokafka_client.AIOKafkaProducer) -> BatchBuilder:
        """An empty record batch as `producer.create_batch()` makes, up to a request's size (see above)."""
        return BatchBuilder(self.max_request_size, producer._message_accumulator._compression_type)


class Transport(aiokafka.Transport):
    Consumer = Consumer
    Producer = Producer


class App(faust.App):
    """A Faust app whose consumer and producer are this module's (Faust picks them by URL scheme)."""

    def _new_transport(self) -> Transport:
        return Transport(self.conf.broker_consumer, self)

    def _new_producer_transport(self) -> Transport:
        return Transport(self.conf.broker_producer, self)
