"""The model's life on Kafka: deploy while records flow, every record names its model, rollback, refusal."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest
from fixtures import FAUST, REPO, TABLES_MOVE, Kafka, Traffic, Worker

from iris_app import registry
from iris_app.broker import LocalBroker
from iris_app.registry import RegistryError, Roles
from iris_app.samples import feature_rows, read_samples
from iris_app.serving import ModelServer
from iris_app.settings import Settings

SECOND = REPO / "tests" / "models" / "second"  # a real AutoML MOJO (a quick run), other than mojo/'s
DEFAULT_ID = orjson.loads((REPO / "mojo" / "model.json").read_bytes())["modelId"]
SECOND_ID = orjson.loads((SECOND / "model.json").read_bytes())["modelId"]
SWITCH_S = 10  # workers serve a deploy within this (docs/SPEC.md)


def test_roles_move_as_deploy_shadow_promote_and_rollback_say():
    roles = Roles().deploy("a")
    assert roles == Roles(serving="a", shadow=None, previous=None)
    roles = roles.deploy("b").with_shadow("c")
    assert roles == Roles(serving="b", shadow="c", previous="a")
    assert roles.promote() == Roles(serving="c", shadow=None, previous="b")
    assert roles.rollback() == Roles(serving="a", shadow="c", previous="b")
    assert Roles.decode(roles.encode()) == roles
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        Roles().deploy("a").rollback()
    with pytest.raises(RegistryError, match="no shadow model"):
        Roles().deploy("a").promote()


def test_a_worker_follows_the_roles_in_process_shadow_then_promote_then_a_broken_shadow_refused(tmp_path):
    server = ModelServer(REPO / "mojo", tmp_path / "models", feature_rows())
    second_id, package = registry.pack(SECOND)
    published = registry.Registry(models={second_id: package, "broken": b"not a package"})

    def serving_and_shadow() -> tuple[str, str | None]:
        serving, shadow = server.scorers()
        return serving.model_id, shadow and shadow.model_id

    server.start(published)  # nothing published serves: IRIS_MOJO
    assert serving_and_shadow() == (DEFAULT_ID, None)

    published.roles = Roles(DEFAULT_ID, second_id, None)
    asyncio.run(server.on_change(published))
    assert serving_and_shadow() == (DEFAULT_ID, SECOND_ID)
    shadow = server.shadow

    published.roles = published.roles.promote()
    asyncio.run(server.on_change(published))
    assert serving_and_shadow() == (SECOND_ID, None)
    assert server.scorer is shadow  # the model loaded as the shadow serves: no second load

    published.roles = published.roles.with_shadow("broken")
    asyncio.run(server.on_change(published))
    assert serving_and_shadow() == (SECOND_ID, None)  # refused: nothing changes
    assert (server.refused["modelId"], server.refused["role"]) == ("broken", "shadow")
    assert "not a zip" in server.refused["reason"]


def test_deploy_refuses_a_model_that_is_no_iris_classifier_before_it_reaches_the_broker():
    refused = deploy("kafka://127.0.0.1:1", str(REPO / "tests" / "models" / "regression"))  # no broker there

    assert refused.returncode != 0
    assert refused.stderr.strip().endswith(
        "is a regression model (it predicts a number), not an iris classifier"
    )
    assert refused.stderr.startswith("iris_app: deploy refused: ") and "Traceback" not in refused.stderr


def test_a_model_over_16_mib_is_refused_before_it_is_published(tmp_path):
    (tmp_path / "big.zip").write_bytes(os.urandom(registry.MAX_MODEL_BYTES))  # and its card: over the limit
    (tmp_path / "h2o-genmodel.jar").symlink_to(REPO / "mojo" / "h2o-genmodel.jar")

    with pytest.raises(
        RegistryError, match=r"^big is 16,777,\d+ bytes packed: models are limited to 16,777,216$"
    ):
        registry.pack(tmp_path)


def deploy(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [FAUST, "-A", "iris_app", "deploy", *args],
        cwd=REPO,
        env={**os.environ, "KAFKA_BROKER": url},
        capture_output=True,
        text=True,
        timeout=120,
    )


def switched(workers: list[Worker], traffic: Traffic, shows: Callable[[Worker, dict], bool]) -> int:
    """Wait until every worker `shows` the change (with its /model/ page), as promised within SWITCH_S; the
    number of the next record produced, which every worker scores after the change."""
    deadline = time.monotonic() + SWITCH_S
    while True:
        pages = [model_page(w) for w in workers]
        if all(shows(w, page) for w, page in zip(workers, pages)):
            return traffic.produced
        assert time.monotonic() < deadline, f"no switch within {SWITCH_S} s: {pages}"
        time.sleep(0.1)  # polled: the page is the one sign of a switch


def model_page(worker: Worker) -> dict:
    return orjson.loads(worker.get("/model/")[2])


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


@contextmanager
def two_workers_and_traffic(tmp_path: Path) -> Iterator[tuple[LocalBroker, list[Worker], Traffic]]:
    """A local broker, two workers on it, and records flowing at 50 a second; all stopped afterwards."""
    with LocalBroker() as broker:
        workers = [Worker({"KAFKA_BROKER": broker.url, **TABLES_MOVE}, tmp_path / f"w{i}") for i in range(2)]
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


@pytest.mark.slow
def test_a_deploy_reaches_both_workers_without_a_restart_and_rollback_and_refusal_keep_records_flowing(
    tmp_path,
):
    with two_workers_and_traffic(tmp_path) as (broker, workers, traffic):
        kafka = Kafka(broker.url)
        traffic.wait_count(100, timeout=60)
        before = list(traffic.sent)
        assert not traffic.wait_classified(timeout=60)  # all of them, by the model served at start

        deployed = deploy(broker.url, str(SECOND))
        assert deployed.returncode == 0, deployed.stderr
        after_deploy = switched(workers, traffic, serving(SECOND_ID))
        traffic.wait_count(len(traffic.classified) + 100, timeout=60)  # records flow under the new model
        under_second = traffic.sent_from(after_deploy)
        assert not traffic.wait_classified(timeout=60)  # all of them before the rollback
        rolled_back = deploy(broker.url, "--rollback")
        assert rolled_back.returncode == 0, rolled_back.stderr
        after_rollback = switched(workers, traffic, serving(DEFAULT_ID))
        traffic.wait_count(len(traffic.classified) + 100, timeout=60)

        corrupt = tmp_path / "corrupt"
        shutil.copytree(SECOND, corrupt)
        (corrupt / f"{SECOND_ID}.zip").write_bytes(b"not a zip")
        refused_here = deploy(broker.url, str(corrupt))
        # Published behind the command's back: the workers must refuse it themselves.
        asyncio.run(
            registry.publish(
                Settings.from_env({"KAFKA_BROKER": broker.url}),
                [
                    (b"broken", b"not a package"),
                    (registry.SERVING_KEY, Roles("broken", None, DEFAULT_ID).encode()),
                ],
            )
        )
        switched(  # each worker refuses it, says so on its page, in a metric and in one log line
            workers,
            traffic,
            lambda worker, page: (
                (page["refused"] or {}).get("modelId") == "broken"
                and any("Refused model broken" in line for line in worker.lines)
            ),
        )
        pages = [model_page(w) for w in workers]
        refusals = [w.get("/metrics")[2].decode() for w in workers]
        logged = [[line for line in w.lines if "Refused model broken" in line] for w in workers]
        traffic.stop_producing()
        assert not traffic.wait_classified(timeout=60), "records stopped flowing"
        listed = deploy(broker.url, "--list")
        ids = model_ids(kafka, traffic.sent)

    after_rolled_back = traffic.sent_from(after_rollback)
    assert before and under_second and after_rolled_back, "records flowed throughout"
    assert all(ids[key] == {DEFAULT_ID} for key in before)
    assert all(ids[key] == {SECOND_ID} for key in under_second)
    assert all(ids[key] == {DEFAULT_ID} for key in after_rolled_back)
    assert refused_here.returncode != 0 and "deploy refused" in refused_here.stderr
    for page in pages:
        assert page["serving"]["modelId"] == DEFAULT_ID
        assert page["refused"]["modelId"] == "broken" and page["refused"]["reason"]
    for metrics, lines in zip(refusals, logged):  # a metric and one log line say it too, on each worker
        assert 'iris_models_refused_total{model_id="broken"} 1.0' in metrics
        assert len(lines) == 1 and "still serving" in lines[0]
    # --list: each published model, its role and its holdout metrics.
    assert f"{SECOND_ID}\t-\taccuracy 0.963, logloss " in listed.stdout
    assert f"{DEFAULT_ID}\tprevious\taccuracy 0.926, logloss " in listed.stdout
    assert "broken\tserving\tnot a model package" in listed.stdout


@pytest.mark.slow
def test_a_shadow_model_is_scored_beside_the_serving_one_its_accuracy_published_and_then_promoted(tmp_path):
    with two_workers_and_traffic(tmp_path) as (broker, workers, traffic):
        kafka = Kafka(broker.url)
        shadowed = deploy(broker.url, "--shadow", str(SECOND))
        assert shadowed.returncode == 0, shadowed.stderr
        after_shadow = switched(workers, traffic, serving(DEFAULT_ID, shadow=SECOND_ID))
        traffic.wait_count(len(traffic.classified) + 100, timeout=60)

        def compared(messages) -> list[dict[str, dict]]:
            """Each model's latest accuracy in a window where the two were compared, read at a moment when
            both came from the window's same update (records flow, and the two keys' partitions are read
            one after the other): an update publishes one agreement for both."""
            windows: dict[int, dict[str, dict]] = {}
            for m in messages:
                if "agreement" in (accuracy := m.json()):
                    windows.setdefault(accuracy["startMs"], {})[accuracy["modelId"]] = accuracy
            return [
                models
                for models in windows.values()
                if len(models) == 2 and len({a["agreement"] for a in models.values()}) == 1
            ]

        (accuracy, *_) = compared(
            kafka.read_until("iris-classified-window-accuracy", lambda ms: bool(compared(ms)), timeout=60)
        )
        pages = [model_page(w) for w in workers]
        metrics = [w.get("/metrics")[2].decode() for w in workers]
        shadowed_only = traffic.sent_from(after_shadow)
        assert not traffic.wait_classified(timeout=60)  # all of them before the promotion

        promoted = deploy(broker.url, "--promote")
        assert promoted.returncode == 0, promoted.stderr
        after_promote = switched(workers, traffic, serving(SECOND_ID))
        traffic.wait_count(len(traffic.classified) + 100, timeout=60)
        traffic.stop_producing()
        assert not traffic.wait_classified(timeout=60), "records stopped flowing"
        promoted_pages = [model_page(w) for w in workers]
        ids = model_ids(kafka, traffic.sent)
        newcomer = Worker({"KAFKA_BROKER": broker.url, **TABLES_MOVE}, tmp_path / "new")
        try:
            newcomer.wait_ready()
            newcomer_page = model_page(newcomer)
        finally:
            newcomer.stop()

    promoted_only = traffic.sent_from(after_promote)
    assert shadowed_only and promoted_only, "records flowed throughout"
    # The shadow's predictions never reach iris-classified: the serving model labels every record.
    assert all(ids[key] == {DEFAULT_ID} for key in shadowed_only)
    assert (accuracy[DEFAULT_ID]["role"], accuracy[SECOND_ID]["role"]) == ("serving", "shadow")
    for model in accuracy.values():
        assert 0 < model["total"] and 0 <= model["accuracy"] <= 1 and 0 <= model["agreement"] <= 1
    for page, text in zip(pages, metrics):  # on both workers
        assert (page["serving"]["modelId"], page["shadow"]["modelId"]) == (DEFAULT_ID, SECOND_ID)
        assert f'iris_model_info{{model_id="{SECOND_ID}",role="shadow"}} 1.0' in text
        assert f'iris_records_scored_total{{model_id="{SECOND_ID}"}}' in text
    # Promoted: it labels what comes after, and no shadow is left.
    assert all(ids[key] == {SECOND_ID} for key in promoted_only)
    for page in promoted_pages:
        assert (page["serving"]["modelId"], page["shadow"]) == (SECOND_ID, None)
    # A worker started now serves what iris-models says, not IRIS_MOJO.
    assert (newcomer_page["serving"]["modelId"], newcomer_page["shadow"]) == (SECOND_ID, None)
