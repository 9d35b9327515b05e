"""pytest fixtures: a real tansu broker on a free port, a Kafka client, the scorer, a worker process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fixtures import QUICK_REBALANCE, REPO, Kafka, Worker

from iris_app.broker import LocalBroker
from iris_app.scoring import Scorer


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first: `make test` hands its four processes two tests each, then one more as each ends
    (pytest-xdist, --dist load --maxschedchunk 1), so the slow ones run side by side and the rest fill in."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session", autouse=True)
def quick_rebalance() -> Iterator[None]:
    """Workers, and any other process a test starts, rebalance in seconds (fixtures.QUICK_REBALANCE)."""
    with pytest.MonkeyPatch.context() as env:
        for name, value in QUICK_REBALANCE.items():
            env.setenv(name, value)
        yield


@pytest.fixture(scope="session")
def broker() -> Iterator[LocalBroker]:
    with LocalBroker() as local:
        yield local


@pytest.fixture(scope="session")
def kafka(broker: LocalBroker) -> Kafka:
    return Kafka(broker.url)


@pytest.fixture(scope="session")
def scorer() -> Scorer:
    """The deployed model, scored directly: the reference for the worker's labels."""
    return Scorer(REPO / "mojo")


@pytest.fixture(scope="session")
def worker(broker: LocalBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """One worker for the end-to-end tests, the generator off; tests tell their records apart by key."""
    running = Worker(
        {"KAFKA_BROKER": broker.url, "IRIS_GENERATOR_INTERVAL": "0"}, tmp_path_factory.mktemp("worker")
    )
    running.wait_ready()
    yield running
    running.stop()
