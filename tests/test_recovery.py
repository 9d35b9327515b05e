"""Workers stopped (SIGTERM), killed (SIGKILL) or cut off from the broker mid-stream lose nothing, and every
window's count stays exact: at least once in, each record counted once."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections import Counter

import orjson
import pytest
from fixtures import (
    MINUTE_MS,
    QUICK_REBALANCE,
    REPO,
    TABLES_MOVE,
    Kafka,
    Message,
    Proxy,
    Traffic,
    Worker,
    predicted_labels,
    whereabouts,
)

from iris_app.broker import LocalBroker, free_port
from iris_app.samples import read_samples
from iris_app.windows import window_start

# Two session timeouts: the worker's membership of the group lapses while it is cut off.
OUTAGE_S = 2 * float(QUICK_REBALANCE["BROKER_SESSION_TIMEOUT"])


@pytest.mark.slow
def test_a_stopped_and_a_killed_worker_lose_no_record_and_every_count_stays_exact(tmp_path, scorer):
    rng = random.Random(3)
    samples = read_samples(REPO / "data" / "iris.csv")
    start = window_start(int(time.time() * 1000), MINUTE_MS) - 3 * MINUTE_MS
    records = [
        (b"r%d" % i, rng.choice(samples), start + i * 120)  # 1,500 records over three minutes
        for i in range(1500)
    ]
    labels = predicted_labels(scorer, [r for _, r, _ in records])
    truth = Counter(
        (r["species"], label, window_start(ts, MINUTE_MS)) for (_, r, ts), label in zip(records, labels)
    )
    chunks = [records[i : i + 250] for i in range(0, 1500, 250)]

    def produce(chunk):
        kafka.produce("iris", [(key, orjson.dumps(r), ts) for key, r, ts in chunk])

    def classified_keys(messages):
        return {m.key for m in messages}

    with LocalBroker() as broker:
        kafka = Kafka(broker.url)
        env = {"KAFKA_BROKER": broker.url, **TABLES_MOVE}
        dirs = [tmp_path / "w0", tmp_path / "w1"]
        workers = [Worker(env, d) for d in dirs]
        try:
            for w in workers:
                w.wait_ready()
            produce(chunks[0])
            kafka.read_until("iris-classified", lambda ms: len(classified_keys(ms)) >= 150, timeout=120)
            produce(chunks[1])

            workers[1].process.send_signal(signal.SIGTERM)  # a clean stop, mid-stream
            # It flushes what it produced first: slow with one record per batch (the tansu workaround).
            try:
                assert workers[1].process.wait(timeout=240) == 0
            except subprocess.TimeoutExpired:
                stacks = workers[1].dump_stacks()
                raise AssertionError(f"SIGTERM did not stop the worker:\n{stacks}") from None
            produce(chunks[2])
            workers[1] = Worker(env, dirs[1])
            workers[1].wait_ready()
            produce(chunks[3])

            kafka.read_until("iris-classified", lambda ms: len(classified_keys(ms)) >= 900, timeout=180)
            workers[0].process.kill()  # a crash, mid-stream: no commit, no flush
            workers[0].process.wait()
            produce(chunks[4])
            workers[0] = Worker(env, dirs[0])
            workers[0].wait_ready()
            produce(chunks[5])

            try:
                classified = kafka.read_until(
                    "iris-classified", lambda ms: len(classified_keys(ms)) == 1500, timeout=300
                )
            except AssertionError as missing:
                tails = ["".join(w.lines[-40:]) for w in workers]
                raise AssertionError(
                    f"{missing}\n--- worker 0:\n{tails[0]}\n--- worker 1:\n{tails[1]}"
                ) from None

            counted = counts_reaching(kafka, truth, timeout=180)
        finally:
            for w in workers:
                w.stop()

    expected = {key: label for (key, _, _), label in zip(records, labels)}
    assert all(expected[m.key] == m.json()["predictedSpecies"] for m in classified)  # nothing misplaced
    assert counted == dict(truth)  # replayed records were classified again, and counted once
    print(f"\nreplayed after the stop and the kill: {len(classified) - 1500} records classified twice")


def wait_for_health(worker: Worker, status: int, timeout: float) -> dict:
    """/health's JSON once it answers `status`."""
    code, health = worker.health_within(status, timeout)
    assert code == status, f"/health still {code} {health} after {timeout} s"
    return health


