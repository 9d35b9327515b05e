"""A shadow model is scored beside the serving one, its accuracy published beside the serving model's, and
then promoted; a worker started afterwards serves what the registry says."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from support.kafka import Kafka, Message
from support.models import (
    DEFAULT_ID,
    SECOND,
    SECOND_ID,
    ModelChangeTests,
    deployed,
    labelled_by_other,
    model_ids,
    model_page,
    serving,
    switched,
    two_workers_and_traffic,
)
from support.worker import NO_GENERATOR, Worker


@dataclass
class Shadowing:
    switch_s: dict[str, float]  # change -> seconds until both workers' /model/ showed it
    missing: dict[str, list[bytes]]  # step -> records sent by then and not classified within 60 s
    flowed: dict[str, list[bytes]]  # step -> the records produced in it
    accuracy: dict[str, dict]  # modelId -> its accuracy in a window comparing the two; {}: none in 60 s
    pages: list[dict]  # each worker's /model/ with the shadow
    metrics: list[str]  # and its /metrics
    ids: dict[bytes, set[str]]  # record -> the models that labelled it
    promoted_pages: list[dict]  # each worker's /model/ after the promotion
    newcomer_page: dict  # the /model/ of a worker started after it


def compared(messages: list[Message]) -> list[dict[str, dict]]:
    """Each model's latest accuracy in a window where the two were compared, read at a moment when both
    came from the window's same update (records flow, and the two keys' partitions are read one after the
    other): an update publishes one agreement for both."""
    windows: dict[int, dict[str, dict]] = {}
    for m in messages:
        if "agreement" in (accuracy := m.json()):
            windows.setdefault(accuracy["startMs"], {})[accuracy["modelId"]] = accuracy
    return [
        models
        for models in windows.values()
        if len(models) == 2 and len({a["agreement"] for a in models.values()}) == 1
    ]


@pytest.fixture(scope="session")
def run(tmp_path_factory: pytest.TempPathFactory) -> Shadowing:
    """TestShadow's scenario, run once for all its tests (conftest.py)."""
    tmp_path = tmp_path_factory.mktemp("shadow")
    switch_s, missing = {}, {}
    with two_workers_and_traffic(tmp_path) as (broker, workers, traffic):
        kafka = Kafka(broker.url)
        deployed(broker.url, "--shadow", str(SECOND))
        after_shadow, switch_s["shadow"] = switched(workers, traffic, serving(DEFAULT_ID, shadow=SECOND_ID))
        traffic.wait_count(len(traffic.classified) + 100, timeout=60)
        try:
            accuracy, *_ = compared(
                kafka.read_until("iris-classified-window-accuracy", lambda ms: bool(compared(ms)), timeout=60)
            )
        except AssertionError:
            accuracy = {}
        pages = [model_page(w) for w in workers]
        metrics = [w.get("/metrics")[2].decode() for w in workers]
        shadowed_only = traffic.sent_from(after_shadow)
        missing["before the promotion"] = traffic.wait_classified(timeout=60)

        deployed(broker.url, "--promote")
        after_promote, switch_s["promotion"] = switched(workers, traffic, serving(SECOND_ID))
        traffic.wait_count(len(traffic.classified) + 100, timeout=60)
        traffic.stop_producing()
        missing["at the end"] = traffic.wait_classified(timeout=60)
        promoted_pages = [model_page(w) for w in workers]
        ids = model_ids(kafka, traffic.sent)
        newcomer = Worker({"KAFKA_BROKER": broker.url, **NO_GENERATOR}, tmp_path / "new")
        try:
            newcomer.wait_ready()
            newcomer_page = model_page(newcomer)
        finally:
            newcomer.stop()
    flowed = {"with the shadow": shadowed_only, "after the promotion": traffic.sent_from(after_promote)}
    return Shadowing(switch_s, missing, flowed, accuracy, pages, metrics, ids, promoted_pages, newcomer_page)


@pytest.mark.slow
class TestShadow(ModelChangeTests):
    """Two workers on their own broker, records flowing at 50 a second. A second model is deployed as the
    shadow; once 100 more records are classified, a window's accuracy comparing the two is read and the
    shadow promoted; once 100 more are classified the traffic stops, and a third worker starts."""

    def test_the_serving_model_labels_every_record(self, run: Shadowing):
        """The shadow's predictions never reach iris-classified."""
        other = labelled_by_other(run.ids, run.flowed["with the shadow"], DEFAULT_ID)
        assert not other, f"labelled by other than {DEFAULT_ID}: {other}"

    def test_accuracy_names_each_models_role(self, run: Shadowing):
        roles = {model_id: accuracy["role"] for model_id, accuracy in run.accuracy.items()}
        assert roles == {DEFAULT_ID: "serving", SECOND_ID: "shadow"}, (
            f"roles in a window comparing the two (none: no such window in 60 s): {run.accuracy}"
        )

    def test_accuracy_figures_are_in_range(self, run: Shadowing):
        """Each model's total is above 0, its accuracy and the agreement within 0 and 1."""
        assert run.accuracy and all(
            0 < a["total"] and 0 <= a["accuracy"] <= 1 and 0 <= a["agreement"] <= 1
            for a in run.accuracy.values()
        ), f"each model's accuracy in a window comparing the two (none: none such in 60 s): {run.accuracy}"

    def test_model_pages_show_the_shadow(self, run: Shadowing):
        shown = [(page["serving"]["modelId"], page["shadow"]["modelId"]) for page in run.pages]
        assert shown == [(DEFAULT_ID, SECOND_ID)] * 2, f"(serving, shadow) on each worker's /model/: {shown}"

    def test_metrics_show_the_shadow_scoring(self, run: Shadowing):
        """Each worker's /metrics names the shadow's role and counts the records it scores."""
        expected = [
            f'iris_model_info{{model_id="{SECOND_ID}",role="shadow"}} 1.0',
            f'iris_records_scored_total{{model_id="{SECOND_ID}"}}',
        ]
        absent = {i: [line for line in expected if line not in text] for i, text in enumerate(run.metrics)}
        assert not any(absent.values()), f"lines absent from each worker's /metrics: {absent}"

    def test_the_promoted_model_labels_what_follows(self, run: Shadowing):
        other = labelled_by_other(run.ids, run.flowed["after the promotion"], SECOND_ID)
        assert not other, f"labelled by other than {SECOND_ID}: {other}"

    def test_promotion_leaves_no_shadow(self, run: Shadowing):
        shown = [(page["serving"]["modelId"], page["shadow"]) for page in run.promoted_pages]
        assert shown == [(SECOND_ID, None)] * 2, f"(serving, shadow) on each worker's /model/: {shown}"

    def test_a_new_worker_serves_the_registrys_model(self, run: Shadowing):
        """A worker started after the promotion serves what iris-models says, not IRIS_MOJO."""
        page = run.newcomer_page
        shown = (page["serving"]["modelId"], page["shadow"])
        assert shown == (SECOND_ID, None), f"(serving, shadow) on the new worker's /model/: {shown}"
