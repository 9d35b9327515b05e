"""Faust's aiokafka transport, made for batches: the hot path's consumer and producer.

Per record, Faust's consumer races each delivery against "flow suspended" with
four new tasks (mode's `wait_first`), and its producer goes through aiokafka's
`send` (partitioner, a future, a log call): at thousands of records per second
both cost more than scoring. Here a fetched message is delivered with a plain
await, and a batch of records is produced as one record batch per partition.
Everything else (gaps, offsets, commits, rebalances) is Faust's own.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable

import aiokafka as aiokafka_client
from aiokafka.partitioner import DefaultPartitioner
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka
from mode import ServiceT

Record = tuple[bytes | None, bytes, int]  # key, value, timestamp in ms


class Consumer(aiokafka.Consumer):
    async def _drain_messages(self, fetcher: ServiceT) -> None:
        """Faust's loop (faust.transport.consumer.Consumer._drain_messages) less a task per message.

        While the flow is suspended (a rebalance), fetched messages are dropped, as
        Faust's own loop drops them: the new assignment re-reads from the committed offsets.
        """
        callback = self.callback
        consumer_stopped, fetcher_stopped = self._stopped.is_set, fetcher._stopped.is_set
        flow_suspended = self.suspend_flow.is_set
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                self.diag.set_flag(CONSUMER_FETCHING)
                await asyncio.sleep(0)  # getmany can return at once: let others run
                async for tp, message in self.getmany(timeout=1.0):
                    offset, last = message.offset, read_offset[tp]
                    if last is not None and offset < last:
                        continue  # already read: Faust drops it too
                    if last and offset - last > 1 and acks_enabled_for(message.topic):
                        await self._add_gap(tp, last + 1, offset)
                    if self._commit_every is not None and self._n_acked >= self._commit_every:
                        self._n_acked = 0
                        await self.commit()
                    if not flow_suspended():
                        await callback(message)
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
    partitioner = DefaultPartitioner()  # aiokafka's: murmur2 of the key, like Kafka's Java clients
    _producer_type = TopicTrackingProducer

    async def send_batches(self, topic: str, records: Iterable[Record]) -> list[asyncio.Future]:
        """Queue records as record batches, one or more per partition; the futures say when delivered."""
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