@pytest.mark.slow
def test_records_flowing_through_kill_and_restart_cycles_all_come_out_counted_exactly(tmp_path, scorer):
    env = dict(TABLES_MOVE)
    with LocalBroker() as broker:
        env["KAFKA_BROKER"] = broker.url
        dirs = [tmp_path / "w0", tmp_path / "w1"]
        workers = [Worker(env, d) for d in dirs]
        for w in workers:
            w.wait_ready()
        traffic = Traffic(broker.url, rate=150, samples=read_samples(REPO / "data" / "iris.csv"))
        try:
            for cycle in range(3):
                victim = cycle % 2
                workers[victim].process.kill()
                workers[victim].process.wait()
                if cycle == 1:
                    dirs[victim] = tmp_path / f"w{victim}-fresh"  # a replaced machine: no local state
                workers[victim] = Worker(env, dirs[victim])
                workers[victim].wait_ready()
                missing = traffic.wait_classified(timeout=120)
                assert not missing, (
                    f"cycle {cycle}: {len(missing)} records not classified, e.g. {missing[:5]}\n"
                    f"{whereabouts(broker.url, missing[:5])}\n{report(workers)}"
                )
            traffic.stop_producing()
            missing = traffic.wait_classified(timeout=120)
            health = [w.get("/health")[0] for w in workers]
            sent = set(traffic.sent)
            inputs = {
                m.key: m for m in Kafka(broker.url).read_until("iris", lambda ms: sent <= {m.key for m in ms})
            }
            labels = predicted_labels(scorer, [inputs[key].json() for key in traffic.sent])
            truth = Counter(
                (inputs[key].json()["species"], label, window_start(inputs[key].timestamp, MINUTE_MS))
                for key, label in zip(traffic.sent, labels)
            )
            try:
                counted = counts_reaching(Kafka(broker.url), truth, timeout=120)
            except ShortCounts as short:
                sources = [(inputs[key], label) for key, label in zip(traffic.sent, labels)]
                kafka = Kafka(broker.url)
                deltas = [(m, m.json()) for m in kafka.read_all("iris-window-deltas")]
                changelog = kafka.read_all("iris_app-window-counts-changelog")
                trails = [count_trail(window, sources, deltas, changelog) for window in short.short]
                raise AssertionError(f"{short}\n{''.join(trails)}\n{report(workers)}") from None
        finally:
            traffic.close()
            for w in workers:
                w.stop()
    assert len(traffic.sent) > 1000
    assert not missing, f"{len(missing)} of {len(traffic.sent)} records never classified, e.g. {missing[:5]}"
    assert health == [200, 200]
    assert counted == dict(truth), {
        k: (counted.get(k), truth.get(k))
        for k in counted.keys() | truth.keys()
        if counted.get(k) != truth.get(k)
    }


def report(workers: list[Worker]) -> str:
    """What each worker says of itself: its lag, stalls and expired deltas, its last log lines, and where its
    whole log is (fixtures.Worker keeps it beside its data directory)."""
    parts = []
    for i, worker in enumerate(workers):
        metrics = worker.get("/metrics")[2].decode().splitlines()
        said = [
            line
            for line in metrics
            if line.startswith(("iris_consumer_lag", "iris_partition", "iris_deltas"))
        ]
        parts.append(
            f"--- worker {i} ({worker.log}):\n" + "\n".join(said) + "\n" + "".join(worker.lines[-25:])
        )
    return "\n".join(parts)


def counts_reaching(kafka: Kafka, truth: Counter, timeout: float) -> dict[tuple, int]:
    """The latest published count of each (species, predictedSpecies, startMs), read until every window
    of `truth` has reached its count; if one never does, which windows are short, and by how much."""

    def latest(messages) -> dict[tuple, int]:
        return {tuple(orjson.loads(m.key)): m.json()["count"] for m in messages}

    try:
        return latest(
            kafka.read_until(
                "iris-classified-window-counts",
                lambda ms: all(latest(ms).get(k, 0) >= n for k, n in truth.items()),
                timeout=timeout,
            )
        )
    except AssertionError as slow_or_short:  # say which: a count still short, or a slow worker
        now = latest(kafka.read_all("iris-classified-window-counts"))
        short = {k: (now.get(k, 0), n) for k, n in truth.items() if now.get(k, 0) < n}
        raise ShortCounts(f"{slow_or_short}; (count, truth) of the short windows: {short}", short) from None


