"""pytest fixtures: a real tansu broker on a free port, a Kafka client, the scorer, a worker process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fixtures import REPO, Kafka, Worker

from iris_app.broker import LocalBroker
from iris_app.scoring import Scorer

# Fixtures that start workers once for many tests: in a parallel run (`make test`: pytest-xdist,
# --dist loadgroup) the tests sharing one run in one process, so its workers start once.
SHARED_WORKERS = ("worker", "two_workers")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first, so a parallel run spreads them over its processes and ends together; tests
    sharing workers in one group."""
    for item in items:
        for name in SHARED_WORKERS:
            if name in item.fixturenames:
                item.add_marker(pytest.mark.xdist_group(name))
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


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
