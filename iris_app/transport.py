"""Faust's aiokafka transport, made for batches: the hot path's consumer and producer.

Per record, Faust's consumer races each delivery against "flow suspended" with
four new tasks (mode's `wait_first`), and its producer goes through aiokafka's
`send` (partitioner, a future, a log call): at thousands of records per second
both cost more than scoring. Here a fetched message is delivered with a plain
await, and a batch of records is produced as one record batch per partition.
The consumer also stops idling while a stream's buffer is full, and asks the
broker to hold an empty fetch for 100 ms rather than 1.5 s.
Everything else (gaps, offsets, commits, rebalances) is Faust's own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Iterable, Mapping

import aiokafka as aiokafka_client
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka
from faust.types import TP
from mode import ServiceT

Record = tuple[bytes | None, bytes, int]  # key, value, timestamp in ms


# How long a broker may hold a fetch that finds no new records. Faust asks for 1.5 s:
# Kafka answers as soon as records arrive, but tansu (tests, the embedded default) holds
# the fetch the whole time, so records waited about half a second (p50 at 2,000/s).
FETCH_MAX_WAIT_MS = 100


class ConsumerThread(aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: aiokafka.Transport) -> aiokafka_client.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when it starts its fetcher
        return consumer


class Consumer(aiokafka.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._buffer_dropped = asyncio.Event()

    def on_buffer_drop(self, tp: TP) -> None:
        super().on_buffer_drop(tp)
        self._buffer_dropped.set()

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        """Faust's loop (Consumer._drain_messages, with its getmany inlined), less its per-message costs.

        Faust races each delivery against "flow suspended" with four new tasks (mode's
        `wait_first`), reads the partition's high-water mark for each message and looks
        up its callback under a lock; here those are once per partition and fetch.
        When the flow stops (a rebalance) or the generation changes, the rest of the
        fetch is dropped, as Faust drops it: the new assignment reads it again.
        """
        on_message = self.callback
        # Rebuilt, under the lock, when the subscription changes: meanwhile on_message waits for it.
        callbacks = self.app.topics._tp_to_callback
        consumer_stopped, fetcher_stopped = self._stopped.is_set, fetcher._stopped.is_set
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        to_message, track_end_offset = self._to_message, self.app.monitor.track_tp_end_offset
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                self.diag.set_flag(CONSUMER_FETCHING)
                await asyncio.sleep(0)  # records can come at once: let others run
                generation = self.app.consumer_generation_id
                for tp, records in (await self._next_records()).items():
                    track_end_offset(tp, self.highwater(tp))
                    deliver = callbacks.get(tp, on_message)
                    gaps_matter = acks_enabled_for(tp.topic)
                    for record in records:
                        if not self.flow_active or self.app.consumer_generation_id != generation:
                            break
                        offset, last = record.offset, read_offset[tp]
                        if last is not None and offset < last:
                            continue  # already read: Faust drops it too
                        if last and offset - last > 1 and gaps_matter:
                            await self._add_gap(tp, last + 1, offset)
                        if self._commit_every is not None and self._n_acked >= self._commit_every:
                            self._n_acked = 0
                            await self.commit()
                        await deliver(to_message(tp, record))
                        read_offset[tp] = offset
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if not self.transport.app.should_stop:
                raise
        except asyncio.CancelledError:
            if not self.transport.app.should_stop:
                raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

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

    async def send_batches(self, topic: str, records: Iterable[Record]) -> list[asyncio.Future]:
        """Queue records as record batches, one or more per partition; the futures say when delivered.

        Partitioned as Faust's sends are (by default aiokafka's murmur2 of the key, as Kafka's Java clients).
        """
        producer = self._ensure_producer()
        partitions = sorted(await producer.partitions_for(topic))
        by_partition: defaultdict[int, list[Record]] = defaultdict(list)
        for record in records:
            by_partition[self.partitioner(record[0], partitions, partitions)].append(record)
        delivered = []
        for partition, batch_records in by_partition.items():
            batch = producer.create_batch()
            for key, value, timestamp in batch_records:
                while batch.append(key=key, value=value, timestamp=timestamp) is None:  # full
                    delivered.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
            delivered.append(await producer.send_batch(batch, topic, partition=partition))
        return delivered


class Transport(aiokafka.Transport):
    Consumer = Consumer
    Producer = Producer