class ShortCounts(AssertionError):
    def __init__(self, message: str, short: dict[tuple, tuple[int, int]]) -> None:
        super().__init__(message)
        self.short = short  # (species, predictedSpecies, startMs) -> (count, truth)


def count_trail(
    window: tuple[str, str, int],
    sources: list[tuple[Message, str]],
    all_deltas: list[tuple[Message, dict]],
    changelog: list[Message],
) -> str:
    """Why a window's count is short: its records that no delta carried, and those a delta carried but
    the count skipped (replaying the deltas as steps.add_count does), with the delta that set the mark."""
    species, predicted, start = window
    expected = {
        (m.partition, m.offset)
        for m, label in sources
        if (m.json()["species"], label, window_start(m.timestamp, MINUTE_MS)) == window
    }
    deltas = [(m, d) for m, d in all_deltas if (d["species"], d["predictedSpecies"], d["startMs"]) == window]
    carried, counted, marks, lines = set(), set(), {}, []
    for m, delta in deltas:
        for partition, offsets in delta["offsets"].items():
            p = int(partition)
            carried |= {(p, o) for o in offsets}
            mark, mark_by = marks.get(p, (-1, None))
            skipped = {(p, o) for o in offsets if o <= mark} - counted
            counted |= {(p, o) for o in offsets if o > mark}
            if offsets and max(offsets) > mark:
                marks[p] = (max(offsets), m.offset)
            if skipped:
                lines.append(f"  delta @{m.offset} skipped {sorted(skipped)}: mark {mark}, delta @{mark_by}")
    listing = [
        f"  @{m.offset} t={m.timestamp} "
        + " ".join(f"{p}:{min(o)}-{max(o)}({len(o)})" for p, o in d["offsets"].items() if o)
        for m, d in deltas
    ]
    values = [
        f"  @{m.offset} t={m.timestamp} {m.value[:200]!r}"
        for m in changelog
        if m.key and f"{species}/{predicted}".encode() in m.key and str(start // 1000).encode() in m.key
    ]
    return "\n".join(
        [
            f"--- {window}: {len(expected)} records, {len(carried & expected)} carried by deltas, "
            f"{len(counted & expected)} counted replaying them; carried by no delta: "
            f"{sorted(expected - carried)[:20]}; counted but not expected: {sorted(counted - expected)[:20]}",
            *lines,
            "deltas:",
            *listing[-60:],
            "changelog (last 10):",
            *values[-10:],
            "",
        ]
    )


@pytest.mark.slow
def test_a_worker_cut_off_from_the_broker_says_so_and_afterwards_classifies_every_record(tmp_path):
    broker_port = free_port()
    proxy = Proxy(broker_port)
    with LocalBroker(broker_port, advertised_port=proxy.port) as broker:
        worker = Worker({"KAFKA_BROKER": broker.url, "IRIS_GENERATOR_INTERVAL": "0"}, tmp_path / "w")
        worker.wait_ready()
        traffic = Traffic(broker.url, rate=100, samples=read_samples(REPO / "data" / "iris.csv"))
        try:
            traffic.wait_count(200, timeout=60)
            proxy.cut()
            produced_at_cut = traffic.produced
            cut_off = wait_for_health(worker, 503, timeout=30)
            time.sleep(OUTAGE_S)
            assert worker.process.poll() is None, "the worker died:\n" + "".join(worker.lines[-30:])
            proxy.restore()
            produced_at_restore = traffic.produced
            wait_for_health(worker, 200, timeout=120)
            traffic.stop_producing()
            missing = traffic.wait_classified(timeout=120)
        finally:
            traffic.close()
            worker.stop()
    # Records flowed before, during and after the outage, and the broker took every one.
    assert 0 < produced_at_cut < produced_at_restore < len(traffic.sent) == traffic.produced
    assert cut_off["reason"].startswith("cannot reach the broker"), cut_off
    assert not missing, f"{len(missing)} of {len(traffic.sent)} records never classified, e.g. {missing[:5]}"
