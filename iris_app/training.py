"""Train a model with H2O AutoML, as the seed does, and deploy its leader's MOJO.

H2O runs a local cluster (a JVM) for training only; the worker never needs it.
"""

from __future__ import annotations

import csv
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

from .broker import free_port

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
RESPONSE = "species"
SPLIT_RATIOS = [0.8]
SPLIT_SEED = 1234
AUTOML_SEED = 1


class TrainingError(RuntimeError):
    """Training could not produce a model; the message says why."""


def train(data: Path, out: Path, *, max_models: int = 20, max_runtime_secs: int = 0) -> dict:
    """Run AutoML on `data` and replace `out` with the leader's MOJO, its card and references.

    Returns the model card (also written to `out`/model.json).
    """
    import h2o
    from h2o.automl import H2OAutoML

    if not data.is_file():
        raise TrainingError(f"no training data at {data}")
    # A cluster of our own on a free port: never join (and later shut down) someone else's.
    h2o.init(ip="127.0.0.1", port=free_port(), nthreads=-1, verbose=False)
    h2o.no_progress()  # quiet frame uploads; AutoML's own progress bar is turned back on below
    try:
        frame = h2o.import_file(str(data.resolve()))
        frame[RESPONSE] = frame[RESPONSE].asfactor()
        training, holdout = frame.split_frame(ratios=SPLIT_RATIOS, seed=SPLIT_SEED)
        automl = H2OAutoML(max_models=max_models, max_runtime_secs=max_runtime_secs, seed=AUTOML_SEED)
        h2o.show_progress()
        automl.train(x=FEATURES, y=RESPONSE, training_frame=training)
        h2o.no_progress()
        leaderboard = automl.leaderboard
        print(leaderboard.head(rows=leaderboard.nrows))
        leader = automl.leader
        staging = out.with_name(out.name + ".new")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        leader.download_mojo(str(staging), get_genmodel_jar=True, genmodel_name="h2o-genmodel.jar")
        _write_csv(staging / "leaderboard.csv", leaderboard)
        predictions = leader.predict(frame)
        _write_csv(staging / "predictions.csv", predictions)
        card = {
            "modelId": leader.model_id,
            "algorithm": leader.algo,
            "h2oVersion": h2o.__version__,
            "trainedAt": datetime.now(UTC).isoformat(timespec="seconds"),
            "data": data.name,
            "features": FEATURES,
            "response": RESPONSE,
            "automl": {"maxModels": max_models, "maxRuntimeSecs": max_runtime_secs, "seed": AUTOML_SEED},
            "split": {
                "ratios": SPLIT_RATIOS,
                "seed": SPLIT_SEED,
                "trainingRows": training.nrows,
                "holdoutRows": holdout.nrows,
            },
            "leaderboardSize": leaderboard.nrows,
            "holdout": _holdout_metrics(leader.model_performance(holdout)),
        }
        (staging / "model.json").write_text(json.dumps(card, indent=2) + "\n")
    finally:
        h2o.cluster().shutdown()
    _replace(out, staging)
    return card


def _write_csv(path: Path, frame) -> None:
    rows = frame.as_data_frame(use_pandas=False, header=True)
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)


def _holdout_metrics(performance) -> dict:
    matrix = performance.confusion_matrix()  # columns: classes..., Error, Rate; last row: Totals
    classes = list(matrix.col_header[:-2])
    counts = [[int(cell) for cell in row[: len(classes)]] for row in matrix.cell_values[: len(classes)]]
    total = sum(map(sum, counts))
    correct = sum(counts[i][i] for i in range(len(classes)))
    return {
        "rows": total,
        "accuracy": correct / total,
        "logloss": performance.logloss(),
        "meanPerClassError": performance.mean_per_class_error(),
        "confusionMatrix": {"classes": classes, "counts": counts},
    }


def _replace(out: Path, staging: Path) -> None:
    """Swap the new model in for the old one, so a reader never sees a half-written folder."""
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)
