"""A three-broker Apache Kafka cluster loses brokers while two workers classify: nothing is lost.

The scenario runs once: two workers, records flowing, then in turn the leader of an `iris` partition
is killed (SIGKILL), the group coordinator's broker is killed, and a broker is stopped for 30 s; each
comes back before the next. Topics are replicated three times with min.insync.replicas 2 and every
producer waits for all in-sync replicas, so a broker's loss costs no acknowledged record.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from dataclasses import dataclass

import orjson
import pytest
from support.checkout import FAUST, REPO
from support.cluster_ops import bring_back, coordinator_of, leader_of, node_by_id, uncommitted
from support.counts import Window, counts_reaching, differences, truth_of
from support.kafka import Kafka
from support.traffic import Traffic
from support.worker import Worker, report

from iris_app.kafka_server import KafkaCluster, Node
from iris_app.samples import read_samples

DISRUPTIONS = ("partition leader killed", "group coordinator killed", "broker stopped for 30 s")


def victim(cluster: KafkaCluster, disruption: str) -> Node:
    """The broker a disruption takes away: the leader of iris[0], the group's coordinator, or the third."""
    if disruption == DISRUPTIONS[0]:
        return leader_of(cluster, "iris", 0)
    if disruption == DISRUPTIONS[1]:
        return coordinator_of(cluster)
    return node_by_id(cluster, 3)


def health_noting_the_cluster(worker: Worker, timeout: float = 30) -> tuple[int, dict]:
    """The worker's /health once it mentions the cluster, or as it stands after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        status, _, body = worker.get("/health")
        answer = orjson.loads(body)
        if "cluster" in answer or time.monotonic() > deadline:
            return status, answer
        time.sleep(0.5)  # an HTTP page has no event to await


@dataclass
class BrokerLoss:
    missing_after: dict[str, list[bytes]]  # disruption -> records not classified within 60 s of it
    health_during: dict[str, list[tuple[int, dict]]]  # disruption -> each worker's /health meanwhile
    listed_with_first_down: subprocess.CompletedProcess  # `deploy --list`, its first broker stopped
    logs: list[str]
    missing: list[bytes]
    sent: int
    health: list[int]
    behind: dict[int, tuple[int, int]]
    counted: dict[Window, int]
    truth: Counter
    tails: str


@pytest.fixture(scope="session")
def broker_loss(tmp_path_factory: pytest.TempPathFactory, scorer) -> BrokerLoss:
    """TestBrokerLoss's scenario, run once."""
    tmp_path = tmp_path_factory.mktemp("broker-loss")
    missing_after, health_during = {}, {}
    with KafkaCluster(3, folder=tmp_path / "cluster") as cluster:
        env = {"KAFKA_BROKER": cluster.url, "IRIS_GENERATOR_INTERVAL": "0"}
        kafka = Kafka(cluster.url)
        workers = [Worker(env, tmp_path / f"w{i}") for i in range(2)]
        traffic = None
        try:
            for w in workers:
                w.wait_ready()
            traffic = Traffic(cluster.url, rate=30, samples=read_samples(REPO / "data" / "iris.csv"))
            traffic.wait_count(30, timeout=60)
            for disruption in DISRUPTIONS:
                node = victim(cluster, disruption)
                gone = time.monotonic()
                if disruption == DISRUPTIONS[2]:
                    cluster.stop_node(node)
                else:
                    cluster.kill(node)
                health_during[disruption] = [health_noting_the_cluster(w) for w in workers]
                if disruption == DISRUPTIONS[2]:
                    others = ",".join(n.address for n in cluster.nodes if n is not node)
                    listed = subprocess.run(
                        [FAUST, "-A", "iris_app", "deploy", "--list"],
                        cwd=REPO,
                        env={**env, "KAFKA_BROKER": f"kafka://{node.address};{others}"},
                        capture_output=True,
                        text=True,
                        timeout=120,
                    )
                    time.sleep(max(0.0, gone + 30 - time.monotonic()))  # the outage lasts 30 s
                missing_after[disruption] = traffic.wait_classified(timeout=60)
                bring_back(cluster, node)
            traffic.stop_producing()
            missing = traffic.wait_classified(timeout=120)
            health = [w.get("/health")[0] for w in workers]
            behind = uncommitted(cluster)
            labelled, truth = truth_of(kafka, traffic.sent, scorer)
            counted = counts_reaching(kafka, truth, timeout=120)
            tails = report(workers)
        finally:
            if traffic:
                traffic.close()
            for w in workers:
                w.stop()
        logs = ["".join(w.lines) for w in workers]
    return BrokerLoss(
        missing_after,
        health_during,
        listed,
        logs,
        missing,
        len(traffic.sent),
        health,
        behind,
        counted,
        truth,
        tails,
    )


@pytest.mark.slow
@pytest.mark.timeout(1200)  # three brokers, two workers and three disruptions on two cores
class TestBrokerLoss:
    @pytest.mark.parametrize("disruption", DISRUPTIONS)
    def test_records_flow_while_a_broker_is_gone(self, broker_loss: BrokerLoss, disruption: str):
        missing = broker_loss.missing_after[disruption]
        assert not missing, f"{len(missing)} records not classified after {disruption}:\n{broker_loss.tails}"

    @pytest.mark.parametrize("disruption", DISRUPTIONS)
    def test_health_says_a_broker_is_gone(self, broker_loss: BrokerLoss, disruption: str):
        for status, answer in broker_loss.health_during[disruption]:
            assert status == 200 and "broker is down" in answer.get("cluster", ""), (
                f"expected 200 naming the cluster degraded, not a stalled worker; got {status} {answer}"
            )

    def test_the_log_says_a_broker_is_gone(self, broker_loss: BrokerLoss):
        for log in broker_loss.logs:
            assert "A broker is down or behind" in log
            assert "stalled" not in log and "no progress for" not in log

    def test_a_broker_list_works_with_its_first_down(self, broker_loss: BrokerLoss):
        listed = broker_loss.listed_with_first_down
        assert listed.returncode == 0, f"deploy --list with the first broker down: {listed.stderr[-2000:]}"

    def test_no_record_is_lost(self, broker_loss: BrokerLoss):
        assert broker_loss.sent > 500, f"only {broker_loss.sent} records flowed"
        assert not broker_loss.missing, f"{len(broker_loss.missing)} records never classified"

    def test_both_workers_healthy_at_the_end(self, broker_loss: BrokerLoss):
        assert broker_loss.health == [200, 200]

    def test_commits_reach_the_end(self, broker_loss: BrokerLoss):
        assert not broker_loss.behind, f"(committed, end) per iris partition: {broker_loss.behind}"

    def test_every_window_count_is_exact(self, broker_loss: BrokerLoss):
        counted, truth = broker_loss.counted, dict(broker_loss.truth)
        assert counted == truth, f"(count, truth) where they differ: {differences(counted, truth)}"
