"""Workers stopped (SIGTERM) or killed (SIGKILL) mid-stream lose nothing, and every window's count stays
exact: at least once in, each record counted once."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

import orjson
import pytest
from support.checkout import REPO
from support.cluster_ops import uncommitted
from support.counts import Window, counts_reaching, differences, truth_of, why_short
from support.kafka import Kafka, Message, whereabouts
from support.records import MINUTE_MS, now_ms, predicted_labels
from support.traffic import Traffic
from support.worker import NO_GENERATOR, Worker, report

from iris_app.kafka_server import KafkaCluster
from iris_app.samples import read_samples
from iris_app.windows import window_start


@dataclass
class StopAndKill:
    stop_status: int | None  # the stopped worker's exit status; None: still running after 240 s
    stop_stacks: str  # a hung worker's last lines and threads
    labels: dict[bytes, str]  # each record's key, and the label direct scoring gives it
    classified: list[Message]  # iris-classified once every key is on it, or as it stands after 300 s
    tails: str  # the workers' last lines, when a record is missing
    counted: dict[Window, int]
    truth: Counter


@pytest.fixture(scope="session")
def stop_and_kill(tmp_path_factory: pytest.TempPathFactory, scorer) -> StopAndKill:
    """TestStopAndKill's scenario, run once for all its tests (conftest.py)."""
    tmp_path = tmp_path_factory.mktemp("stop-and-kill")
    rng = random.Random(3)
    samples = read_samples(REPO / "data" / "iris.csv")
    start = window_start(now_ms(), MINUTE_MS) - 3 * MINUTE_MS
    records = [(b"r%d" % i, rng.choice(samples), start + i * 120) for i in range(1500)]  # over 3 minutes
    labels = predicted_labels(scorer, [r for _, r, _ in records])
    truth = Counter(
        (r["species"], label, window_start(ts, MINUTE_MS)) for (_, r, ts), label in zip(records, labels)
    )
    chunks = [records[i : i + 250] for i in range(0, 1500, 250)]

    with KafkaCluster() as broker:
        kafka = Kafka(broker.url)

        def produce(chunk) -> None:
            kafka.produce("iris", [(key, orjson.dumps(r), ts) for key, r, ts in chunk])

        def classified(n: int, timeout: float) -> list[Message]:
            return kafka.read_until("iris-classified", lambda ms: len({m.key for m in ms}) >= n, timeout)

        env = {"KAFKA_BROKER": broker.url, **NO_GENERATOR}
        dirs = [tmp_path / "w0", tmp_path / "w1"]
        workers = [Worker(env, d) for d in dirs]
        try:
            for w in workers:
                w.wait_ready()
            produce(chunks[0])
            classified(150, timeout=120)
            produce(chunks[1])
            # A clean stop, mid-stream: it flushes what it produced first, slow with one record per batch.
            stop_status, stop_stacks = workers[1].stop_within(240)
            produce(chunks[2])
            workers[1] = Worker(env, dirs[1])
            workers[1].wait_ready()
            produce(chunks[3])
            classified(900, timeout=180)
            workers[0].process.kill()  # a crash, mid-stream: no commit, no flush
            workers[0].process.wait()
            produce(chunks[4])
            workers[0] = Worker(env, dirs[0])
            workers[0].wait_ready()
            produce(chunks[5])
            try:
                out, tails = classified(1500, timeout=300), ""
            except AssertionError:
                out = kafka.read_all("iris-classified")
                tails = "".join(f"--- worker {i}:\n{''.join(w.lines[-40:])}" for i, w in enumerate(workers))
            counted = counts_reaching(kafka, truth, timeout=180)
        finally:
            for w in workers:
                w.stop()
    expected = {key: label for (key, _, _), label in zip(records, labels)}
    return StopAndKill(stop_status, stop_stacks, expected, out, tails, counted, truth)


@pytest.mark.slow
class TestStopAndKill:
    """Two workers on their own broker; 1,500 records, three minutes of event time, produced 250 at a time.
    After the second 250, worker 1 is stopped (SIGTERM) and started again on its data directory; once 900
    are classified, worker 0 is killed (SIGKILL) and started again."""

    def test_a_stopped_worker_exits_with_0(self, stop_and_kill: StopAndKill):
        assert stop_and_kill.stop_status == 0, (
            f"SIGTERM: exit status {stop_and_kill.stop_status}, not 0 (None: still running after 240 s)\n"
            + stop_and_kill.stop_stacks
        )

    def test_every_record_is_classified(self, stop_and_kill: StopAndKill):
        keys = {m.key for m in stop_and_kill.classified}
        missing = sorted(stop_and_kill.labels.keys() - keys)
        assert not missing, (
            f"{len(missing)} of 1500 never classified, e.g. {missing[:5]}\n{stop_and_kill.tails}"
        )
        print(
            f"\nreplayed after the stop and the kill: {len(stop_and_kill.classified) - 1500} classified twice"
        )

    def test_labels_are_those_of_direct_scoring(self, stop_and_kill: StopAndKill):
        """Nothing misplaced: each record comes out with the label the model gives it scored directly."""
        wrong = {
            m.key: (m.json()["predictedSpecies"], stop_and_kill.labels.get(m.key))
            for m in stop_and_kill.classified
            if m.json()["predictedSpecies"] != stop_and_kill.labels.get(m.key)
        }
        assert not wrong, (
            f"(label, direct scoring's) of {len(wrong)} records: {dict(list(wrong.items())[:10])}"
        )

    def test_every_window_count_is_exact(self, stop_and_kill: StopAndKill):
        """Replayed records are classified again, and counted once."""
        counted, truth = stop_and_kill.counted, dict(stop_and_kill.truth)
        assert counted == truth, f"(count, truth) where they differ: {differences(counted, truth)}"


