"""One command trains with H2O AutoML and deploys a MOJO the worker's scorer loads."""

from __future__ import annotations

import json
import subprocess

from fixtures import FAUST, REPO
from test_scoring import assert_matches_h2o

from iris_app.scoring import Scorer


def test_a_quick_training_run_deploys_a_model_the_scorer_loads(tmp_path):
    out = tmp_path / "mojo"
    run = subprocess.run(
        [
            FAUST,
            "-A",
            "iris_app",
            "train",
            "--max-models",
            "2",
            "--max-runtime-secs",
            "60",
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
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
    assert card["automl"] == {"maxModels": 2, "maxRuntimeSecs": 60, "seed": 1}
    assert card["split"] == {"ratios": [0.8], "seed": 1234, "trainingRows": 123, "holdoutRows": 27}
    holdout = card["holdout"]
    assert holdout["rows"] == 27 and sum(map(sum, holdout["confusionMatrix"]["counts"])) == 27
    assert 0.8 <= holdout["accuracy"] <= 1 and holdout["logloss"] > 0
    leaderboard = (out / "leaderboard.csv").read_text().splitlines()
    assert leaderboard[0].startswith("model_id,") and card["modelId"] in leaderboard[1]

    assert_matches_h2o(Scorer(out), out)
