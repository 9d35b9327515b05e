"""The classify agent's steps, in-process and without a broker: check, score, label, tally, dead-letter."""

from __future__ import annotations

import orjson
from fixtures import GOOD, MINUTE_MS, Source, predicted_labels

from iris_app import steps
from iris_app.models import AccuracyDelta, InvalidRecord, WindowDelta
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
        Source(
            orjson.dumps(r), key=b"k%d" % i, offset=i, partition=partition, timestamp=(start_ms + i) / 1000
        )
        for i, r in enumerate(records)
    ]


def clocks() -> EventClocks:
    return EventClocks(MINUTE_MS, HOUR_MS, 5 * MINUTE_MS)


def test_check_keeps_valid_records_and_names_what_is_wrong_with_the_others():
    checked = steps.check([Source(orjson.dumps(GOOD[0])), Source(b"{}"), Source(None)])

    assert [record for _, record in checked.valid] == [GOOD[0]]
    assert [(str(error), error.reason) for _, error in checked.invalid] == [
        ("sepalLength: missing", "missing"),
        ("empty message", "empty"),
    ]


def test_a_record_the_model_cannot_score_fails_alone_and_the_rest_of_its_batch_is_classified(scorer):
    records = [*GOOD, POISON, *GOOD]
    checked = steps.check(sources(records))

    classified = steps.label(checked.valid, scorer.predict(steps.feature_rows(checked.valid)), MODEL)

    good = [*GOOD, *GOOD]
    assert [orjson.loads(out.value)["predictedSpecies"] for out in classified.outputs] == predicted_labels(
        scorer, good
    )
    [(source, error)] = classified.failed
    assert source.offset == len(GOOD)
    assert (error.reason, str(error)) == ("model", "model: Predicted class probability NaN!")


def test_a_classified_record_is_the_input_plus_its_prediction_and_model_with_its_source_in_headers(scorer):
    [source] = sources([{**GOOD[1], "extra": "dropped"}], partition=3)
    checked = steps.check([source])

    [out] = steps.label(checked.valid, scorer.predict(steps.feature_rows(checked.valid)), MODEL).outputs

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
) -> steps.Labelled:
    source = Source(b"", partition=partition, offset=offset, timestamp=timestamp_ms / 1000)
    return steps.Labelled(source, species, predicted, shadow)


