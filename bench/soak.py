"""Soak: a worker with short windows and records flowing for N minutes: does its state stay bounded?

    .venv/bin/python bench/soak.py [--minutes 10] [--window 2] [--grace 10] [--rate 500]

Every 30 s it prints the worker's resident memory, its RocksDB disk use, the
windows its count table holds (from /counts/), and the count table's changelog:
records written in all, and the keys a compacted topic keeps (latest record not
a tombstone; tansu, memory-only, does not compact, so that is the figure that
matters). With windows expiring by event time, all but the records written
level off. Not a test: it takes minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import orjson  # noqa: E402
from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: E402
from support.worker import Worker  # noqa: E402

from iris_app.broker import LocalBroker  # noqa: E402
from iris_app.settings import Settings  # noqa: E402

CHANGELOG = "iris_app-window-counts-changelog"


class Changelog:
    """Reads the count table's changelog as it grows: records in all, and the latest value per key."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.records = 0
        self.latest: dict[bytes, bool] = {}  # key -> its latest record holds a value
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=asyncio.run, args=(self.read(),), daemon=True)
        self.thread.start()

    async def read(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, auto_offset_reset="earliest")
        await consumer.start()
        try:
            consumer.assign([TopicPartition(CHANGELOG, p) for p in range(Settings().partitions)])
            while not self.stopping.is_set():
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    self.records += len(batch)
                    self.latest.update((m.key, m.value is not None) for m in batch)
        finally:
            await consumer.stop()

    @property
    def live_keys(self) -> int:
        return sum(self.latest.values())


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--window", type=int, default=2, help="IRIS_WINDOW_SECONDS")
    parser.add_argument("--grace", type=int, default=10, help="IRIS_WINDOW_GRACE_SECONDS")
    parser.add_argument("--rate", type=float, default=500, help="generated records/s")
    parser.add_argument("--every", type=float, default=30, help="seconds between two lines")
    args = parser.parse_args()

    datadir = Path(tempfile.mkdtemp(prefix="iris-soak-")) / "worker"
    with LocalBroker() as broker:
        env = {
            "KAFKA_BROKER": broker.url,
            "IRIS_WINDOW_SECONDS": str(args.window),
            "IRIS_WINDOW_GRACE_SECONDS": str(args.grace),
            "IRIS_GENERATOR_INTERVAL": str(1 / args.rate),
        }
        worker = Worker(env, datadir)
        try:
            worker.wait_ready()
            changelog = Changelog(broker.url.removeprefix("kafka://"))
            print(f"{args.window} s windows, {args.grace} s grace, {args.rate:.0f}/s, {args.minutes} min")
            print("| minute | RSS MB | RocksDB MB | windows in table | changelog records | live keys |")
            print("|---|---|---|---|---|---|")
            started = time.monotonic()
            while (elapsed := time.monotonic() - started) < args.minutes * 60:
                time.sleep(args.every)  # a sample every --every seconds
                status, _, body = worker.get("/counts/")
                windows = len({c["startMs"] for c in orjson.loads(body)}) if status == 200 else "?"
                minute, rss = (elapsed + args.every) / 60, rss_mb(worker.process.pid)
                print(
                    f"| {minute:.1f} | {rss:.0f} | {disk_mb(datadir):.1f} | {windows}"
                    f" | {changelog.records} | {changelog.live_keys} |",
                    flush=True,
                )
            changelog.stopping.set()
        finally:
            worker.stop()


if __name__ == "__main__":
    main()
