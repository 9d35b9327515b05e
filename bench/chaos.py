"""Chaos: two workers with records flowing, disrupted N times; prints what was lost, duplicated or stuck.

    .venv/bin/python bench/chaos.py [--cycles 50] [--rate 100]

Each cycle disrupts one of two workers (taking turns) and waits until every record
sent so far comes out classified: SIGKILL or SIGTERM, then a restart on the same
or on a fresh data directory, or a broker outage (a TCP proxy between the workers
and the broker drops every connection for 20 s). At the end it stops producing and
waits for the rest, then prints records lost and duplicated, partitions stalled
(records left to read and none read for 60 s), workers whose /health is not 200
within 60 s of the end, and the time each cycle took to
recover (all records sent before it classified). Not a test: it takes minutes.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from support.kafka import whereabouts  # noqa: E402
from support.proxy import Proxy  # noqa: E402
from support.traffic import Traffic  # noqa: E402
from support.worker import Worker  # noqa: E402

from iris_app.broker import LocalBroker, free_port  # noqa: E402
from iris_app.samples import read_samples  # noqa: E402

ACTIONS = [f"{kill}, {where} datadir" for where in ("same", "fresh") for kill in ("SIGKILL", "SIGTERM")]
OUTAGE = "broker outage, 20 s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--rate", type=float, default=100.0, help="records/s produced")
    parser.add_argument("--down", type=float, default=6.0, help="seconds a stopped worker stays down")
    args = parser.parse_args()
    # The outage makes the traffic's own clients complain at length.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    broker_port = free_port()
    proxy = Proxy(broker_port)
    tmp = Path(tempfile.mkdtemp(prefix="iris-chaos-"))
    with LocalBroker(broker_port, advertised_port=proxy.port) as broker:
        env = {
            "KAFKA_BROKER": broker.url,
            "IRIS_GENERATOR_INTERVAL": "0",
            "IRIS_PRODUCER_MAX_BATCH_SIZE": "1",  # tables move between the workers: tansu needs it (SPEC)
        }
        dirs = [tmp / "w0-0", tmp / "w1-0"]
        workers = [Worker(env, d) for d in dirs]
        for w in workers:
            w.wait_ready()
        traffic = Traffic(broker.url, args.rate, read_samples(REPO / "data" / "iris.csv"))
        recoveries: dict[str, list[float]] = {}
        failures = 0
        actions = itertools.cycle([*ACTIONS, OUTAGE])
        try:
            for cycle in range(args.cycles):
                action, i = next(actions), cycle % 2
                disrupted = time.monotonic()
                if action == OUTAGE:
                    proxy.cut()
                    time.sleep(20)  # the outage itself
                    proxy.restore()
                else:
                    w = workers[i]
                    w.process.send_signal(signal.SIGKILL if action.startswith("SIGKILL") else signal.SIGTERM)
                    if w.process.wait(timeout=120) not in (0, -signal.SIGKILL):
                        print(f"cycle {cycle}: worker {i} exited with {w.process.returncode}", flush=True)
                    time.sleep(args.down)  # the worker stays down a while, as a crashed one would
                    if "fresh" in action:
                        dirs[i] = tmp / f"w{i}-{cycle + 1}"
                    workers[i] = Worker(env, dirs[i])
                    workers[i].wait_ready(timeout=180)
                missing = traffic.wait_classified(timeout=240)
                took = time.monotonic() - disrupted
                recoveries.setdefault(action, []).append(took)
                failures += bool(missing)
                print(
                    f"cycle {cycle + 1}/{args.cycles}: {action} (worker {i}): recovered in {took:.1f} s"
                    + (f", {len(missing)} records still missing" if missing else ""),
                    flush=True,
                )
            traffic.stop_producing()
            missing = traffic.wait_classified(timeout=300)
            health = [w.health_within(200, 60) for w in workers]  # a rebalance may follow the last cycle
            stalled = [f"{w.url}: {body}" for w, (status, body) in zip(workers, health) if status != 200]
            if missing:
                print(f"missing, e.g.:\n{whereabouts(traffic.bootstrap, missing[:10])}")
        finally:
            traffic.close()
            for w in workers:
                w.stop()

    sent = len(traffic.sent)
    duplicated = sum(n - 1 for n in traffic.classified.values() if n > 1)
    print(f"\n{args.cycles} cycles, {sent} records sent at {args.rate:.0f}/s")
    print(f"lost (never classified): {len(missing)}")
    print(f"classified more than once: {duplicated} ({100 * duplicated / max(sent, 1):.2f} %)")
    print(f"cycles not recovered within 240 s: {failures}; workers not healthy at the end: {len(stalled)}")
    for line in stalled:
        print(f"  {line}")
    print("| disruption | cycles | recovery s (median) | max |")
    print("|---|---|---|---|")
    for action, times in recoveries.items():
        print(f"| {action} | {len(times)} | {statistics.median(times):.1f} | {max(times):.1f} |")
    sys.exit(1 if missing or failures else 0)


if __name__ == "__main__":
    main()
