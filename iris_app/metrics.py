"""The worker's Prometheus metrics (served at GET /metrics)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from .classifying import Shadow, Tally

log = logging.getLogger(__name__)

registry = CollectorRegistry()

classified = Counter("iris_records_classified", "Records classified and forwarded", registry=registry)
dead_lettered = Counter(
    "iris_records_dead_lettered", "Bad records sent to iris-dlq, by reason", ["reason"], registry=registry
)
late = Counter(
    "iris_records_late", "Records classified but too late for their window to be counted", registry=registry
)
skewed = Counter(
    "iris_records_skewed",
    "Records classified but not counted: their timestamp is negative or too far ahead of the worker's clock",
    registry=registry,
)
expired_deltas = Counter(
    "iris_deltas_expired",
    "Counts refused by the counting agents: their window had already expired from the table",
    registry=registry,
)
scoring_seconds = Histogram(
    "iris_scoring_batch_seconds",
    "Time to score one batch of records with the MOJO, waiting for the scorer's thread included",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
    registry=registry,
)
model_info = Gauge(
    "iris_model_info",
    "1 for each model this worker scores with, by id and role",
    ["model_id", "role"],
    registry=registry,
)
models_refused = Counter(
    "iris_models_refused",
    "Models published to serve that failed this worker's check (it kept the model it had)",
    ["model_id"],
    registry=registry,
)
records_scored = Counter(
    "iris_records_scored", "Records scored, by the model that scored them", ["model_id"], registry=registry
)
consumer_lag = Gauge(
    "iris_consumer_lag",
    "Records not yet committed, per input partition assigned to this worker (end offset - committed offset)",
    ["topic", "partition"],
    registry=registry,
)
under_replicated = Gauge(
    "iris_under_replicated_partitions",
    "Input partitions with fewer in-sync replicas than replicas, or no leader: a broker is down or behind",
    registry=registry,
)
partition_stalled = Gauge(
    "iris_partition_stalled",
    "1 while an assigned input partition has records to read and its committed offset does not move",
    ["topic", "partition"],
    registry=registry,
)
window_accuracy = Gauge(
    "iris_window_accuracy",
    "Accuracy of the newest window updated on this worker (the worker owning the accuracy table), by model",
    ["model_id", "role"],
    registry=registry,
)


class Skew:
    """When records with a timestamp from the future were last logged: at most once a minute."""

    logged_at = 0.0


def observe_batch(
    classified_n: int, rejected: Iterable[str], counted: Tally, shadow: Shadow | None = None
) -> None:
    """Count a classify batch's outcome; say in the log (at most once a minute) when timestamps are off."""
    classified.inc(classified_n)
    for model_id, role in counted.roles.items():
        records_scored.labels(model_id).inc(classified_n if role == "serving" else len(shadow.predictions))
    for reason in rejected:
        dead_lettered.labels(reason).inc()
    late.inc(counted.late)
    if counted.skewed:
        skewed.inc(counted.skewed)
        if time.monotonic() - Skew.logged_at >= 60:
            Skew.logged_at = time.monotonic()
            log.warning(
                "%d records with a timestamp negative or too far ahead of this worker's clock"
                " were classified but not counted (iris_records_skewed_total counts them all)",
                counted.skewed,
            )


def observe_accuracy(value: dict) -> None:
    """The accuracy of each model in the window just updated (a model with no labelled record yet: none)."""
    for model_id, tallies in value["models"].items():
        if tallies["total"]:
            window_accuracy.labels(model_id, tallies["role"]).set(tallies["correct"] / tallies["total"])