CYCLES = ["worker-0-killed", "worker-1-killed-fresh-datadir", "worker-0-killed-again"]


@dataclass
class KillCycles:
    missing_after: dict[str, list[bytes]]  # cycle -> records not classified within 120 s of its restart
    where: dict[str, str]  # cycle -> where its missing records are, and what the workers say
    missing: list[bytes]  # records not classified within 120 s of the end of the traffic
    sent: int  # records the broker took
    health: list[int]  # the workers' /health status at the end
    counted: dict[Window, int]
    truth: Counter
    why: str  # the short windows' trails, and what the workers say
    behind: dict[int, tuple[int, int]]  # iris partitions whose commit is not at the end: (committed, end)


@pytest.fixture(scope="session")
def kill_cycles(tmp_path_factory: pytest.TempPathFactory, scorer) -> KillCycles:
    """TestKillCycles's scenario, run once for all its tests (conftest.py)."""
    tmp_path = tmp_path_factory.mktemp("kill-cycles")
    env = dict(NO_GENERATOR)
    missing_after, where = {}, {}
    with KafkaCluster() as broker:
        env["KAFKA_BROKER"] = broker.url
        kafka = Kafka(broker.url)
        dirs = [tmp_path / "w0", tmp_path / "w1"]
        workers = [Worker(env, d) for d in dirs]
        traffic = None
        try:
            for w in workers:
                w.wait_ready()
            traffic = Traffic(broker.url, rate=150, samples=read_samples(REPO / "data" / "iris.csv"))
            for number, cycle in enumerate(CYCLES):
                victim = number % 2
                workers[victim].process.kill()
                workers[victim].process.wait()
                if cycle.endswith("fresh-datadir"):
                    dirs[victim] = tmp_path / f"w{victim}-fresh"  # a replaced machine: no local state
                workers[victim] = Worker(env, dirs[victim])
                workers[victim].wait_ready()
                missing_after[cycle] = missing = traffic.wait_classified(timeout=120)
                if missing:
                    where[cycle] = f"{whereabouts(broker.url, missing[:5])}\n{report(workers)}"
            traffic.stop_producing()
            missing = traffic.wait_classified(timeout=120)
            health = [w.get("/health")[0] for w in workers]
            labelled, truth = truth_of(kafka, traffic.sent, scorer)
            counted = counts_reaching(kafka, truth, timeout=120)
            short = [window for window, n in truth.items() if counted.get(window, 0) < n]
            why = f"{why_short(kafka, short, labelled)}\n{report(workers)}" if short else ""
            behind = uncommitted(broker)
            if why:  # kept beside the workers' logs in the scenario's temporary folder
                (tmp_path / "why-short.txt").write_text(why)
        finally:
            if traffic:
                traffic.close()
            for w in workers:
                w.stop()
    return KillCycles(missing_after, where, missing, len(traffic.sent), health, counted, truth, why, behind)


@pytest.mark.slow
class TestKillCycles:
    """Two workers on their own broker, records flowing at 150 a second. Three times, one worker (each in
    turn) is killed (SIGKILL) and started again, the second time on a fresh data directory (a replaced
    machine); after each, every record sent so far comes out classified before the next. Then the traffic
    stops."""

    @pytest.mark.parametrize("cycle", CYCLES)
    def test_all_records_classified_after_restart(self, kill_cycles: KillCycles, cycle: str):
        missing = kill_cycles.missing_after[cycle]
        where = kill_cycles.where.get(cycle, "")
        assert not missing, f"{len(missing)} records not classified in 120 s, e.g. {missing[:5]}\n{where}"

    def test_over_1000_records_flowed(self, kill_cycles: KillCycles):
        assert kill_cycles.sent > 1000, f"{kill_cycles.sent} records sent, not over 1,000"

    def test_no_record_is_lost(self, kill_cycles: KillCycles):
        missing, sent = kill_cycles.missing, kill_cycles.sent
        assert not missing, f"{len(missing)} of {sent} records never classified, e.g. {missing[:5]}"

    def test_both_workers_healthy_at_the_end(self, kill_cycles: KillCycles):
        assert kill_cycles.health == [200, 200], f"/health: {kill_cycles.health}, not 200 on both"

    def test_every_window_count_is_exact(self, kill_cycles: KillCycles):
        counted, truth = kill_cycles.counted, dict(kill_cycles.truth)
        assert counted == truth, (
            f"(count, truth) where they differ: {differences(counted, truth)}\n{kill_cycles.why}"
        )

    def test_commits_reach_the_end(self, kill_cycles: KillCycles):
        assert not kill_cycles.behind, f"(committed, end) per iris partition: {kill_cycles.behind}"
