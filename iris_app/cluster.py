"""What the app asks of the cluster at start: its size and kind, and that its topics exist."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import NamedTuple

from aiokafka.admin import AIOKafkaAdminClient

from .connection import Connection, check_reachable
from .faust_ext.membership import static_membership_supported


class Cluster(NamedTuple):
    brokers: int
    cluster_id: str
    static_membership: bool = False  # every broker takes a group instance id (Kafka 2.3 and later)

    @property
    def is_tansu(self) -> bool:
        """tansu (the embedded default's broker) names its cluster so; Apache Kafka makes a random id."""
        return self.cluster_id.startswith("tansu")


async def describe_cluster(kafka: Connection, timeout: float = 10.0) -> Cluster:
    """How many brokers the cluster has, its id, and whether they take static members; BrokerUnreachable
    (with its cause) if none answers."""
    await check_reachable(kafka, timeout)
    admin = AIOKafkaAdminClient(**kafka.client_options(), request_timeout_ms=int(timeout * 1000))
    await admin.start()
    try:
        described = await admin.describe_cluster()
        static = await static_membership_supported(admin)
    finally:
        await admin.close()
    return Cluster(len(described["brokers"]), described["cluster_id"] or "", static)


async def wait_for_topics(kafka: Connection, names: Iterable[str], timeout: float = 30.0) -> None:
    """Wait until every broker's metadata lists the topics `names` (made a moment ago): a consumer that
    subscribes before they show would leave them out of its group's assignment until its next
    metadata refresh, minutes later. TimeoutError if they do not show within `timeout` seconds."""
    wanted = set(names)
    admin = AIOKafkaAdminClient(**kafka.client_options())
    await admin.start()
    try:
        async with asyncio.timeout(timeout):
            while not wanted <= set(await admin.list_topics()):
                await asyncio.sleep(0.1)  # metadata has no event to wait on
    finally:
        await admin.close()
