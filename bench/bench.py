"""Benchmark: the app's worker(s) against a plain aiokafka loop doing the same work.

    .venv/bin/python bench/bench.py [--broker tansu|kafka] [--records 200000] [--repeats 1] [--rate 2000]
                                    [--beside CHECKOUT]

For each implementation, on a fresh broker (tansu, or Apache Kafka with --broker kafka):
pre-produce N records (4 partitions), start it, and time its outputs (sustained records/s between 5 % and
95 % of them, start-up to first output, CPU seconds, peak RSS), then check them
(N classified, labels equal direct scoring, latest counts sum to N). A paced run
(--rate records/s for --seconds, after WARM_UP_S seconds at that rate not measured) gives
the latency from produce to classified output. Prints one table with medians over --repeats,
and the app/reference ratio.
--beside runs one worker of another checkout of the repository too (another
branch, say), in turn with the others: its ratio to the same reference loop, measured
in the same run, is the like-for-like comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka.admin import AIOKafkaAdminClient
from kafka_io import PARTITIONS, Reader, create_topics, latest_counts_sum, produce, records
from processes import REPO, Processes

from iris_app import packages, registry
from iris_app.broker import LocalBroker
from iris_app.kafka_server import KafkaCluster
from iris_app.models import FEATURES
from iris_app.scoring import Scorer
from iris_app.settings import Settings

SHADOW = REPO / "tests" / "models" / "second"  # a second real MOJO, for the shadow run
IMPLEMENTATIONS = {
    "app, 1 worker": ("app", 1),
    "app, 2 workers": ("app", 2),
    "app, 1 worker, shadow model": ("app+shadow", 1),
    "reference loop": ("reference", 1),
}


BROKERS = {"tansu": LocalBroker, "kafka": KafkaCluster}
# One worker restores no table in a benchmark: on tansu it sends Faust's records in Faust's own batches,
# not one per batch as it otherwise does there (docs/SPEC.md, "The local broker").
TANSU_BATCHES = {"IRIS_PRODUCER_MAX_BATCH_SIZE": "16384"}
# The paced run's first seconds are not measured: a fresh broker and worker (JVMs and all) are still
# warming up, and a latency percentile is of a running system (start-up is its own column).
WARM_UP_S = 3
GROUP = "iris_app"  # the workers' consumer group: the Faust app's id


def fresh_broker(kind: str) -> LocalBroker | KafkaCluster:
    return BROKERS[kind]()


@dataclass
class Result:
    throughput: list[float] = field(default_factory=list)
    startup: list[float] = field(default_factory=list)
    counts_lag: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    duplicates: list[float] = field(default_factory=list)  # outputs beyond one per record
    problems: list[str] = field(default_factory=list)


async def throughput_run(
    name: str,
    kind: str,
    workers: int,
    n: int,
    expected: dict,
    result: Result,
    broker_kind: str,
    checkout: Path,
) -> None:
    with fresh_broker(broker_kind) as broker, tempfile.TemporaryDirectory() as datadir:
        bootstrap = broker.bootstrap
        await create_topics(bootstrap)
        batch = records(n)
        await produce(bootstrap, batch)
        await set_shadow(kind, bootstrap)
        env = TANSU_BATCHES if broker_kind == "tansu" else {}
        procs = Processes(kind, workers, broker.url, Path(datadir), checkout, env)
        try:
            async with Reader(bootstrap, "iris-classified") as out:
                finished = await out.read_until(  # every record, however many came out twice
                    lambda ms: len(out.keys) >= n, timeout=max(600, n / 200), procs=procs
                )
            async with Reader(bootstrap, "iris-classified-window-counts") as counts:
                await counts.read_until(lambda ms: latest_counts_sum(ms) >= n, timeout=120, procs=procs)
            counted = time.monotonic()
            cpu, rss = procs.stop()
        finally:
            for proc in procs.procs:
                if proc.returncode is None:
                    proc.kill()
        if not finished:
            result.problems.append(f"{name}: only {len(out.keys)} of {n} classified")
            return
        t5, t95 = out.firsts[int(0.05 * n)], out.firsts[int(0.95 * n) - 1]
        result.throughput.append(0.9 * n / (t95 - t5))
        result.startup.append(out.firsts[0] - procs.started)
        result.counts_lag.append(counted - out.firsts[-1])
        result.duplicates.append(len(out.messages) - n)
        result.cpu.append(cpu)
        result.rss_mb.append(rss)
        labels = {m.key: orjson.loads(m.value)["predictedSpecies"] for m in out.messages}
        if len(labels) != n:
            result.problems.append(f"{name}: {len(labels)} distinct keys classified, not {n}")
        wrong = sum(labels.get(k) != v for k, v in expected.items())
        if wrong:
            result.problems.append(f"{name}: {wrong} labels differ from direct scoring")
        if latest_counts_sum(counts.messages) != n:
            result.problems.append(
                f"{name}: latest counts sum to {latest_counts_sum(counts.messages)}, not {n}"
            )


async def set_shadow(kind: str, bootstrap: str) -> None:
    """For "app+shadow": a second model (tests/models/second) published as the shadow before start."""
    if kind == "app+shadow":
        model_id, package = packages.pack(SHADOW)
        roles = registry.Roles(serving=None, shadow=model_id)
        await registry.publish(
            Settings.from_env({"KAFKA_BROKER": bootstrap}),
            [(model_id.encode(), package), (registry.SERVING_KEY, roles.encode())],
        )


async def group_stable(bootstrap: str, members: int, timeout: float = 120) -> bool:
    """Whether the workers' group is stable with `members` members within `timeout`. The paced run of
    several workers starts once the last has joined: that rebalance is their start-up, not latency."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # a group's state has no event to wait on: ask again
            [response] = await admin.describe_consumer_groups([GROUP])
            _, _, state, _, _, described = response.groups[0]
            if state == "Stable" and len(described) == members:
                return True
            await asyncio.sleep(0.5)
        return False
    finally:
        await admin.close()


