"""One command trains with H2O AutoML, writes a MOJO the worker's scorer loads, and deploys it (--deploy)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess

import pytest
from support.checkout import FAUST, REPO
from support.h2o_reference import assert_matches_h2o

from iris_app import registry
from iris_app.kafka_server import KafkaCluster
from iris_app.scoring import Scorer
from iris_app.settings import Settings


@pytest.mark.slow
def test_training_writes_loads_and_deploys_a_model(tmp_path):
    """A quick run writes a model the scorer loads, and deploys it (--deploy)."""
    out = tmp_path / "mojo"
    with KafkaCluster() as broker:
        run = subprocess.run(
            [
                FAUST,
                "-A",
                "iris_app",
                "train",
                "--max-models",
                "1",  # one model: AutoML's whole path in half the time of two
                "--max-runtime-secs",
                "60",
                "--out",
                str(out),
                "--deploy",
            ],
            cwd=REPO,
            env={**os.environ, "KAFKA_BROKER": broker.url},
            capture_output=True,
            text=True,
            timeout=600,
        )
        published = asyncio.run(registry.read(Settings.from_env({"KAFKA_BROKER": broker.url}).kafka))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "AutoML progress" in run.stdout
    assert f"Wrote {json.loads((out / 'model.json').read_text())['modelId']} to {out}/" in run.stdout

    assert sorted(p.name for p in out.iterdir() if p.suffix != ".zip") == [
        "h2o-genmodel.jar",
        "leaderboard.csv",
        "model.json",
        "predictions.csv",
    ]
    card = json.loads((out / "model.json").read_text())
    assert card["h2oVersion"] == "3.46.0.11"
    assert card["automl"] == {"maxModels": 1, "maxRuntimeSecs": 60, "seed": 1}
    assert card["split"] == {"ratios": [0.8], "seed": 1234, "trainingRows": 123, "holdoutRows": 27}
    holdout = card["holdout"]
    assert holdout["rows"] == 27 and sum(map(sum, holdout["confusionMatrix"]["counts"])) == 27
    assert 0.8 <= holdout["accuracy"] <= 1 and holdout["logloss"] > 0
    leaderboard = (out / "leaderboard.csv").read_text().splitlines()
    assert leaderboard[0].startswith("model_id,") and card["modelId"] in leaderboard[1]

    assert_matches_h2o(Scorer(out), out)
    # --deploy: published to iris-models and serving, IRIS_MOJO kept to roll back to.
    assert published.roles.serving == card["modelId"] and card["modelId"] in published.models
    assert published.roles.previous == json.loads((REPO / "mojo" / "model.json").read_text())["modelId"]
