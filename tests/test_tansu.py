"""The embedded default's broker, tansu: the pipeline runs on it, and a restarted worker goes on counting.

The suite runs on Apache Kafka; this checks what `make run` needs of tansu, including the work-around
the worker applies by itself there (one record per producer batch, found from the cluster's id).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import orjson
import pytest
from support.kafka import Kafka
from support.records import GOOD, MINUTE_MS, keyed, now_ms, predicted_labels
from support.worker import Worker

from iris_app.broker import LocalBroker
from iris_app.windows import window_start


@pytest.fixture(scope="module")
def tansu() -> Iterator[LocalBroker]:
    with LocalBroker() as broker:
        yield broker


def send(kafka: Kafka, keys: list[bytes], timestamp: int) -> None:
    kafka.produce("iris", [(key, orjson.dumps(GOOD[i % len(GOOD)]), timestamp) for i, key in enumerate(keys)])


@pytest.mark.slow
def test_tansu_runs_the_pipeline_through_a_restart(tansu: LocalBroker, scorer, tmp_path):
    """A worker classifies and counts on tansu; stopped and started again on the same data directory,
    it restores its table and counts on from where it was (exactly, both runs' records in one window)."""
    kafka = Kafka(tansu.url)
    env = {"KAFKA_BROKER": tansu.url, "IRIS_GENERATOR_INTERVAL": "0"}
    stamp = window_start(now_ms(), MINUTE_MS) + 1000
    before, after = keyed("tansu-before", 10), keyed("tansu-after", 10)
    worker = Worker(env, tmp_path / "data")
    try:
        worker.wait_ready()
        assert any("1 broker(s)" in line for line in worker.lines), "the worker did not describe the cluster"
        send(kafka, before, stamp)
        kafka.read_until("iris-classified", lambda ms: set(before) <= {m.key for m in ms})
        worker.stop()
        worker = Worker(env, tmp_path / "data")  # same data directory: the table is restored, then goes on
        worker.wait_ready()
        send(kafka, after, stamp)
        kafka.read_until("iris-classified", lambda ms: set(after) <= {m.key for m in ms})
    finally:
        worker.stop()
    labels = predicted_labels(scorer, [GOOD[i % len(GOOD)] for i in range(10)] * 2)
    truth = Counter(
        (GOOD[i % len(GOOD)].get("species", "unknown"), label)
        for i, label in zip(list(range(10)) * 2, labels)
    )
    latest = {}
    for m in kafka.read_all("iris-classified-window-counts"):
        count = m.json()
        if count["startMs"] == window_start(stamp, MINUTE_MS):
            latest[(count["species"], count["predictedSpecies"])] = count["count"]
    assert latest == dict(truth), f"counts {latest}, expected {dict(truth)}"
