"""The check every model passes before it serves or shadows, in `deploy` and in every worker.

It must load as an iris classifier over the four features (scoring.Scorer), score
every row of the bundled labelled data (data/iris.csv) without error, label at
least IRIS_MIN_ACCURACY of them right, agree row by row with H2O's own predictions
where its package brings them (predictions.csv), and do all that within
IRIS_MODEL_CHECK_SECONDS.
"""

from __future__ import annotations

import csv
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path

import jpype

from .models import FEATURES
from .samples import IRIS_DATA, read_samples
from .scoring import GENMODEL_JAR, Failure, ModelError, Scorer, find_mojo, start_jvm


@dataclass(frozen=True)
class Check:
    """What a model is checked against: the labelled rows, the accuracy floor, the time limit."""

    rows: list[list[float]]
    species: list[str]
    min_accuracy: float = 0.9
    seconds: float = 60.0

    @classmethod
    def bundled(cls, min_accuracy: float = 0.9, seconds: float = 60.0, path: Path = IRIS_DATA) -> Check:
        """The check on the bundled data set."""
        records = read_samples(path)
        rows = [[record[name] for name in FEATURES] for record in records]
        return cls(rows, [record["species"] for record in records], min_accuracy, seconds)


def checked_scorer(mojo: Path, check: Check) -> Scorer:
    """A Scorer for `mojo` once it has passed the check; a ModelError saying why not otherwise.

    The check runs on a thread of its own, waited for `check.seconds`: a model that
    takes longer is refused (its thread, stuck in Java, is left to finish as a daemon).
    """
    start_jvm(find_mojo(mojo).parent / GENMODEL_JAR)  # here: the check's thread attaches to it
    result: Future[Scorer] = Future()

    def run() -> None:
        jpype.java.lang.Thread.attachAsDaemon()
        try:
            result.set_result(_checked(mojo, check))
        except ModelError as e:  # handed to the waiting thread, which raises it
            result.set_exception(e)
        except Exception as e:  # a hostile model may break anything: still one line, and a refusal
            result.set_exception(ModelError(f"{mojo.name} failed its check: {type(e).__name__}: {e}"))

    threading.Thread(target=run, name="model-check", daemon=True).start()
    try:
        return result.result(timeout=check.seconds)
    except FutureTimeout:
        raise ModelError(
            f"checking {mojo.name} took over {check.seconds:g} s (IRIS_MODEL_CHECK_SECONDS)"
        ) from None


def _checked(mojo: Path, check: Check) -> Scorer:
    scorer = Scorer(mojo)
    name = scorer.path.name
    predictions = scorer.predict(check.rows)
    failed = [i for i, p in enumerate(predictions) if isinstance(p, Failure)]
    if failed:
        raise ModelError(
            f"{name} fails to score row {failed[0]} of the bundled data: {predictions[failed[0]].error}"
        )
    labels = [p.label for p in predictions]
    accuracy = sum(label == species for label, species in zip(labels, check.species)) / max(1, len(labels))
    if accuracy < check.min_accuracy:
        raise ModelError(
            f"{name} labels {accuracy:.1%} of the bundled data right: "
            f"at least {check.min_accuracy:.1%} is needed (IRIS_MIN_ACCURACY)"
        )
    reference = scorer.path.parent / "predictions.csv"
    if reference.is_file():
        with reference.open(newline="") as f:
            expected = [row.get("predict") for row in csv.DictReader(f)]
        if len(expected) == len(labels) and expected != labels:
            row = next(i for i, (a, b) in enumerate(zip(expected, labels)) if a != b)
            raise ModelError(
                f"{name} disagrees with H2O's own predictions (predictions.csv) on row {row}:"
                f" {labels[row]} against {expected[row]}"
            )
    return scorer
