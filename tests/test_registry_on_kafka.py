"""`iris-models` as an attacker or a buggy tool fills it, on Apache Kafka: a worker refuses what it cannot
use and goes on following the registry; every change of roles is recorded, by whom and when."""

from __future__ import annotations

import asyncio
import getpass
import socket
import time
from dataclasses import dataclass

import pytest
from support.cli import run
from support.models import DEFAULT_ID, SECOND, SECOND_ID, deployed, model_page
from support.worker import NO_GENERATOR, Worker

from iris_app import packages, registry
from iris_app.kafka_server import KafkaCluster
from iris_app.registry import Roles
from iris_app.settings import Settings


@dataclass
class Hostile:
    started: dict  # the worker's /model/ once started on a registry whose latest serving record is refused
    health: tuple[int, dict]  # and its /health then
    followed: dict  # its /model/ after a good serving record came next (a rollback)
    history: str  # `deploy --history` at the end
    refilled: (
        registry.Registry
    )  # a worker's read of the registry, the rollback having named a dropped package


def page_until(worker: Worker, shows, timeout: float = 60) -> dict:
    """The worker's /model/ once `shows(page)` (an HTTP page has no event to wait on), or as it is after
    `timeout`."""
    deadline = time.monotonic() + timeout
    while not shows(page := model_page(worker)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return page


@pytest.fixture(scope="session")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Hostile:
    """TestHostileRegistry's scenario, run once for all its tests (conftest.py)."""
    with KafkaCluster() as broker:
        settings = Settings.from_env({"KAFKA_BROKER": broker.url})
        deployed(broker.url, str(SECOND), "--shadow")  # IRIS_MOJO's model serves, SECOND shadows
        deployed(broker.url, "--promote")  # SECOND serves
        bad = [(registry.SERVING_KEY, b'{"serving": ["x"]}')]  # behind the commands' back
        asyncio.run(registry.publish(settings, bad))
        worker = Worker({"KAFKA_BROKER": broker.url, **NO_GENERATOR}, tmp_path_factory.mktemp("hostile"))
        try:
            worker.wait_ready()
            started = page_until(worker, lambda page: page["refused"] is not None)
            health = worker.health_within(200, timeout=60)
            deployed(broker.url, "--rollback")  # IRIS_MOJO's model serves again
            followed = page_until(worker, lambda page: page["serving"]["modelId"] == DEFAULT_ID)
        finally:
            worker.stop()
        history = run(broker.url, "deploy", "--history").stdout
        # SECOND, named by no role since the rollback, then two packages more: a worker lets SECOND go,
        # and must read it again when a record names it (written without pins, as older versions did).
        renamed = Roles(DEFAULT_ID).deploy(SECOND_ID).encode()
        asyncio.run(
            registry.publish(settings, [(b"j1", b"x"), (b"j2", b"y"), (registry.SERVING_KEY, renamed)])
        )
        refilled = asyncio.run(registry.read(settings.kafka, bounded=True))
    return Hostile(started, health, followed, history, refilled)


@pytest.mark.slow
class TestHostileRegistry:
    """A model is shadowed, then promoted; a serving record naming a list is published behind the commands'
    back; a worker starts; a rollback follows; then `deploy --history`."""

    def test_a_worker_starts_on_the_last_good_roles(self, hostile: Hostile):
        assert hostile.started["serving"]["modelId"] == SECOND_ID, hostile.started

    def test_the_model_page_names_the_refused_record(self, hostile: Hostile):
        refused = hostile.started["refused"]
        assert refused["modelId"] == "the serving record", refused
        assert "serving is not a model id" in refused["reason"]

    def test_health_is_ready_and_says_what_was_refused(self, hostile: Hostile):
        status, body = hostile.health
        assert status == 200 and "serving is not a model id" in body.get("refused", ""), body

    def test_the_next_good_record_is_followed(self, hostile: Hostile):
        assert hostile.followed["serving"]["modelId"] == DEFAULT_ID, hostile.followed

    def test_history_says_who_did_what_in_order(self, hostile: Hostile):
        lines = hostile.history.splitlines()
        who = f"{getpass.getuser()}@{socket.gethostname()}"
        actions = [line.split("  ")[1:3] for line in lines]
        assert actions == [[who, "shadow"], [who, "promote"], [who, "rollback"]], hostile.history
        assert f"{SECOND_ID} (sha256 " in lines[0] and lines[2].endswith(f"serving {DEFAULT_ID}; no shadow")

    def test_a_bounded_read_gets_back_a_package_it_let_go(self, hostile: Hostile):
        assert hostile.refilled.roles.serving == SECOND_ID
        assert hostile.refilled.models.get(SECOND_ID) == packages.pack(SECOND)[1]
