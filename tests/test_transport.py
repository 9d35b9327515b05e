"""The app's producer keeps asking for the metadata of every topic it sends to (see transport.py)."""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from iris_app.faust_ext.transport import TopicTrackingProducer


async def create_topic(bootstrap: str, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1)])
    finally:
        await admin.close()


def test_a_topic_known_from_the_first_metadata_fetch_stays_known_after_a_new_one_is_added(broker):
    bootstrap = broker.url.removeprefix("kafka://")

    async def run() -> None:
        await create_topic(bootstrap, "known-at-start")
        producer = TopicTrackingProducer(bootstrap_servers=bootstrap)
        await producer.start()  # its first metadata fetch asks for every topic
        try:
            await (await producer.send("known-at-start", b"1"))
            await create_topic(bootstrap, "created-later")
            # A topic new to the producer: from now on aiokafka asks only for the topics added to
            # its client, and plain aiokafka never added "known-at-start" (it knew it already):
            # the update drops it, and batches queued for it wait for a leader that never comes.
            await (await producer.send("created-later", b"1"))
            await producer.client.force_metadata_update()
            assert producer.client.cluster.partitions_for_topic("known-at-start") == {0}
        finally:
            await producer.stop()

    asyncio.run(run())
