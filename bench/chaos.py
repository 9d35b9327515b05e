"""Chaos: two workers with records flowing, disrupted N times; prints what was lost, duplicated or stuck.

    .venv/bin/python bench/chaos.py [--broker kafka|tansu] [--cycles 50] [--rate 100] [--down 6]

Each cycle disrupts one thing, taking turns. On either broker, one of the two workers (they alternate):
SIGKILL or SIGTERM, down `--down` seconds and until the other worker has taken its partitions over, then a
restart (on its web port) on the same or on a fresh data directory. The hand-over is done when the other
worker's rebalance has begun and every record sent until then is classified, and on every partition one
sent after it: the other worker reads the stopped one's partitions (records sent just after a SIGTERM can
be the stopped worker's own last ones). It has recovered when every record sent until the worker is back
is classified. The broker's disruptions:

- `--broker kafka` (the default: three Apache Kafka nodes in KRaft mode, topics replicated three times):
  SIGKILL of the leader of an `iris` partition, SIGKILL of the group coordinator's broker, and a broker
  stopped (SIGTERM, a controlled shutdown) for 30 s. It has recovered, the hand-over done, when the
  cluster has given the broker's partitions new leaders and every record produced until then is
  classified (those that waited for a new leader too). The broker then starts again; the cycle ends when
  it has caught up and every record sent so far is classified.
- `--broker tansu` (one memory-only broker): an outage, a TCP proxy between the workers and the broker
  dropping every connection for 20 s; it has recovered when every record sent until then is classified.

Each cycle prints its hand-over and recovery times and its share of records classified twice
(classifications during the cycle that repeat a record, per record sent during it). At the end it stops
producing and waits for the rest, then prints records lost and duplicated, cycles stalled (not recovered
within 240 s), workers whose /health is not 200 within 60 s of the end, and a Markdown table per
disruption. Not a test: it takes minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from support.cluster_ops import bring_back, coordinator_of, handed_over, leader_of  # noqa: E402
from support.kafka import whereabouts  # noqa: E402
from support.proxy import Proxy  # noqa: E402
from support.traffic import Traffic  # noqa: E402
from support.worker import Worker  # noqa: E402

from iris_app.broker import LocalBroker, free_port  # noqa: E402
from iris_app.kafka_server import KafkaCluster  # noqa: E402
from iris_app.samples import read_samples  # noqa: E402
from iris_app.settings import Settings  # noqa: E402

WORKER_ACTIONS = [
    f"{kill}, {where} datadir" for where in ("same", "fresh") for kill in ("SIGKILL", "SIGTERM")
]
OUTAGE = "broker outage, 20 s"
LEADER, COORDINATOR, STOPPED = (
    "partition leader killed",
    "group coordinator killed",
    "broker stopped for 30 s",
)
ACTIONS = {"kafka": [*WORKER_ACTIONS, LEADER, COORDINATOR, STOPPED], "tansu": [*WORKER_ACTIONS, OUTAGE]}
TIMEOUT = 240  # seconds a cycle has to recover


@dataclass
class Outcome:
    """One cycle: what it disrupted, how long it took to recover, and the records missing if it did not."""

    target: str
    took: float
    missing: list[bytes]
    handed_over: float | None = None  # seconds until the hand-over was done; None: none, or not in time


class Chaos:
    """Two workers on `broker` with records flowing through them, and the disruptions of a cycle."""

    def __init__(
        self,
        broker: LocalBroker | KafkaCluster,
        proxy: Proxy | None,
        env: dict[str, str],
        tmp: Path,
        args: argparse.Namespace,
    ) -> None:
        self.broker, self.proxy, self.env, self.tmp, self.down = broker, proxy, env, tmp, args.down
        self.dirs = [tmp / "w0-0", tmp / "w1-0"]
        self.workers = [Worker(env, d) for d in self.dirs]
        for w in self.workers:
            w.wait_ready()
        self.traffic = Traffic(broker.url, args.rate, read_samples(REPO / "data" / "iris.csv"))

    def disrupt(self, action: str, cycle: int) -> Outcome:
        """The cycle's disruption, the recovery from it, and its end (the worker or the broker back)."""
        if action in WORKER_ACTIONS:
            return self._worker(action, cycle)
        if action == OUTAGE:
            return self._outage()
        return self._broker(action, cycle // len(ACTIONS["kafka"]))

    def _recovered(self, target: str, since: float) -> Outcome:
        missing = self.traffic.wait_classified(timeout=TIMEOUT)
        return Outcome(target, time.monotonic() - since, missing)

    def _worker(self, action: str, cycle: int) -> Outcome:
        i = cycle % 2
        w = self.workers[i]
        survivor = self.workers[1 - i]
        seen, disrupted = len(survivor.lines), time.monotonic()
        w.process.send_signal(signal.SIGKILL if action.startswith("SIGKILL") else signal.SIGTERM)
        # Down while the other worker takes its partitions over (a killed one's after its session timeout).
        handed_over = None
        if self.traffic.wait_taken_over(survivor, seen, timeout=TIMEOUT):
            handed_over = time.monotonic() - disrupted
        if w.process.wait(timeout=120) not in (0, -signal.SIGKILL):
            print(f"cycle {cycle + 1}: worker {i} exited with {w.process.returncode}", flush=True)
        time.sleep(max(0.0, disrupted + self.down - time.monotonic()))  # down a while, as a crashed one would
        if "fresh" in action:
            self.dirs[i] = self.tmp / f"w{i}-{cycle + 1}"
        self.workers[i] = Worker(self.env, self.dirs[i], port=w.port)  # a machine restarted keeps its address
        self.workers[i].wait_ready(timeout=180)
        recovered = self._recovered(f"worker {i}", disrupted)
        recovered.handed_over = handed_over
        return recovered

    def _outage(self) -> Outcome:
        disrupted = time.monotonic()
        self.proxy.cut()
        time.sleep(20)  # the outage itself
        self.proxy.restore()
        return self._recovered("tansu", disrupted)

    def _broker(self, action: str, round_: int) -> Outcome:
        """Take a broker away, time the hand-over, and bring the broker back. In the `round_`th round of the
        disruptions, the broker is the leader of iris[round_ % partitions], the group coordinator's, or the
        (round_ % 3 + 1)th node, stopped."""
        cluster = self.broker
        if action == LEADER:
            node = leader_of(cluster, "iris", round_ % Settings().partitions)
        elif action == COORDINATOR:
            node = coordinator_of(cluster)
        else:
            node = cluster.nodes[round_ % cluster.size]
        disrupted = time.monotonic()
        if action == STOPPED:
            cluster.stop_node(node)
        else:
            cluster.kill(node)
        handed_over(cluster, node, timeout=TIMEOUT)
        missing = self.traffic.wait_produced(self.traffic.produced, timeout=TIMEOUT)
        took = time.monotonic() - disrupted
        if action == STOPPED:
            time.sleep(max(0.0, disrupted + 30 - time.monotonic()))  # the broker stays away 30 s
        bring_back(cluster, node)
        return Outcome(
            f"node {node.id}",
            took,
            missing or self.traffic.wait_classified(timeout=TIMEOUT),
            None if missing else took,
        )

    def close(self) -> None:
        self.traffic.close()
        for w in self.workers:
            w.stop()


def start_broker(
    kind: str, tmp: Path, stack: contextlib.ExitStack
) -> tuple[LocalBroker | KafkaCluster, Proxy | None, dict[str, str]]:
    """The broker, a proxy in front of it (tansu), and the workers' settings for it."""
    if kind == "kafka":
        return stack.enter_context(KafkaCluster(3, folder=tmp / "cluster")), None, {}
    broker_port = free_port()
    proxy = Proxy(broker_port)
    broker = stack.enter_context(LocalBroker(broker_port, advertised_port=proxy.port))
    return broker, proxy, {"IRIS_PRODUCER_MAX_BATCH_SIZE": "1"}  # tables move between the workers (SPEC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--broker", choices=list(ACTIONS), default="kafka")
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--rate", type=float, default=100.0, help="records/s produced")
    parser.add_argument("--down", type=float, default=6.0, help="seconds a stopped worker stays down")
    args = parser.parse_args()
    # The disruptions make the traffic's own clients complain at length.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    tmp = Path(tempfile.mkdtemp(prefix="iris-chaos-"))
    print(f"logs in {tmp}", flush=True)
    # disruption -> (hand-over s or None, recovery s, duplicates, sent)
    cycles: dict[str, list[tuple[float | None, float, int, int]]] = {}
    failures = 0
    with contextlib.ExitStack() as stack:
        broker, proxy, settings = start_broker(args.broker, tmp, stack)
        env = {"KAFKA_BROKER": broker.url, "IRIS_GENERATOR_INTERVAL": "0", **settings}
        chaos = Chaos(broker, proxy, env, tmp, args)
        traffic = chaos.traffic
        try:
            actions = itertools.cycle(ACTIONS[args.broker])
            for cycle in range(args.cycles):
                action = next(actions)
                sent, duplicated = len(traffic.sent), traffic.duplicated()
                outcome = chaos.disrupt(action, cycle)
                sent, duplicated = len(traffic.sent) - sent, traffic.duplicated() - duplicated
                cycles.setdefault(action, []).append((outcome.handed_over, outcome.took, duplicated, sent))
                failures += bool(outcome.missing)
                handed = (
                    "" if outcome.handed_over is None else f"handed over in {outcome.handed_over:.1f} s, "
                )
                print(
                    f"cycle {cycle + 1}/{args.cycles}: {action} ({outcome.target}): {handed}recovered in"
                    f" {outcome.took:.1f} s; {100 * duplicated / max(sent, 1):.1f} % classified twice"
                    + (f", {len(outcome.missing)} records still missing" if outcome.missing else ""),
                    flush=True,
                )
            traffic.stop_producing()
            missing = traffic.wait_classified(timeout=300)
            health = [
                w.health_within(200, 60) for w in chaos.workers
            ]  # a rebalance may follow the last cycle
            unhealthy = [
                f"{w.url}: {body}" for w, (status, body) in zip(chaos.workers, health) if status != 200
            ]
            if missing:
                print(f"missing, e.g.:\n{whereabouts(traffic.bootstrap, missing[:10])}")
        finally:
            chaos.close()

    sent, duplicated = len(traffic.sent), traffic.duplicated()
    print(f"\n{args.broker}: {args.cycles} cycles, {sent} records sent at {args.rate:.0f}/s")
    if traffic.failed:
        print(f"sends failed (never acknowledged, not counted as sent): {len(traffic.failed)}")
    print(f"lost (never classified): {len(missing)}")
    print(f"classified more than once: {duplicated} ({100 * duplicated / max(sent, 1):.2f} %)")
    print(f"stalled (cycles not recovered within {TIMEOUT} s): {failures}")
    print(f"unhealthy (workers whose /health is not 200 at the end): {len(unhealthy)}")
    for line in unhealthy:
        print(f"  {line}")
    print(
        "\n| disruption | cycles | median hand-over s | median recovery s | max recovery s | duplicates % |"
    )
    print("|---|---|---|---|---|---|")
    for action, results in cycles.items():
        handed = [h for h, _, _, _ in results if h is not None]
        median_handed = f"{statistics.median(handed):.1f}" if handed else "–"
        times = [took for _, took, _, _ in results]
        share = 100 * sum(d for _, _, d, _ in results) / max(sum(s for _, _, _, s in results), 1)
        median, longest = statistics.median(times), max(times)
        print(f"| {action} | {len(results)} | {median_handed} | {median:.1f} | {longest:.1f} | {share:.1f} |")
    sys.exit(1 if missing or failures else 0)


if __name__ == "__main__":
    main()
