"""State stays bounded: expired windows leave the table, its changelog (tombstones) and a restored table."""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson
import pytest
from support.kafka import Kafka, Message
from support.worker import Worker

from iris_app.kafka_server import KafkaCluster

WINDOW_S, GRACE_S = 1, 2
RUN_S = 25
# Windows a table may hold: those within the grace of its partition's newest window (event time is
# per partition, and one holding only rare (species, predictedSpecies) pairs moves on in jumps),
# and those expired since the last cleanup (once a window): a handful, where a table that kept
# every window would hold one a second.
LIVE_WINDOWS = 10
# Kafka's retention deletes the changelog's expired windows outright (its retention.ms is the windows'
# expiry, 3 s): the broker's retention task from 30 s after it starts, and the log cleaner, which also
# deletes the old segments of a "compact,delete" topic, every 15 s (on a loaded machine it emptied the
# changelog before the test read it). Both held back, the changelog shows what the app writes itself, a
# tombstone for every window it expires; the test finds the latest record per key itself.
KEEP_EXPIRED = {"log.initial.task.delay.ms": "600000", "log.cleaner.enable": "false"}
CHANGELOG = "iris_app-window-counts-changelog"


def window_starts(worker: Worker) -> set[int]:
    status, _, body = worker.get("/counts/")
    assert status == 200, f"/counts/ answered {status}, not 200: {body}"
    return {count["startMs"] for count in orjson.loads(body)}


def windows(changelog: list[Message]) -> set[float]:
    return {orjson.loads(message.key)[1][0] for message in changelog}


def live_windows(changelog: list[Message]) -> set[float]:
    """The windows whose latest changelog record per key holds a value (not a tombstone)."""
    latest = {message.key: message.value for message in changelog}
    return {orjson.loads(key)[1][0] for key, value in latest.items() if value is not None}


def compacted(changelog: list[Message]) -> bool:
    """Most windows counted are on the changelog, and only live ones keep a value: what compaction leaves
    (it keeps the latest record per key: without tombstones every window counted would keep a value)."""
    return len(windows(changelog)) >= RUN_S - 3 and len(live_windows(changelog)) <= LIVE_WINDOWS


@dataclass
class ShortWindows:
    seen: set[int]  # the windows /counts/ showed, looked at once a second
    held: list[int]  # how many it showed at each look
    stop_status: int | None  # the worker's exit status after SIGTERM; None: still running after 60 s
    stop_stacks: str  # a hung worker's last lines and threads
    restored: set[int]  # the windows /counts/ shows once the worker is restored from its changelog
    changelog: list[Message]  # the count table's changelog once compacted(), or as it stands after 60 s


@pytest.fixture(scope="session")
def run(tmp_path_factory: pytest.TempPathFactory) -> ShortWindows:
    """TestShortWindows's scenario, run once for all its tests (conftest.py)."""
    datadir = tmp_path_factory.mktemp("short-windows") / "w"
    env = {
        "IRIS_WINDOW_SECONDS": str(WINDOW_S),
        "IRIS_WINDOW_GRACE_SECONDS": str(GRACE_S),
        "IRIS_GENERATOR_INTERVAL": "0.01",
    }
    with KafkaCluster(config=KEEP_EXPIRED) as broker:
        env["KAFKA_BROKER"] = broker.url
        worker = Worker(env, datadir)
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
            stop_status, stop_stacks = worker.stop_within(60)
            restored = Worker({**env, "IRIS_GENERATOR_INTERVAL": "0"}, datadir)  # same data directory
            try:
                restored.wait_ready()
                restored_starts = window_starts(restored)
            finally:
                restored.stop()
            kafka = Kafka(broker.url)
            try:
                changelog = kafka.read_until(CHANGELOG, compacted)
            except AssertionError:
                changelog = kafka.read_all(CHANGELOG)
        finally:
            worker.stop()
    return ShortWindows(seen, held, stop_status, stop_stacks, restored_starts, changelog)


@pytest.mark.slow
class TestShortWindows:
    """One worker on its own broker, with 1 s windows and 2 s of grace, its generator producing 100
    records a second; /counts/ looked at once a second for 25 s. Then the worker is stopped (SIGTERM) and
    started again on its data directory, its generator off."""

    def test_records_are_counted_in_a_window_a_second(self, run: ShortWindows):
        assert len(run.seen) >= RUN_S - 3, f"{len(run.seen)} windows counted in {RUN_S} s, not {RUN_S - 3}+"

    def test_the_table_holds_only_live_windows(self, run: ShortWindows):
        assert max(run.held) <= LIVE_WINDOWS, (
            f"windows held at each look: {run.held}, not {LIVE_WINDOWS} or less"
        )

    def test_a_stopped_worker_exits_with_0(self, run: ShortWindows):
        assert run.stop_status == 0, (
            f"SIGTERM: exit status {run.stop_status}, not 0 (None: running after 60 s)\n{run.stop_stacks}"
        )

    def test_a_restored_table_holds_only_live_windows(self, run: ShortWindows):
        restored = sorted(run.restored)
        assert 0 < len(restored) <= LIVE_WINDOWS, f"restored windows: {restored}, not 1 to {LIVE_WINDOWS}"

    def test_the_changelog_keeps_only_live_windows(self, run: ShortWindows):
        """Expired windows are tombstoned: compaction leaves them no value."""
        counted, live = len(windows(run.changelog)), len(live_windows(run.changelog))
        assert compacted(run.changelog), (
            f"{counted} windows on the changelog, {live} with a value: expected {RUN_S - 3}+, and "
            f"{LIVE_WINDOWS} or fewer"
        )
