"""The model's life on Kafka, as the tests drive it: the deploy command, the workers' /model/ pages, and
which model labelled each record."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from iris_app.kafka_server import KafkaCluster
from iris_app.samples import read_samples

from .checkout import FAUST, REPO
from .kafka import Kafka
from .traffic import Traffic
from .worker import NO_GENERATOR, Worker

SECOND = REPO / "tests" / "models" / "second"  # a real AutoML MOJO (a quick run), other than mojo/'s
DEFAULT_ID = orjson.loads((REPO / "mojo" / "model.json").read_bytes())["modelId"]
SECOND_ID = orjson.loads((SECOND / "model.json").read_bytes())["modelId"]
SWITCH_S = 10  # workers serve a deploy within this (docs/SPEC.md)


def deploy(url: str, *args: str) -> subprocess.CompletedProcess:
    """`faust -A iris_app deploy ARGS` against the broker at `url`."""
    return subprocess.run(
        [FAUST, "-A", "iris_app", "deploy", *args],
        cwd=REPO,
        env={**os.environ, "KAFKA_BROKER": url},
        capture_output=True,
        text=True,
        timeout=120,
    )


def deployed(url: str, *args: str) -> None:
    """Deploy, as a step of a scenario: the command must succeed."""
    run = deploy(url, *args)
    assert run.returncode == 0, f"deploy {' '.join(args)} exited {run.returncode}, not 0:\n{run.stderr}"


def model_page(worker: Worker) -> dict:
    return orjson.loads(worker.get("/model/")[2])


def switched(
    workers: list[Worker], traffic: Traffic, shows: Callable[[Worker, dict], bool]
) -> tuple[int, float]:
    """Wait until every worker `shows` the change (with its /model/ page): the number of the next record
    produced, which every worker scores after the change, and the seconds the change took to show (promised
    within SWITCH_S; waited for six times as long, for the scenario to go on and the test to say how long)."""
    started = time.monotonic()
    while True:
        pages = [model_page(w) for w in workers]
        if all(shows(w, page) for w, page in zip(workers, pages)):
            return traffic.produced, time.monotonic() - started
        assert time.monotonic() < started + 6 * SWITCH_S, f"no switch within {6 * SWITCH_S} s: {pages}"
        time.sleep(0.1)  # polled: the page is the one sign of a switch


def serving(model_id: str, shadow: str | None = None) -> Callable[[Worker, dict], bool]:
    def shows(worker: Worker, page: dict) -> bool:
        return page["serving"]["modelId"] == model_id and (page["shadow"] or {}).get("modelId") == shadow

    return shows


def model_ids(kafka: Kafka, keys: list[bytes]) -> dict[bytes, set[str]]:
    """The modelId of each classified record of `keys` (a replayed record may come out twice)."""
    wanted = set(keys)
    messages = kafka.read_until("iris-classified", lambda ms: wanted <= {m.key for m in ms}, timeout=120)
    ids: dict[bytes, set[str]] = {}
    for m in messages:
        if m.key in wanted:
            ids.setdefault(m.key, set()).add(m.json()["modelId"])
    return ids


def labelled_by_other(ids: dict[bytes, set[str]], keys: list[bytes], model_id: str) -> dict[bytes, set[str]]:
    """The records of `keys` some model other than `model_id` labelled: (key, the models that did)."""
    return {key: ids[key] for key in keys if ids[key] != {model_id}}


@contextmanager
def two_workers_and_traffic(tmp_path: Path) -> Iterator[tuple[KafkaCluster, list[Worker], Traffic]]:
    """A local broker, two workers on it, and records flowing at 50 a second; all stopped afterwards."""
    with KafkaCluster() as broker:
        workers = [Worker({"KAFKA_BROKER": broker.url, **NO_GENERATOR}, tmp_path / f"w{i}") for i in range(2)]
        try:
            for w in workers:
                w.wait_ready()
            traffic = Traffic(broker.url, rate=50, samples=read_samples(REPO / "data" / "iris.csv"))
            try:
                yield broker, workers, traffic
            finally:
                traffic.close()
        finally:
            for w in workers:
                w.stop()


class ModelChangeTests:
    """The tests every scenario of model changes under traffic shares. A test class inheriting them is given
    the scenario's record as the fixture `run`: `switch_s` (change -> seconds until every worker showed it),
    `missing` (step -> records sent by then and not classified within 60 s) and `flowed` (step -> the
    records produced in it)."""

    def test_every_change_shows_within_10_s(self, run):
        slow = {change: s for change, s in run.switch_s.items() if s > SWITCH_S}
        assert not slow, (
            f"seconds until every worker's /model/ showed the change: {slow}, not {SWITCH_S} or less"
        )

    def test_records_are_classified_at_each_step(self, run):
        missing = {step: keys[:5] for step, keys in run.missing.items() if keys}
        assert not missing, f"records not classified within 60 s, e.g.: {missing}"

    def test_records_flowed_at_each_step(self, run):
        idle = [step for step, keys in run.flowed.items() if not keys]
        assert not idle, f"no record produced in: {idle}"
