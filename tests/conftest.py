"""pytest fixtures: Apache Kafka on free ports, a Kafka client, the scorer, a worker process.

A multi-worker scenario is a test class: a session-scoped fixture runs the scenario once (its own broker,
workers, traffic and disruption) and records what happened, and each test of the class checks one thing of
that record. Session scope runs it at most once a process; `--dist loadscope` hands a class's tests to one
process, so it runs once in all.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.register_assert_rewrite("support")  # the helpers' asserts explain themselves as the tests' do

from support.checkout import REPO  # noqa: E402
from support.kafka import Kafka  # noqa: E402
from support.worker import QUICK_REBALANCE, Worker  # noqa: E402

from iris_app.kafka_server import KafkaCluster  # noqa: E402
from iris_app.scoring import Scorer  # noqa: E402


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first: pytest-xdist hands its four processes the first tests in this order (with --dist
    loadscope, the first classes and modules; --no-loadscope-reorder keeps the order), then more as each
    ends, so the slow ones run side by side and the rest fill in."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session", autouse=True)
def quick_rebalance() -> Iterator[None]:
    """Workers, and any other process a test starts, rebalance in seconds (support.worker.QUICK_REBALANCE)."""
    with pytest.MonkeyPatch.context() as env:
        for name, value in QUICK_REBALANCE.items():
            env.setenv(name, value)
        yield


@pytest.fixture(scope="session")
def broker() -> Iterator[KafkaCluster]:
    """Apache Kafka, one combined broker and controller (KRaft), for this test process."""
    with KafkaCluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def kafka(broker: KafkaCluster) -> Kafka:
    return Kafka(broker.url)


@pytest.fixture(scope="session")
def scorer() -> Scorer:
    """The deployed model, scored directly: the reference for the worker's labels."""
    return Scorer(REPO / "mojo")


@pytest.fixture(scope="session")
def worker(broker: KafkaCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """One worker for the end-to-end tests, the generator off; tests tell their records apart by key."""
    running = Worker(
        {"KAFKA_BROKER": broker.url, "IRIS_GENERATOR_INTERVAL": "0"}, tmp_path_factory.mktemp("worker")
    )
    running.wait_ready()
    yield running
    running.stop()
