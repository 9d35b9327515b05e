"""The in-process scorer gives H2O's own answers, and refuses a model it cannot use."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from support.checkout import REPO
from support.h2o_reference import assert_matches_h2o

from iris_app.scoring import ModelError, Scorer


def test_the_deployed_model_scores_exactly_as_h2o_does(scorer):
    assert scorer.labels == ("setosa", "versicolor", "virginica")
    assert_matches_h2o(scorer, REPO / "mojo")


def test_the_mojo_can_be_named_by_its_zip(scorer):
    assert Scorer(scorer.path).labels == scorer.labels


def test_no_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match=r"no MOJO at .*/missing: train one with `faust -A iris_app train`"):
        Scorer(tmp_path / "missing")
    with pytest.raises(ModelError, match="expected one MOJO zip in .*, found 0"):
        Scorer(tmp_path)


def test_a_corrupt_model_is_a_clear_error(tmp_path):
    shutil.copy(REPO / "mojo" / "h2o-genmodel.jar", tmp_path)
    (tmp_path / "model.zip").write_bytes(b"PK\x03\x04 this is not a MOJO")
    with pytest.raises(ModelError, match="cannot load the MOJO .*model.zip: "):
        Scorer(tmp_path)


@pytest.mark.parametrize(
    "name, reason",
    [
        ("regression", r"is a regression model \(it predicts a number\), not an iris classifier"),
        ("three_features", r"is not an iris classifier over .*its features: \['sepal_length', 'sepal_width'"),
        ("not_iris_classes", r"predicts \['no', 'yes'\], not the iris species"),
    ],
)
def test_a_model_that_is_no_iris_classifier_is_refused(name, reason):
    # Real H2O MOJOs (GLMs on data/iris.csv), kept under tests/models/ for this.
    with pytest.raises(ModelError, match=reason):
        Scorer(REPO / "tests" / "models" / name)


def test_a_mojo_without_its_jar_is_a_clear_error(tmp_path, scorer):
    shutil.copy(scorer.path, tmp_path)
    with pytest.raises(ModelError, match="no h2o-genmodel.jar next to"):
        Scorer(tmp_path)


def test_a_java_home_without_java_is_a_clear_error(tmp_path):
    script = "from pathlib import Path; from iris_app.scoring import Scorer; Scorer(Path('mojo'))"
    run = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env={"JAVA_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert run.returncode != 0
    assert f"ModelError: JAVA_HOME={tmp_path} holds no Java runtime" in run.stderr
