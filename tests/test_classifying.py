"""The classify agent's steps, in-process and without a broker: check, score, label, tally."""

from __future__ import annotations

import orjson
from support.records import GOOD, MINUTE_MS, Source, predicted_labels

from iris_app import classifying
from iris_app.windows import EventClocks

HOUR_MS = 60 * MINUTE_MS
NOW_MS = 1_700_000_000_000
MODEL = "the-model-id"
POISON = {
    "sepalLength": 5.1,
    "sepalWidth": 1e308,
    "petalLength": 1.4,
    "petalWidth": 0.2,
}  # valid, unscoreable


def sources(records: list[dict], start_ms: int = NOW_MS, partition: int = 0) -> list[Source]:
    return [
        Source(orjson.dumps(r), key=b"k%d" % i, offset=i, partition=partition, timestamp=start_ms + i)
        for i, r in enumerate(records)
    ]


def clocks() -> EventClocks:
    return EventClocks(MINUTE_MS, HOUR_MS, 5 * MINUTE_MS)


def test_check_keeps_valid_records_names_bad_ones():
    checked = classifying.check([Source(orjson.dumps(GOOD[0])), Source(b"{}"), Source(None)])

    assert [record for _, record in checked.valid] == [GOOD[0]]
    assert [(str(error), error.reason) for _, error in checked.invalid] == [
        ("sepalLength: missing", "missing"),
        ("empty message", "empty"),
    ]


def test_an_unscoreable_row_fails_alone(scorer):
    """A record the model cannot score fails alone: the rest of its batch is classified."""
    records = [*GOOD, POISON, *GOOD]
    checked = classifying.check(sources(records))

    classified = classifying.label(
        checked.valid, scorer.predict(classifying.feature_rows(checked.valid)), MODEL
    )

    good = [*GOOD, *GOOD]
    assert [orjson.loads(out.value)["predictedSpecies"] for out in classified.outputs] == predicted_labels(
        scorer, good
    )
    [(source, error)] = classified.failed
    assert source.offset == len(GOOD)
    assert (error.reason, str(error)) == ("model", "model: Predicted class probability NaN!")


def test_output_is_input_plus_prediction_and_source(scorer):
    """A classified record is the input plus its prediction and model, with its source in headers."""
    [source] = sources([{**GOOD[1], "extra": "dropped"}], partition=3)
    checked = classifying.check([source])

    [out] = classifying.label(
        checked.valid, scorer.predict(classifying.feature_rows(checked.valid)), MODEL
    ).outputs

    label = predicted_labels(scorer, [GOOD[1]])[0]
    assert orjson.loads(out.value) == {**GOOD[1], "predictedSpecies": label, "modelId": MODEL}
    assert list(orjson.loads(out.value))[-2:] == ["predictedSpecies", "modelId"]
    assert (out.key, out.timestamp_ms) == (source.key, NOW_MS)
    assert out.headers == [
        ("iris-source-topic", b"iris"),
        ("iris-source-partition", b"3"),
        ("iris-source-offset", b"0"),
    ]


def labelled(
    species: str | None,
    predicted: str,
    timestamp_ms: int,
    partition: int = 0,
    offset: int = 0,
    shadow: str | None = None,
) -> classifying.Labelled:
    source = Source(b"", partition=partition, offset=offset, timestamp=timestamp_ms)
    return classifying.Labelled(source, species, predicted, shadow)


def test_a_batch_is_tallied_per_window_by_offset():
    """A batch is tallied per window and species, naming each record by its input offset."""
    window = NOW_MS - NOW_MS % MINUTE_MS
    batch = [
        labelled("setosa", "setosa", window + 1, offset=10),
        labelled("setosa", "setosa", window + 2, offset=11, partition=1),
        labelled("virginica", "versicolor", window + 3, offset=12),
        labelled(None, "setosa", window + 4, offset=13),  # no true label: counted under unknown
        labelled("setosa", "setosa", window - 1, offset=14),  # the window before
    ]

    counted = classifying.tally(batch, clocks(), NOW_MS, serving=MODEL)

    assert {
        (d.species, d.predictedSpecies, d.startMs): d.offsets for d in classifying.window_deltas(counted)
    } == {
        ("setosa", "setosa", window): {"0": [10], "1": [11]},
        ("virginica", "versicolor", window): {"0": [12]},
        ("unknown", "setosa", window): {"0": [13]},
        ("setosa", "setosa", window - MINUTE_MS): {"0": [14]},
    }
    assert [(d.startMs, d.models, d.compared) for d in classifying.accuracy_deltas(counted)] == [
        (
            window - MINUTE_MS,
            {MODEL: {"role": "serving", "labelled": {"0": [14]}, "correct": {"0": [14]}}},
            {},
        ),
        (
            window,
            {
                MODEL: {
                    "role": "serving",
                    "labelled": {"0": [10, 12], "1": [11]},
                    "correct": {"0": [10], "1": [11]},
                }
            },
            {},
        ),
    ]


def test_late_and_future_records_go_uncounted():
    """Late and future-stamped records are not counted, and a future one makes nothing late."""
    batch = [
        labelled("setosa", "setosa", NOW_MS + HOUR_MS),  # an hour ahead of the clock
        labelled("setosa", "setosa", NOW_MS - 30 * MINUTE_MS),  # still counts: the future one moved nothing
        labelled("setosa", "setosa", NOW_MS),
        labelled("setosa", "setosa", NOW_MS - 3 * HOUR_MS),  # past the grace on this partition
        labelled("setosa", "setosa", NOW_MS - 3 * HOUR_MS, partition=1),  # not on this one
    ]

    counted = classifying.tally(batch, clocks(), NOW_MS, serving=MODEL)

    assert (counted.skewed, counted.late) == (1, 1)
    assert (
        sum(len(offsets) for by_partition in counted.counts.values() for offsets in by_partition.values())
        == 3
    )


def test_a_key_too_large_to_send_on_is_rejected():
    """A record with a key too large to send on is dead-lettered, not classified."""
    huge = Source(
        orjson.dumps(GOOD[0]), key=b"k" * 1_000_000
    )  # the broker took it; with headers it would not fit

    checked = classifying.check([huge, Source(orjson.dumps(GOOD[0]), key=b"k")])

    assert len(checked.valid) == 1
    [(_, error)] = checked.invalid
    assert (error.reason, str(error)) == ("too_large", "key too large: 1000000 bytes, the limit is 16384")