async def latency_run(
    name: str,
    kind: str,
    workers: int,
    rate: float,
    seconds: float,
    result: Result,
    broker_kind: str,
    checkout: Path,
) -> None:
    with fresh_broker(broker_kind) as broker, tempfile.TemporaryDirectory() as datadir:
        bootstrap = broker.bootstrap
        await create_topics(bootstrap)
        await set_shadow(kind, bootstrap)
        env = TANSU_BATCHES if broker_kind == "tansu" else {}
        procs = Processes(kind, workers, broker.url, Path(datadir), checkout, env)
        try:
            async with Reader(bootstrap, "iris-classified") as out:
                await produce(bootstrap, records(1, seed=1))  # warm up: wait until it answers
                if not await out.read_until(lambda ms: len(ms) >= 1, timeout=120, procs=procs):
                    result.problems.append(f"{name}: no output in the paced run")
                    return
                if workers > 1 and not await group_stable(bootstrap, workers):
                    result.problems.append(f"{name}: the {workers} workers' group never settled")
                    return
                n = int(rate * (WARM_UP_S + seconds))
                measured_from = (time.time() + WARM_UP_S) * 1000
                producing = asyncio.create_task(produce(bootstrap, records(n), rate=rate))
                await out.read_until(
                    lambda ms: len(ms) >= n + 1, timeout=WARM_UP_S + seconds + 60, procs=procs
                )
                await producing
        finally:
            procs.stop()
        latencies = sorted(
            (time.time() - (time.monotonic() - arrival)) * 1000 - m.timestamp
            for m, arrival in zip(out.messages[1:], out.arrivals[1:])
            if m.timestamp >= measured_from
        )
        result.p50_ms.append(latencies[len(latencies) // 2])
        result.p99_ms.append(latencies[int(len(latencies) * 0.99)])


def median(values: list[float]) -> str:
    return f"{statistics.median(values):,.1f}" if values else "-"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=list(BROKERS), default="tansu")
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--rate", type=float, default=2000, help="records/s of the paced latency run")
    parser.add_argument("--seconds", type=float, default=15, help="length of the paced run")
    parser.add_argument("--only", choices=list(IMPLEMENTATIONS), action="append")
    parser.add_argument("--beside", type=Path, action="append", default=[], help="another checkout's app")
    args = parser.parse_args()

    scorer = Scorer(REPO / "mojo")
    batch = records(args.records)
    rows = [orjson.loads(v) for _, v in batch]
    labels = [p.label for p in scorer.predict([[r[m] for m in FEATURES] for r in rows])]
    expected = {key: label for (key, _), label in zip(batch, labels)}

    implementations = {name: (*IMPLEMENTATIONS[name], REPO) for name in args.only or IMPLEMENTATIONS}
    beside = {f"app, 1 worker, {checkout}": checkout for checkout in args.beside}
    implementations |= {name: ("app", 1, checkout.resolve()) for name, checkout in beside.items()}
    results = {name: Result() for name in implementations}
    for repeat in range(args.repeats):
        for name, result in results.items():
            kind, workers, checkout = implementations[name]
            print(
                f"[{repeat + 1}/{args.repeats}] {name}: {args.records:,} records ...",
                file=sys.stderr,
                flush=True,
            )
            await throughput_run(name, kind, workers, args.records, expected, result, args.broker, checkout)
            print(
                f"[{repeat + 1}/{args.repeats}] {name}: paced at {args.rate:,.0f}/s ...",
                file=sys.stderr,
                flush=True,
            )
            await latency_run(name, kind, workers, args.rate, args.seconds, result, args.broker, checkout)

    print(
        f"\n{args.broker}: {args.records:,} records, {PARTITIONS} partitions,"
        f" medians of {args.repeats} run(s); latency paced at {args.rate:,.0f} records/s"
        f" after a {WARM_UP_S} s warm-up\n"
    )
    header = [
        "implementation",
        "records/s",
        "start-up s",
        "counts lag s",
        "CPU s",
        "CPU µs/record",
        "peak RSS MB",
        "p50 ms",
        "p99 ms",
        "classified twice",
    ]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for name, r in results.items():
        print(
            f"| {name} | {median(r.throughput)} | {median(r.startup)} | {median(r.counts_lag)}"
            f" | {median(r.cpu)} | {median([1e6 * c / args.records for c in r.cpu])} | {median(r.rss_mb)}"
            f" | {median(r.p50_ms)} | {median(r.p99_ms)} | {median(r.duplicates)} |"
        )
    app, ref = results.get("app, 1 worker"), results.get("reference loop")
    if app and ref and app.throughput and ref.throughput:
        ratio = statistics.median(app.throughput) / statistics.median(ref.throughput)
        print(f"\napp (1 worker) / reference: {ratio:.2f}")
    for name, checkout in beside.items():
        other = results[name]
        if ref and other.throughput and ref.throughput:
            ratio = statistics.median(other.throughput) / statistics.median(ref.throughput)
            print(f"app (1 worker) of {checkout} / the same reference: {ratio:.2f}")
    two = results.get("app, 2 workers")
    if app and two and app.throughput and two.throughput:
        ratio = statistics.median(two.throughput) / statistics.median(app.throughput)
        print(f"2 workers / 1 worker: {ratio:.2f}")
    shadow = results.get("app, 1 worker, shadow model")
    if app and shadow and app.throughput and shadow.throughput:
        ratio = statistics.median(shadow.throughput) / statistics.median(app.throughput)
        print(f"with a shadow model / without (1 worker): {ratio:.2f}")
    problems = [p for r in results.values() for p in r.problems]
    print("\ncorrectness: " + ("all checks passed" if not problems else "\n  ".join(["FAILED", *problems])))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    asyncio.run(main())
