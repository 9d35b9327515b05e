"""A worker cut off from the broker says so, outlives the outage, and afterwards classifies every record."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from support.checkout import REPO
from support.proxy import Proxy
from support.traffic import Traffic
from support.worker import QUICK_REBALANCE, Worker

from iris_app.broker import free_port
from iris_app.kafka_server import KafkaCluster
from iris_app.samples import read_samples

# Two session timeouts: the worker's membership of the group lapses while it is cut off.
OUTAGE_S = 2 * float(QUICK_REBALANCE["BROKER_SESSION_TIMEOUT"])


@dataclass
class Outage:
    cut_off: tuple[int, dict]  # /health's status and JSON once it answers 503, or 30 s into the outage
    status: int | None  # the worker's exit status at the end of the outage; None: running
    last_lines: str
    restored: tuple[int, dict]  # /health's status and JSON once it answers 200, or 120 s after the outage
    produced_at_cut: int  # records handed to the producer when the outage began
    produced_at_restore: int  # and when it ended
    produced: int  # and in all
    sent: int  # records the broker took
    missing: list[bytes]  # records not classified within 120 s of the end of the traffic


@pytest.fixture(scope="session")
def outage(tmp_path_factory: pytest.TempPathFactory) -> Outage:
    """TestOutage's scenario, run once for all its tests (conftest.py)."""
    broker_port = free_port()
    proxy = Proxy(broker_port)
    with KafkaCluster(port=broker_port, advertised_port=proxy.port) as broker:
        datadir = tmp_path_factory.mktemp("outage") / "w"
        worker = Worker({"KAFKA_BROKER": broker.url, "IRIS_GENERATOR_INTERVAL": "0"}, datadir)
        traffic = None
        try:
            worker.wait_ready()
            traffic = Traffic(broker.url, rate=100, samples=read_samples(REPO / "data" / "iris.csv"))
            traffic.wait_count(200, timeout=60)
            proxy.cut()
            produced_at_cut = traffic.produced
            cut_off = worker.health_within(503, timeout=30)
            time.sleep(OUTAGE_S)
            status, last_lines = worker.process.poll(), "".join(worker.lines[-30:])
            proxy.restore()
            produced_at_restore = traffic.produced
            restored = worker.health_within(200, timeout=120)
            traffic.stop_producing()
            missing = traffic.wait_classified(timeout=120)
        finally:
            if traffic:
                traffic.close()
            worker.stop()
    return Outage(
        cut_off,
        status,
        last_lines,
        restored,
        produced_at_cut,
        produced_at_restore,
        traffic.produced,
        len(traffic.sent),
        missing,
    )


@pytest.mark.slow
class TestOutage:
    """One worker, whose connections to its broker pass through a TCP proxy, and records flowing at 100 a
    second. Once 200 are classified, the proxy drops every connection and refuses new ones for two session
    timeouts; then it lets them through again, and the traffic stops."""

    def test_health_says_the_broker_is_out_of_reach(self, outage: Outage):
        status, health = outage.cut_off
        assert status == 503 and health.get("reason", "").startswith("cannot reach the broker"), (
            f"/health 30 s into the outage: {status} {health}, not 503 'cannot reach the broker ...'"
        )

    def test_the_worker_outlives_the_outage(self, outage: Outage):
        assert outage.status is None, f"the worker exited with {outage.status}:\n{outage.last_lines}"

    def test_health_recovers_after_the_outage(self, outage: Outage):
        status, health = outage.restored
        assert status == 200, f"/health 120 s after the outage: {status} {health}, not 200"

    def test_records_flowed_before_during_and_after(self, outage: Outage):
        """Records are produced before, during and after the outage, and the broker takes every one."""
        at_cut, at_restore, sent, produced = (
            outage.produced_at_cut,
            outage.produced_at_restore,
            outage.sent,
            outage.produced,
        )
        assert 0 < at_cut < at_restore < sent == produced, (
            f"produced at the cut {at_cut}, at the restore {at_restore}, sent {sent}, produced {produced}: "
            "expected 0 < at the cut < at the restore < sent == produced"
        )

    def test_every_record_is_classified(self, outage: Outage):
        missing, sent = outage.missing, outage.sent
        assert not missing, f"{len(missing)} of {sent} records never classified, e.g. {missing[:5]}"
