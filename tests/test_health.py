"""The watchdog: a partition that stops moving is named, measured and sought back; a silent broker is said."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from prometheus_client import generate_latest
from support.proxy import Proxy

from iris_app import metrics
from iris_app.broker import free_port
from iris_app.connection import Connection
from iris_app.health import Progress, Watchdog
from iris_app.kafka_server import KafkaCluster

IRIS_0, IRIS_1 = TopicPartition("iris", 0), TopicPartition("iris", 1)


def test_a_partition_stuck_past_the_limit_is_stalled():
    """Records to read and no committed progress for stall_seconds: stalled."""
    progress = Progress(stall_seconds=30)
    progress.observe({IRIS_0: 10, IRIS_1: 5}, {IRIS_0: 20, IRIS_1: 5}, now=0)
    progress.observe({IRIS_0: 10, IRIS_1: 5}, {IRIS_0: 25, IRIS_1: 9}, now=29)
    assert progress.stalled(now=29) == []
    # partition 1 got records at 29 s: its clock starts then, not when it was first seen idle
    assert progress.stalled(now=30) == [IRIS_0]
    assert progress.stalled(now=59) == [IRIS_0, IRIS_1]
    assert progress.partitions[IRIS_0].lag == 15


def test_progress_or_a_rebalance_restarts_the_clock():
    progress = Progress(stall_seconds=30)
    progress.observe({IRIS_0: 10}, {IRIS_0: 20}, now=0)
    progress.observe({IRIS_0: 11}, {IRIS_0: 20}, now=29)
    assert progress.stalled(now=58) == []
    progress.restart(now=50)
    assert progress.stalled(now=79) == []
    assert progress.stalled(now=80) == [IRIS_0]
    progress.observe({}, {}, now=81)  # not assigned any more: forgotten
    assert progress.stalled(now=200) == []


class FakeConsumer:
    """The part of a Faust consumer the watchdog uses: the assignment, and seek."""

    def __init__(self, assigned: set[TopicPartition]) -> None:
        self.assigned = assigned
        self.seeks: list[tuple[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    async def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))


async def produce(bootstrap: str, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for i in range(n):
            await producer.send_and_wait("iris", b"{}", partition=0)
    finally:
        await producer.stop()


async def commit(bootstrap: str, group: str, offset: int) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([IRIS_0])
        await consumer.commit({IRIS_0: OffsetAndMetadata(offset, "")})
    finally:
        await consumer.stop()


def test_watchdog_names_stalls_and_a_lost_broker():
    """It names a stalled partition and seeks it back, clears it in a rebalance, and says when the broker is
    out of reach, until it is back or a rebalance follows."""
    broker_port = free_port()
    proxy = Proxy(broker_port)
    with KafkaCluster(port=broker_port, advertised_port=proxy.port) as broker:
        bootstrap = broker.url.removeprefix("kafka://")
        consumer = FakeConsumer({IRIS_0})
        app = SimpleNamespace(
            conf=SimpleNamespace(id="watchdog-test"),
            consumer=consumer,
            rebalancing=False,
            tables=SimpleNamespace(recovery=SimpleNamespace(in_recovery=False)),
        )
        now = [0.0]
        watchdog = Watchdog(
            app, ["iris"], stall_seconds=30, kafka=Connection((bootstrap,)), clock=lambda: now[0]
        )

        async def scenario() -> None:
            await produce(bootstrap, 10)
            await commit(bootstrap, "watchdog-test", 4)
            await watchdog.check()
            assert watchdog.reason is None
            now[0] = 31.0
            await watchdog.check()
            assert watchdog.reason == "stalled: iris[0] (committed 4, end 10)"
            assert consumer.seeks == [(IRIS_0, 4)]
            exposed = generate_latest(metrics.registry).decode()
            assert 'iris_partition_stalled{partition="0",topic="iris"} 1.0' in exposed
            assert 'iris_consumer_lag{partition="0",topic="iris"} 6.0' in exposed
            app.rebalancing = True  # partitions move: they wait for the rebalance, and are sought anew
            await watchdog.check()
            assert watchdog.reason is None
            assert "iris_partition_stalled{" not in generate_latest(metrics.registry).decode()
            app.rebalancing = False

            await commit(bootstrap, "watchdog-test", 10)  # it moves again
            now[0] = 32.0
            await watchdog.check()
            assert watchdog.reason is None
            assert (
                'iris_partition_stalled{partition="0",topic="iris"} 0.0'
                in generate_latest(metrics.registry).decode()
            )

            proxy.cut()
            await watchdog.check()
            assert watchdog.reason.startswith("cannot reach the broker")
            proxy.restore()
            await watchdog.check()
            assert watchdog.reason is None

            proxy.cut()  # an outage, and after it the rebalance it often brings
            await watchdog.check()
            assert watchdog.reason.startswith("cannot reach the broker")
            proxy.restore()
            app.rebalancing = True
            await watchdog.check()
            assert watchdog.reason is None  # not a stale "cannot reach the broker" until the rebalance ends
            await watchdog.probe.stop()

        asyncio.run(scenario())
