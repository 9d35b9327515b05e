"""Backlog: one worker working off N pre-produced records; its records/s and CPU per record.

    .venv/bin/python bench/backlog.py [--records 150000] [--repeats 3] [CHECKOUT ...]

Steadier than bench.py's throughput on a shared machine: the worker's and the
broker's CPU seconds come from /proc, and the time runs from the first record
classified to the last (the worker's `iris_records_classified_total`). Given
other checkouts of the repository (another branch, say), it runs each in turn,
alternating, every one against a fresh broker with the same records. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from kafka_io import create_topics, produce, records  # noqa: E402
from support.worker import Worker  # noqa: E402

from iris_app.broker import LocalBroker  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def classified(worker: Worker) -> float:
    body = worker.get("/metrics")[2].decode()
    return sum(
        float(line.split()[-1])
        for line in body.splitlines()
        if line.startswith("iris_records_classified_total")
    )


def run(checkout: Path, n: int, tmp: Path) -> str:
    with LocalBroker() as broker:
        bootstrap = broker.url.removeprefix("kafka://")
        asyncio.run(create_topics(bootstrap))
        asyncio.run(produce(bootstrap, records(n)))
        worker = Worker({"KAFKA_BROKER": broker.url, "IRIS_GENERATOR_INTERVAL": "0"}, tmp / "w", checkout)
        try:
            worker.wait_ready()
            while (done := classified(worker)) == 0:
                time.sleep(0.05)
            start, first = time.monotonic(), done
            cpu, broker_cpu = cpu_seconds(worker.process.pid), cpu_seconds(broker.pid)
            while (done := classified(worker)) < n:
                time.sleep(0.2)
            seconds = time.monotonic() - start
            cpu = cpu_seconds(worker.process.pid) - cpu
            broker_cpu = cpu_seconds(broker.pid) - broker_cpu
        finally:
            worker.stop()
    counted = n - first
    return (
        f"{checkout}: {counted / seconds:,.0f} records/s, worker CPU {1e6 * cpu / counted:.1f} µs"
        f" and broker CPU {1e6 * broker_cpu / counted:.1f} µs per record"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkouts", nargs="*", type=Path, default=[REPO])
    parser.add_argument("--records", type=int, default=150_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for _ in range(args.repeats):
        for checkout in args.checkouts:
            tmp = Path(tempfile.mkdtemp(prefix="iris-backlog-"))
            print(run(checkout.resolve(), args.records, tmp), flush=True)


if __name__ == "__main__":
    main()
