"""The worker's HTTP pages: table state, the model card, health, metrics, and JSON errors."""

from __future__ import annotations

import json
import time

import orjson
from prometheus_client.parser import text_string_to_metric_families
from support.checkout import REPO
from support.records import MINUTE_MS, keyed

from iris_app.settings import Settings
from iris_app.windows import window_start

VIRGINICA = {
    "sepalLength": 6.3,
    "sepalWidth": 3.3,
    "petalLength": 6.0,
    "petalWidth": 2.5,
    "species": "virginica",
}


def test_counts_and_accuracy_show_the_tables(worker, kafka, scorer):
    window = window_start(int(time.time() * 1000), MINUTE_MS) - 40 * MINUTE_MS  # used by no other test
    kafka.produce("iris", [(None, orjson.dumps(VIRGINICA), window + i) for i in range(7)])
    expected = {
        "species": "virginica",
        "predictedSpecies": "virginica",
        "startMs": window,
        "endMs": window + MINUTE_MS,
        "count": 7,
    }
    kafka.read_until("iris-classified-window-counts", lambda ms: any(m.json() == expected for m in ms))

    status, content_type, body = worker.get("/counts/virginica/virginica/")
    assert (status, content_type) == (200, "application/json")
    assert expected in json.loads(body)

    status, _, body = worker.get("/counts/")
    assert status == 200 and expected in json.loads(body)
    assert {(c["species"], c["predictedSpecies"]) for c in json.loads(body)} >= {("virginica", "virginica")}

    kafka.read_until(
        "iris-classified-window-accuracy", lambda ms: any(m.json()["startMs"] == window for m in ms)
    )
    status, _, body = worker.get("/accuracy/")
    windows = {w["startMs"]: w for w in json.loads(body)}
    assert status == 200
    assert windows[window] == {
        "startMs": window,
        "endMs": window + MINUTE_MS,
        "modelId": scorer.model_id,
        "role": "serving",
        "correct": 7,
        "total": 7,
        "accuracy": 1.0,
    }


def test_unknown_species_and_paths_answer_404_in_json(worker):
    for path in ["/counts/rose/setosa/", "/counts/setosa/unknown/", "/no/such/page"]:
        status, content_type, body = worker.get(path)
        assert (status, content_type) == (404, "application/json"), path
        assert "error" in json.loads(body)


def test_model_page_shows_the_serving_card(worker):
    """The serving model's card, no shadow and no refusal."""
    status, _, body = worker.get("/model/")
    assert status == 200
    assert json.loads(body) == {
        "serving": json.loads((REPO / "mojo" / "model.json").read_text()),
        "shadow": None,
        "refused": None,
    }


def test_health_says_ready(worker):
    status, _, body = worker.get("/health")
    assert status == 200
    assert json.loads(body)["status"] == "ready"


def metric_samples(worker) -> dict[tuple[str, tuple], float]:
    status, content_type, body = worker.get("/metrics")
    assert (status, content_type) == (200, "text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def test_metrics_give_the_pipeline_figures(worker, kafka):
    """As Prometheus text."""
    good, bad = keyed("metrics", 2)
    kafka.produce("iris", [(good, orjson.dumps(VIRGINICA), None), (bad, b"{not json", None)])
    kafka.read_until("iris-classified", lambda ms: any(m.key == good for m in ms))
    kafka.read_until("iris-dlq", lambda ms: any(m.key == bad for m in ms))

    samples = metric_samples(worker)
    assert samples["iris_records_classified_total", ()] > 0
    assert samples["iris_records_dead_lettered_total", (("reason", "not_json"),)] >= 1
    assert samples["iris_scoring_batch_seconds_count", ()] > 0


def test_lag_and_stalls_cover_every_input_partition(worker):
    """Every assigned partition of every input topic."""
    # The watchdog looks every 5 s; a lone worker holds every partition (polled: no event to await).
    wanted = {
        (topic, str(p))
        for topic in ("iris", "iris-window-deltas", "iris-accuracy-deltas")
        for p in range(Settings().partitions)
    }
    deadline = time.monotonic() + 30
    while True:
        samples = metric_samples(worker)
        covered = {
            (dict(labels)["topic"], dict(labels)["partition"])
            for name, labels in samples
            if name == "iris_consumer_lag"
        }
        if wanted <= covered or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert wanted <= covered, sorted(wanted - covered)
    assert not any(value for (name, _), value in samples.items() if name == "iris_partition_stalled"), (
        "a partition of a healthy worker is reported stalled"
    )
