"""The embedded default's broker, tansu: the pipeline runs on it, and a restarted worker goes on counting.

The suite runs on Apache Kafka; this checks what `make run` needs of tansu, including the work-around
the worker applies by itself there (one record per producer batch, found from the cluster's id; no
static group membership).
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
    records = [GOOD[i % len(GOOD)] for i in range(10)]
    truth = Counter(
        (r.get("species", "unknown"), label) for r, label in zip(records, predicted_labels(scorer, records))
    )
    worker = Worker(env, tmp_path / "data")
    try:
        worker.wait_ready()
        assert any("1 broker(s)" in line for line in worker.lines), "the worker did not describe the cluster"
        assert any("take no static members" in line for line in worker.lines), "a static member on tansu"
        send(kafka, before, stamp)
        assert window_counts(kafka, stamp, truth) == dict(truth), "the first records are not counted"
        worker.stop()
        worker = Worker(env, tmp_path / "data")  # same data directory: the table is restored, then goes on
        worker.wait_ready()
        send(kafka, after, stamp)
        doubled = {key: 2 * n for key, n in truth.items()}
        counted = window_counts(kafka, stamp, doubled)
    finally:
        worker.stop()
    assert counted == doubled, f"counts {counted}, expected {doubled}"


def window_counts(kafka: Kafka, stamp: int, truth: dict) -> dict:
    """The latest count of each (species, predictedSpecies) in the window of `stamp`, read until they
    reach `truth` (or as they stand after 60 s)."""
    start = window_start(stamp, MINUTE_MS)

    def latest(messages) -> dict:
        counts = {}
        for m in messages:
            count = m.json()
            if count["startMs"] == start:
                counts[(count["species"], count["predictedSpecies"])] = count["count"]
        return counts

    try:
        return latest(kafka.read_until("iris-classified-window-counts", lambda ms: latest(ms) == truth))
    except AssertionError:
        return latest(kafka.read_all("iris-classified-window-counts"))
