"""What tests and benchmarks ask of a KafkaCluster and do to it: which broker leads a partition or
coordinates the workers' group, whether its partitions are handed over or fully replicated, and a broker
brought back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import KafkaError

from iris_app.kafka_server import KafkaCluster, Node

GROUP = "iris_app"  # the workers' consumer group: the Faust app's id
T = TypeVar("T")


def ask(cluster: KafkaCluster, question: Callable[[AIOKafkaAdminClient], Awaitable[T]]) -> T:
    """The answer to `question`, asked of the cluster with an admin client of its own."""

    async def run() -> T:
        admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
        await admin.start()
        try:
            return await question(admin)
        finally:
            await admin.close()

    return asyncio.run(run())


def node_by_id(cluster: KafkaCluster, node_id: int) -> Node:
    return next(node for node in cluster.nodes if node.id == node_id)


def leader_of(cluster: KafkaCluster, topic: str, partition: int) -> Node:
    """The broker leading `topic`[`partition`]."""
    [described] = ask(cluster, lambda admin: admin.describe_topics([topic]))
    return node_by_id(
        cluster, next(p["leader"] for p in described["partitions"] if p["partition"] == partition)
    )


def coordinator_of(cluster: KafkaCluster, group: str = GROUP) -> Node:
    """The broker coordinating `group`."""
    return node_by_id(cluster, ask(cluster, lambda admin: admin.find_coordinator(group)))


def wait_for_partitions(
    cluster: KafkaCluster, holds: Callable[[dict], bool], what: str, timeout: float
) -> None:
    """Wait until `holds` is true of every partition of every topic, internal ones too (the admin client's
    metadata: "leader", "replicas", "isr"); AssertionError saying `what` after `timeout`."""

    async def look(admin: AIOKafkaAdminClient) -> bool:
        return all(holds(p) for topic in await admin.describe_topics() for p in topic["partitions"])

    deadline = time.monotonic() + timeout
    while True:
        try:
            if ask(cluster, look):
                return
        except KafkaError:  # the broker asked has just gone: ask again
            pass
        assert time.monotonic() < deadline, f"{what} after {timeout} s"
        time.sleep(1)  # partition metadata has no event a client can await


def fully_replicated(cluster: KafkaCluster, timeout: float = 90) -> None:
    """Wait until every partition has all its replicas in sync (a broker back has caught up)."""
    wait_for_partitions(
        cluster, lambda p: len(p["isr"]) == len(p["replicas"]), "partitions still under-replicated", timeout
    )


def handed_over(cluster: KafkaCluster, gone: Node, timeout: float = 90) -> None:
    """Wait until every partition has a leader and none is led by `gone`: its partitions, the group
    coordinator's among them, have new leaders."""
    wait_for_partitions(
        cluster,
        lambda p: p["leader"] not in (-1, gone.id),
        f"partitions led by node {gone.id} or none",
        timeout,
    )


def bring_back(cluster: KafkaCluster, node: Node, timeout: float = 90) -> None:
    """Start a killed or stopped node again, and wait until it serves and every partition is fully
    replicated."""
    cluster.start(node)
    cluster.wait_until_started(node)
    fully_replicated(cluster, timeout)


def assignments(cluster: KafkaCluster, group: str = GROUP) -> dict[str, set[tuple[str, int]]]:
    """Each member of `group` (by member id) and the partitions it holds, as the group's coordinator says.
    A static member's id is its group instance id, a '-' and a random part."""

    async def describe(admin: AIOKafkaAdminClient) -> dict[str, set[tuple[str, int]]]:
        [response] = await admin.describe_consumer_groups([group])
        [described] = response.groups
        members = described[5]  # (member_id, client_id, client_host, metadata, assignment)
        return {
            member[0]: {
                (topic, partition)
                for topic, partitions in ConsumerProtocolMemberAssignment.decode(member[4]).assignment
                for partition in partitions
            }
            for member in members
        }

    return ask(cluster, describe)


def uncommitted(cluster: KafkaCluster, timeout: float = 30) -> dict[int, tuple[int, int]]:
    """iris partitions whose committed offset is not at the end: {partition: (committed, end)}."""

    async def look() -> dict[int, tuple[int, int]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=cluster.bootstrap, group_id=GROUP)
        await consumer.start()
        try:
            tps = [TopicPartition("iris", p) for p in consumer.partitions_for_topic("iris") or range(4)]
            ends = await consumer.end_offsets(tps)
            behind = {}
            for tp in tps:
                committed = await consumer.committed(tp) or 0
                if committed != ends[tp]:
                    behind[tp.partition] = (committed, ends[tp])
            return behind
        finally:
            await consumer.stop()

    deadline = time.monotonic() + timeout
    while (behind := asyncio.run(look())) and time.monotonic() < deadline:
        time.sleep(1)  # commits come every few seconds: no event to await
    return behind
