"""Score iris measurements in-process with the deployed MOJO, through h2o-genmodel and JPype.

The JVM starts once per process; a batch is scored by one Java call, with no
H2O cluster and no subprocess on the hot path.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import NamedTuple

import jpype

from .models import FEATURES, SPECIES

GENMODEL_JAR = "h2o-genmodel.jar"


class ModelError(RuntimeError):
    """The model cannot be loaded or used; the message says what to fix."""


class Prediction(NamedTuple):
    label: str
    probabilities: list[float]  # in the order of Scorer.labels


class Failure(NamedTuple):
    """A row the model failed to score: what the model said."""

    error: str


class Scorer:
    """One loaded MOJO: maps the four measurements to a species and class probabilities."""

    def __init__(self, mojo: Path) -> None:
        zip_path = find_mojo(mojo)
        start_jvm(zip_path.parent / GENMODEL_JAR)
        try:
            model = jpype.JClass("hex.genmodel.MojoModel").load(str(zip_path))
        except jpype.JException as e:
            raise ModelError(f"cannot load the MOJO {zip_path}: {e.getMessage()}") from None
        names = list(map(str, model.getNames()))[: model.nfeatures()]
        if sorted(names) != sorted(FEATURES.values()):
            raise ModelError(
                f"{zip_path} is not an iris classifier over {sorted(FEATURES.values())}"
                f" (its features: {names})"
            )
        if not model.isClassifier():
            raise ModelError(
                f"{zip_path} is a regression model (it predicts a number), not an iris classifier"
            )
        self.path = zip_path
        card = zip_path.parent / "model.json"  # written by `faust -A iris_app train`
        self.card: bytes = card.read_bytes() if card.is_file() else b'{"mojo": "%s"}' % zip_path.name.encode()
        self.model_id: str = _model_id(self.card, zip_path)
        self.labels: tuple[str, ...] = tuple(map(str, model.getDomainValues(model.getResponseIdx())))
        if sorted(self.labels) != sorted(SPECIES):
            raise ModelError(f"{zip_path} predicts {list(self.labels)}, not the iris species {list(SPECIES)}")
        # Where each of the model's features is in a row of the four measurements (FEATURES order).
        self._columns = [list(FEATURES.values()).index(name) for name in names]
        self._preds_size = int(model.getPredsSize())
        self._score_rows = _score_rows_loop(model, len(names), self._preds_size)
        self._new_array = jpype.JClass("java.lang.reflect.Array").newInstance
        self._thread = _scorer_thread()

    def predict(self, rows: Sequence[Sequence[float]]) -> list[Prediction | Failure]:
        """Score rows of the four measurements (FEATURES order); a row the model fails on gets a Failure."""
        arrays = self._java_arrays(rows)
        try:
            self._score_rows.invokeWithArguments(*arrays)
        except jpype.JException:  # one row's failure stops the Java loop: find it, score the rest
            return [self._predict_one(row) for row in rows]
        return self._predictions(arrays[-1])

    async def predict_aside(self, rows: Sequence[Sequence[float]]) -> list[Prediction | Failure]:
        """predict(), on the scorer's own thread: the event loop runs on meanwhile.

        The Java call releases Python's GIL for the whole batch; preparing the arrays
        on this thread costs less than the hand-over of a thread fighting for it per row.
        """
        arrays = self._java_arrays(rows)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._thread, self._score_rows.invokeWithArguments, *arrays)
        except jpype.JException:
            return await loop.run_in_executor(self._thread, lambda: [self._predict_one(row) for row in rows])
        return self._predictions(arrays[-1])

    def _predict_one(self, row: Sequence[float]) -> Prediction | Failure:
        arrays = self._java_arrays([row])
        try:
            self._score_rows.invokeWithArguments(*arrays)
        except jpype.JException as e:
            return Failure(str(e.getMessage()))
        return self._predictions(arrays[-1])[0]

    def _java_arrays(
        self, rows: Sequence[Sequence[float]]
    ) -> tuple[jpype.JArray, jpype.JArray, jpype.JArray]:
        """The model's rows end to end in one flat array (a tenth of the cost of an array per row), one
        scratch array per row for score0, and the flat array of all predictions."""
        columns = self._columns
        model_rows = jpype.JArray(jpype.JDouble)([values[column] for values in rows for column in columns])
        scratch = self._new_array(jpype.JDouble, [len(rows), self._preds_size])
        return model_rows, scratch, jpype.JArray(jpype.JDouble)(len(rows) * self._preds_size)

    def _predictions(self, flat: jpype.JArray) -> list[Prediction]:
        values, size, labels = memoryview(flat).tolist(), self._preds_size, self.labels
        return [
            Prediction(labels[int(values[start])], values[start + 1 : start + size])
            for start in range(0, len(values), size)
        ]


@cache
def _scorer_thread() -> ThreadPoolExecutor:
    """The one thread every model scores on (attached to the JVM): a swapped-out model leaves none behind."""
    return ThreadPoolExecutor(1, "scorer", initializer=jpype.java.lang.Thread.attachAsDaemon)


def _score_rows_loop(model: jpype.JObject, row_size: int, preds_size: int) -> jpype.JObject:
    """A Java method handle `(rows, scratch, flat) -> for i: flat[i*k:(i+1)*k] = score0(rows[i*n:(i+1)*n],
    scratch[i])`, for rows of n features end to end in one array and k predictions per row.

    h2o-genmodel scores one row per call; looping in Java instead of Python makes a
    batch one JPype call, during which other Python threads run, and its predictions
    one flat array that Python reads at once. Built from java.lang.invoke combinators,
    so no Java source needs compiling.
    """
    handles = jpype.JClass("java.lang.invoke.MethodHandles")
    method_type = jpype.JClass("java.lang.invoke.MethodType").methodType
    lookup = handles.publicLookup()
    row, scratches = jpype.JArray(jpype.JDouble).class_, jpype.JArray(jpype.JDouble, 2).class_
    void, int_, obj = jpype.JClass("java.lang.Void").TYPE, jpype.JInt.class_, jpype.JObject.class_
    # Bound as Integers: a Python int would box as a Long.
    k, n, zero = jpype.JInt(preds_size), jpype.JInt(row_size), jpype.JInt(0)
    math = jpype.JClass("java.lang.Math")
    multiply = lookup.findStatic(math, "multiplyExact", method_type(int_, int_, int_))
    add = lookup.findStatic(math, "addExact", method_type(int_, int_, int_))

    # (rows, i) -> Arrays.copyOfRange(rows, i * n, i * n + n): row i of the flat rows
    copy_of_range = lookup.findStatic(
        jpype.JClass("java.util.Arrays"), "copyOfRange", method_type(row, row, int_, int_)
    )
    row_start = handles.insertArguments(multiply, 1, n)
    row_end = handles.filterReturnValue(row_start, handles.insertArguments(add, 1, n))
    row_at = handles.permuteArguments(
        handles.filterArguments(copy_of_range, 1, row_start, row_end), method_type(row, row, int_), 0, 1, 1
    )
    # (rows, i, scratch, j) -> score0(row i, scratch[j]), which returns scratch[j] filled
    score = lookup.findVirtual(jpype.JClass("hex.genmodel.GenModel"), "score0", method_type(row, row, row))
    element = handles.arrayElementGetter(scratches)
    score_at = handles.collectArguments(handles.collectArguments(score.bindTo(model), 0, row_at), 2, element)
    # (preds, flat, i) -> System.arraycopy(preds, 0, flat, i * k, k)
    arraycopy = lookup.findStatic(
        jpype.JClass("java.lang.System"), "arraycopy", method_type(void, obj, int_, obj, int_, int_)
    )
    copy_row = handles.filterArguments(
        handles.insertArguments(handles.insertArguments(arraycopy, 4, k), 1, zero),
        2,
        handles.insertArguments(multiply, 1, k),
    ).asType(method_type(void, row, row, int_))
    # (i, rows, scratch, flat) -> copy_row(score_at(rows, i, scratch, i), flat, i)
    body = handles.collectArguments(copy_row, 0, score_at)
    body = handles.permuteArguments(body, method_type(void, int_, row, scratches, row), 1, 0, 2, 0, 3, 0)
    # (rows, scratch, flat) -> len(scratch), the number of rows
    count = handles.dropArguments(handles.dropArguments(handles.arrayLength(scratches), 0, row), 2, row)
    return handles.countedLoop(count, None, body)


def _model_id(card: bytes, zip_path: Path) -> str:
    """The model's id: its card's `modelId` (H2O's), else the MOJO's file name without .zip."""
    try:
        model_id = json.loads(card).get("modelId")
    except (ValueError, AttributeError):
        model_id = None
    return model_id if isinstance(model_id, str) and model_id else zip_path.stem


def find_mojo(mojo: Path) -> Path:
    """The MOJO zip itself, or the single one in the folder `mojo`."""
    if mojo.is_dir():
        zips = sorted(mojo.glob("*.zip"))
        if len(zips) != 1:
            raise ModelError(
                f"expected one MOJO zip in {mojo}, found {len(zips)}:"
                " train one with `faust -A iris_app train` or set IRIS_MOJO"
            )
        mojo = zips[0]
    if not mojo.is_file():
        raise ModelError(f"no MOJO at {mojo}: train one with `faust -A iris_app train` or set IRIS_MOJO")
    if not (mojo.parent / GENMODEL_JAR).is_file():
        raise ModelError(f"no {GENMODEL_JAR} next to {mojo}: the MOJO needs the jar it was exported with")
    return mojo


def start_jvm(jar: Path) -> None:
    if not jpype.isJVMStarted():
        # -Xrs: SIGTERM and SIGINT stay with Python, so the worker shuts down (and commits) cleanly.
        # -Xmx128m, serial GC: scoring makes short-lived garbage only; at its defaults (a quarter
        # of the machine's memory) the JVM let its heap, and the worker, grow past 300 MB.
        jpype.startJVM(
            _jvm_path(),
            "-Xrs",
            "-Xmx128m",
            "-XX:+UseSerialGC",
            classpath=[str(jar)],
            convertStrings=False,
            interrupt=False,
        )


def _jvm_path() -> str:
    """The Java runtime to start: JAVA_HOME's when it is set, else the one JPype finds."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        libjvm = Path(java_home) / "lib" / "server" / "libjvm.so"
        if not libjvm.is_file():
            raise ModelError(f"JAVA_HOME={java_home} holds no Java runtime ({libjvm}): point it at a Java 17")
        return str(libjvm)
    try:
        return jpype.getDefaultJVMPath()
    except jpype.JVMNotFoundException:
        raise ModelError(
            "Java 17 is needed to score the MOJO and none was found:"
            " install a Java 17 runtime (e.g. openjdk-17-jre-headless) or set JAVA_HOME"
        ) from None
