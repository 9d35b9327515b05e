"""The worker's Prometheus metrics (served at GET /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

registry = CollectorRegistry()

classified = Counter("iris_records_classified", "Records classified and forwarded", registry=registry)
dead_lettered = Counter(
    "iris_records_dead_lettered", "Bad records sent to iris-dlq, by reason", ["reason"], registry=registry
)
late = Counter(
    "iris_records_late", "Records classified but too late for their window to be counted", registry=registry
)
scoring_seconds = Histogram(
    "iris_scoring_batch_seconds",
    "Time to score one batch of records with the MOJO, waiting for the scorer's thread included",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
    registry=registry,
)
consumer_lag = Gauge(
    "iris_consumer_lag",
    "Records in `iris` not yet read by this worker, per partition",
    ["partition"],
    registry=registry,
)
window_accuracy = Gauge(
    "iris_window_accuracy",
    "Accuracy of the newest window updated on this worker (the worker owning the accuracy table)",
    registry=registry,
)
