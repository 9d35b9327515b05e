"""Two workers share the partitions; either one answers for the whole table."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import orjson
import pytest
from support.kafka import Kafka
from support.records import MINUTE_MS
from support.worker import NO_GENERATOR, Worker

from iris_app.kafka_server import KafkaCluster
from iris_app.windows import window_start

RECORDS = [
    {"sepalLength": 5.1, "sepalWidth": 3.5, "petalLength": 1.4, "petalWidth": 0.2, "species": "setosa"},
    {"sepalLength": 6.4, "sepalWidth": 3.2, "petalLength": 4.5, "petalWidth": 1.5, "species": "versicolor"},
    {"sepalLength": 6.3, "sepalWidth": 3.3, "petalLength": 6.0, "petalWidth": 2.5, "species": "virginica"},
    {"sepalLength": 6.3, "sepalWidth": 3.3, "petalLength": 6.0, "petalWidth": 2.5},
]


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Kafka, list[Worker]]]:
    with KafkaCluster() as broker:
        env = {"KAFKA_BROKER": broker.url, **NO_GENERATOR}
        workers = [Worker(env, tmp_path_factory.mktemp(f"worker{i}")) for i in range(2)]
        try:
            for worker in workers:
                worker.wait_ready()
            yield Kafka(broker.url), workers
        finally:
            for worker in workers:
                worker.stop()


def counts(worker: Worker, window: int) -> dict:
    status, _, body = worker.get("/counts/")
    assert status == 200, body
    return {
        (c["species"], c["predictedSpecies"]): c["count"] for c in json.loads(body) if c["startMs"] == window
    }


def test_either_worker_answers_for_every_key(two_workers):
    kafka, workers = two_workers
    window = window_start(int(time.time() * 1000), MINUTE_MS) - 5 * MINUTE_MS
    kafka.produce("iris", [(b"%d" % i, orjson.dumps(r), window + i) for i, r in enumerate(RECORDS * 5)])
    messages = kafka.read_until(
        "iris-classified-window-counts",
        lambda ms: (
            sum({m.key: m.json()["count"] for m in ms if m.json()["startMs"] == window}.values()) == 20
        ),
    )
    expected = {
        (c["species"], c["predictedSpecies"]): c["count"]
        for c in (m.json() for m in messages)
        if c["startMs"] == window
    }

    # Four or more keys spread over the partitions of both workers: each worker holds only some
    # of them and must gather (or forward) the rest.
    assert len(expected) >= 4
    for worker in workers:
        assert counts(worker, window) == expected
        for (species, predicted), count in expected.items():
            status, _, body = worker.get(f"/counts/{species}/{predicted}/")
            assert status == 200
            assert {
                "species": species,
                "predictedSpecies": predicted,
                "startMs": window,
                "endMs": window + MINUTE_MS,
                "count": count,
            } in json.loads(body)