def test_a_batch_is_tallied_per_window_and_species_naming_each_record_by_its_offset():
    window = NOW_MS - NOW_MS % MINUTE_MS
    batch = [
        labelled("setosa", "setosa", window + 1, offset=10),
        labelled("setosa", "setosa", window + 2, offset=11, partition=1),
        labelled("virginica", "versicolor", window + 3, offset=12),
        labelled(None, "setosa", window + 4, offset=13),  # no true label: counted under unknown
        labelled("setosa", "setosa", window - 1, offset=14),  # the window before
    ]

    counted = steps.tally(batch, clocks(), NOW_MS, serving=MODEL)

    assert {(d.species, d.predictedSpecies, d.startMs): d.offsets for d in steps.window_deltas(counted)} == {
        ("setosa", "setosa", window): {"0": [10], "1": [11]},
        ("virginica", "versicolor", window): {"0": [12]},
        ("unknown", "setosa", window): {"0": [13]},
        ("setosa", "setosa", window - MINUTE_MS): {"0": [14]},
    }
    assert [(d.startMs, d.models, d.compared) for d in steps.accuracy_deltas(counted)] == [
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


def test_with_a_shadow_model_each_window_gets_both_models_accuracy_and_their_agreement():
    window = NOW_MS - NOW_MS % MINUTE_MS
    batch = [
        labelled("setosa", "setosa", window + 1, offset=1, shadow="setosa"),  # both right
        labelled("virginica", "versicolor", window + 2, offset=2, shadow="virginica"),  # the shadow right
        labelled(None, "setosa", window + 3, offset=3, shadow="virginica"),  # no label: only compared
        labelled("setosa", "setosa", window + 4, offset=4),  # the shadow failed on it: not compared
    ]

    [delta] = steps.accuracy_deltas(steps.tally(batch, clocks(), NOW_MS, serving=MODEL, shadow="m2"))
    value = steps.add_accuracy(None, delta)

    assert value["models"] == {
        MODEL: {"role": "serving", "correct": 2, "total": 3},
        "m2": {"role": "shadow", "correct": 2, "total": 2},
    }
    assert (value["compared"], value["agreed"]) == (3, 1)
    accuracies = {
        orjson.loads(key)[1]: message for key, message in steps.window_accuracies(window, value, MINUTE_MS)
    }
    assert accuracies["m2"] == {
        "startMs": window,
        "endMs": window + MINUTE_MS,
        "modelId": "m2",
        "role": "shadow",
        "correct": 2,
        "total": 2,
        "accuracy": 1.0,
        "agreement": 1 / 3,
    }
    assert accuracies[MODEL]["accuracy"] == 2 / 3 and accuracies[MODEL]["agreement"] == 1 / 3


def test_a_label_without_a_shadow_model_compares_nothing_and_publishes_no_agreement():
    window = NOW_MS - NOW_MS % MINUTE_MS
    counted = steps.tally([labelled("setosa", "setosa", window)], clocks(), NOW_MS, serving=MODEL)

    [(key, message)] = steps.window_accuracies(
        window, steps.add_accuracy(None, steps.accuracy_deltas(counted)[0]), MINUTE_MS
    )

    assert orjson.loads(key) == [window, MODEL]
    assert "agreement" not in message


def test_a_count_takes_each_record_once_however_often_its_delta_is_replayed_in_whole_or_in_part():
    def delta(**offsets: list[int]) -> WindowDelta:
        return WindowDelta(species="setosa", predictedSpecies="setosa", startMs=0, offsets=offsets)

    value = steps.add_count(None, delta(p0=[1, 4, 7], p1=[2]))
    assert value == {"count": 4, "seen": {"p0": 7, "p1": 2}}
    assert steps.add_count(value, delta(p0=[1, 4, 7])) == value  # replayed whole
    value = steps.add_count(value, delta(p0=[4, 7, 9, 12], p1=[3]))  # replayed in part, then new records
    assert value == {"count": 7, "seen": {"p0": 12, "p1": 3}}
    value = steps.add_count(value, delta(p0=[13, 13, 14]))  # a record read twice in one batch counts once
    assert value == {"count": 9, "seen": {"p0": 14, "p1": 3}}


def test_an_accuracy_tally_takes_each_labelled_record_once():
    def delta(labelled: list[int], correct: list[int]) -> AccuracyDelta:
        part = {"role": "serving", "labelled": {"0": labelled}, "correct": {"0": correct}}
        return AccuracyDelta(startMs=0, models={MODEL: part}, compared={}, agreed={})

    first = delta([1, 2, 3], [1, 3])
    value = steps.add_accuracy(None, first)
    assert value["models"][MODEL] == {"role": "serving", "correct": 2, "total": 3}
    value = steps.add_accuracy(steps.add_accuracy(value, first), delta([3, 4], [3, 4]))
    assert (value["models"][MODEL], value["seen"]) == (
        {"role": "serving", "correct": 3, "total": 4},
        {"0": 4},
    )


def test_late_and_future_stamped_records_are_not_counted_and_a_future_one_makes_nothing_late():
    batch = [
        labelled("setosa", "setosa", NOW_MS + HOUR_MS),  # an hour ahead of the clock
        labelled("setosa", "setosa", NOW_MS - 30 * MINUTE_MS),  # still counts: the future one moved nothing
        labelled("setosa", "setosa", NOW_MS),
        labelled("setosa", "setosa", NOW_MS - 3 * HOUR_MS),  # past the grace on this partition
        labelled("setosa", "setosa", NOW_MS - 3 * HOUR_MS, partition=1),  # not on this one
    ]

    counted = steps.tally(batch, clocks(), NOW_MS, serving=MODEL)

    assert (counted.skewed, counted.late) == (1, 1)
    assert (
        sum(len(offsets) for by_partition in counted.counts.values() for offsets in by_partition.values())
        == 3
    )


def test_a_dead_letter_says_why_and_where_the_record_came_from_with_its_bytes_and_headers():
    source = Source(b"\xff\xfe not utf-8", key=b"k1", partition=2, offset=42, headers=[("trace", b"abc")])

    letter = steps.dead_letter(source, InvalidRecord("not_json", "not JSON: unexpected character"))

    assert orjson.loads(letter.value) == {
        "error": "not JSON: unexpected character",
        "topic": "iris",
        "partition": 2,
        "offset": 42,
        "timestamp": NOW_MS,
        "key": "k1",
        "value": "//4gbm90IHV0Zi04",  # base64: the bytes are not UTF-8
    }
    assert (letter.key, letter.timestamp_ms, letter.headers) == (b"k1", NOW_MS, [("trace", b"abc")])


KAFKA_MAX_MESSAGE_BYTES = 1_048_576


def test_a_record_with_a_key_too_large_to_send_on_is_dead_lettered_not_classified():
    huge = Source(
        orjson.dumps(GOOD[0]), key=b"k" * 1_000_000
    )  # the broker took it; with headers it would not fit

    checked = steps.check([huge, Source(orjson.dumps(GOOD[0]), key=b"k")])

    assert len(checked.valid) == 1
    [(_, error)] = checked.invalid
    assert (error.reason, str(error)) == ("too_large", "key too large: 1000000 bytes, the limit is 16384")


def test_a_dead_letter_always_fits_a_kafka_message_cut_with_the_original_sizes():
    cases = {
        "control bytes, escaped six times over in JSON": Source(b"\x01" * 170_000),
        "non-UTF-8 bytes, in base64": Source(b"\xff" * 760_000),
        "a huge key": Source(b"{}", key=b"k" * 500_000),
        "huge headers, and the rest": Source(
            b"\xff" * 760_000, key=b"k" * 500_000, headers=[("h", b"x" * 600_000), ("i", b"y" * 300_000)]
        ),
    }
    for case, source in cases.items():
        letter = steps.dead_letter(source, InvalidRecord("too_large", "message too large"))

        fields = orjson.loads(letter.value)
        headers = sum(len(name) + len(value) for name, value in letter.headers)
        assert len(letter.value) + len(letter.key or b"") + headers < KAFKA_MAX_MESSAGE_BYTES, case
        assert fields["truncated"] is True, case
        assert (fields["keyBytes"], fields["valueBytes"]) == (len(source.key), len(source.value)), case
    assert (letter.headers, fields["headerBytes"]) == ([], 900_002)  # the last case's headers: dropped


def test_a_window_count_is_keyed_by_its_species_pair_and_window_start():
    delta = steps.window_deltas(
        steps.tally([labelled("setosa", "virginica", NOW_MS)], clocks(), NOW_MS, MODEL)
    )[0]

    key, count = steps.window_count(delta, 7, MINUTE_MS)

    start = NOW_MS - NOW_MS % MINUTE_MS
    assert orjson.loads(key) == ["setosa", "virginica", start]
    assert count.to_representation() == {
        "species": "setosa",
        "predictedSpecies": "virginica",
        "startMs": start,
        "endMs": start + MINUTE_MS,
        "count": 7,
    }
