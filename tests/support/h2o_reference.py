"""H2O's own predictions, which training writes beside a MOJO (predictions.csv): the scorer's reference."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from iris_app.scoring import Scorer

from .checkout import REPO

H2O_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]  # data/iris.csv's columns


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def assert_matches_h2o(scorer: Scorer, mojo: Path) -> None:
    """Labels and probabilities equal H2O's own predictions (mojo/predictions.csv) for all 150 rows."""
    rows = read_csv(REPO / "data" / "iris.csv")
    reference = read_csv(mojo / "predictions.csv")
    predictions = scorer.predict([[float(row[f]) for f in H2O_FEATURES] for row in rows])
    assert len(predictions) == len(reference) == 150
    for i, (prediction, expected) in enumerate(zip(predictions, reference)):
        assert prediction.label == expected["predict"], f"row {i}"
        assert prediction.probabilities == pytest.approx(
            [float(expected[label]) for label in scorer.labels], abs=1e-9
        ), f"row {i}"
