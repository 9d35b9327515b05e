"""State stays bounded: expired windows leave the table, its changelog (tombstones) and a restored table."""

from __future__ import annotations

import signal
import time

import orjson
import pytest
from fixtures import Kafka, Worker

from iris_app.broker import LocalBroker

WINDOW_S, GRACE_S = 1, 2
RUN_S = 25
# Windows a table may hold: those within the grace of its partition's newest window (event time is
# per partition, and one holding only rare (species, predictedSpecies) pairs moves on in jumps),
# and those expired since the last cleanup (once a window): a handful, where a table that kept
# every window would hold one a second.
LIVE_WINDOWS = 10


def window_starts(worker: Worker) -> set[int]:
    status, _, body = worker.get("/counts/")
    assert status == 200, body
    return {count["startMs"] for count in orjson.loads(body)}


def windows(changelog) -> set[float]:
    return {orjson.loads(message.key)[1][0] for message in changelog}


def live_windows(changelog) -> set[float]:
    """The windows whose latest changelog record per key holds a value (not a tombstone)."""
    latest = {message.key: message.value for message in changelog}
    return {orjson.loads(key)[1][0] for key, value in latest.items() if value is not None}


@pytest.mark.slow
def test_with_short_windows_the_table_its_changelog_and_a_restored_table_hold_only_live_windows(tmp_path):
    env = {
        "IRIS_WINDOW_SECONDS": str(WINDOW_S),
        "IRIS_WINDOW_GRACE_SECONDS": str(GRACE_S),
        "IRIS_GENERATOR_INTERVAL": "0.01",
        "IRIS_PRODUCER_MAX_BATCH_SIZE": "1",  # the table is restored from its changelog: tansu (SPEC)
    }
    with LocalBroker() as broker:
        env["KAFKA_BROKER"] = broker.url
        worker = Worker(env, tmp_path / "w")
        try:
            worker.wait_ready()
            seen: set[int] = set()
            held = []
            deadline = time.monotonic() + RUN_S
            while time.monotonic() < deadline:  # records flow (the generator: 100 a second)
                starts = window_starts(worker)
                seen |= starts
                held.append(len(starts))
                time.sleep(1)  # one look a window
            worker.process.send_signal(signal.SIGTERM)
            assert worker.process.wait(timeout=60) == 0
            restored = Worker({**env, "IRIS_GENERATOR_INTERVAL": "0"}, tmp_path / "w")  # same data directory
            try:
                restored.wait_ready()
                restored_starts = window_starts(restored)
            finally:
                restored.stop()
            # Compaction keeps the latest record per key. Without tombstones every window counted
            # would keep a value: read until most have been seen and only live ones have one.
            Kafka(broker.url).read_until(
                "iris_app-window-counts-changelog",
                lambda ms: len(windows(ms)) >= RUN_S - 3 and len(live_windows(ms)) <= LIVE_WINDOWS,
            )
        finally:
            worker.stop()

    assert len(seen) >= RUN_S - 3, "records were counted in a window a second"
    assert max(held) <= LIVE_WINDOWS, held
    assert 0 < len(restored_starts) <= LIVE_WINDOWS, sorted(restored_starts)
