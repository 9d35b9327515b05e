"""A deploy reaches both workers without a restart, a rollback too, and a model the workers cannot load is
refused while records keep flowing."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from dataclasses import dataclass

import pytest
from support.kafka import Kafka
from support.models import (
    DEFAULT_ID,
    SECOND,
    SECOND_ID,
    ModelChangeTests,
    deploy,
    deployed,
    labelled_by_other,
    model_ids,
    model_page,
    serving,
    switched,
    two_workers_and_traffic,
)
from support.worker import Worker

from iris_app import registry
from iris_app.registry import Roles
from iris_app.settings import Settings


@dataclass
class Deploys:
    switch_s: dict[str, float]  # change -> seconds until both workers' /model/ showed it
    missing: dict[str, list[bytes]]  # step -> records sent by then and not classified within 60 s
    flowed: dict[str, list[bytes]]  # step -> the records produced in it
    ids: dict[bytes, set[str]]  # record -> the models that labelled it
    refused_here: subprocess.CompletedProcess  # deploy of a corrupt model
    pages: list[dict]  # each worker's /model/ once it refused the broken model
    metrics: list[str]  # and its /metrics
    logged: list[list[str]]  # and its log lines naming the refusal
    listed: str  # deploy --list at the end


def refused_broken(worker: Worker, page: dict) -> bool:
    """The worker says it refused the model "broken", on its page and in its log."""
    return (page["refused"] or {}).get("modelId") == "broken" and any(
        "Refused model broken" in line for line in worker.lines
    )


@pytest.fixture(scope="session")
def run(tmp_path_factory: pytest.TempPathFactory) -> Deploys:
    """TestDeploy's scenario, run once for all its tests (conftest.py)."""
    tmp_path = tmp_path_factory.mktemp("deploy")
    switch_s, missing = {}, {}
    with two_workers_and_traffic(tmp_path) as (broker, workers, traffic):
        kafka = Kafka(broker.url)
        traffic.wait_count(100, timeout=60)
        before = list(traffic.sent)
        missing["before the deploy"] = traffic.wait_classified(timeout=60)  # by the model served at start

        deployed(broker.url, str(SECOND))
        after_deploy, switch_s["deploy"] = switched(workers, traffic, serving(SECOND_ID))
        traffic.wait_count(len(traffic.classified) + 100, timeout=60)  # records flow under the new model
        under_second = traffic.sent_from(after_deploy)
        missing["before the rollback"] = traffic.wait_classified(timeout=60)

        deployed(broker.url, "--rollback")
        after_rollback, switch_s["rollback"] = switched(workers, traffic, serving(DEFAULT_ID))
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
        _, switch_s["refusal"] = switched(workers, traffic, refused_broken)
        pages = [model_page(w) for w in workers]
        metrics = [w.get("/metrics")[2].decode() for w in workers]
        logged = [[line for line in w.lines if "Refused model broken" in line] for w in workers]
        traffic.stop_producing()
        missing["at the end"] = traffic.wait_classified(timeout=60)
        listed = deploy(broker.url, "--list").stdout
        ids = model_ids(kafka, traffic.sent)
    flowed = {
        "before the deploy": before,
        "after the deploy": under_second,
        "after the rollback": traffic.sent_from(after_rollback),
    }
    return Deploys(switch_s, missing, flowed, ids, refused_here, pages, metrics, logged, listed)


@pytest.mark.slow
class TestDeploy(ModelChangeTests):
    """Two workers on their own broker, records flowing at 50 a second. A second model is deployed, then
    rolled back; then a corrupt copy of it is deployed (the command refuses it), and a model that is no
    model package published as serving behind the command's back (each worker refuses it). Then the
    traffic stops, and `deploy --list` lists what is published."""

    def test_records_before_the_deploy_name_the_default(self, run: Deploys):
        other = labelled_by_other(run.ids, run.flowed["before the deploy"], DEFAULT_ID)
        assert not other, f"labelled by other than {DEFAULT_ID}: {other}"

    def test_records_after_the_deploy_name_the_second(self, run: Deploys):
        other = labelled_by_other(run.ids, run.flowed["after the deploy"], SECOND_ID)
        assert not other, f"labelled by other than {SECOND_ID}: {other}"

    def test_records_after_rollback_name_the_default(self, run: Deploys):
        other = labelled_by_other(run.ids, run.flowed["after the rollback"], DEFAULT_ID)
        assert not other, f"labelled by other than {DEFAULT_ID}: {other}"

    def test_deploy_refuses_a_corrupt_model(self, run: Deploys):
        refused = run.refused_here
        assert refused.returncode != 0 and "deploy refused" in refused.stderr, (
            f"deploy exited {refused.returncode}, expected non-zero and 'deploy refused':\n{refused.stderr}"
        )

    def test_workers_keep_serving_past_a_broken_model(self, run: Deploys):
        served = [page["serving"]["modelId"] for page in run.pages]
        assert served == [DEFAULT_ID, DEFAULT_ID], f"served after the refusal: {served}, not {DEFAULT_ID}"

    def test_model_page_names_the_refused_model(self, run: Deploys):
        refused = [page["refused"] for page in run.pages]
        assert all(r["modelId"] == "broken" and r["reason"] for r in refused), (
            f"/model/'s refused: {refused}, expected modelId 'broken' with its reason on both workers"
        )

    def test_a_metric_counts_the_refusal(self, run: Deploys):
        line = 'iris_models_refused_total{model_id="broken"} 1.0'
        without = [i for i, metrics in enumerate(run.metrics) if line not in metrics]
        assert not without, f"workers whose /metrics lack {line!r}: {without}"

    def test_one_log_line_says_still_serving(self, run: Deploys):
        """Each worker logs the refusal once, saying what it still serves."""
        assert all(len(lines) == 1 and "still serving" in lines[0] for lines in run.logged), (
            f"each worker's log lines on the refusal: {run.logged}, expected one saying 'still serving'"
        )

    def test_list_shows_each_model_role_and_metrics(self, run: Deploys):
        """deploy --list: each published model, its role and its holdout metrics."""
        expected = [
            f"{SECOND_ID}\t-\taccuracy 0.963, logloss ",
            f"{DEFAULT_ID}\tprevious\taccuracy 0.926, logloss ",
            "broken\tserving\tnot a model package",
        ]
        absent = [line for line in expected if line not in run.listed]
        assert not absent, f"deploy --list lacks {absent}:\n{run.listed}"
