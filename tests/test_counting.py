"""The counting agents' steps: each record counted once however often replayed, and what is published."""

from __future__ import annotations

import orjson
from support.records import MINUTE_MS
from test_classifying import MODEL, NOW_MS, clocks, labelled

from iris_app import classifying, counting
from iris_app.models import AccuracyDelta, WindowDelta


def test_a_count_takes_each_record_once():
    """A count takes each record once however often its delta is replayed, in whole or in part."""

    def delta(**offsets: list[int]) -> WindowDelta:
        return WindowDelta(species="setosa", predictedSpecies="setosa", startMs=0, offsets=offsets)

    value = counting.add_count(None, delta(p0=[1, 4, 7], p1=[2]))
    assert value == {"count": 4, "seen": {"p0": 7, "p1": 2}}
    assert counting.add_count(value, delta(p0=[1, 4, 7])) == value  # replayed whole
    value = counting.add_count(value, delta(p0=[4, 7, 9, 12], p1=[3]))  # replayed in part, then new records
    assert value == {"count": 7, "seen": {"p0": 12, "p1": 3}}
    value = counting.add_count(value, delta(p0=[13, 13, 14]))  # a record read twice in one batch counts once
    assert value == {"count": 9, "seen": {"p0": 14, "p1": 3}}


def test_accuracy_takes_each_labelled_record_once():
    def delta(labelled: list[int], correct: list[int]) -> AccuracyDelta:
        part = {"role": "serving", "labelled": {"0": labelled}, "correct": {"0": correct}}
        return AccuracyDelta(startMs=0, models={MODEL: part}, compared={}, agreed={})

    first = delta([1, 2, 3], [1, 3])
    value = counting.add_accuracy(None, first)
    assert value["models"][MODEL] == {"role": "serving", "correct": 2, "total": 3}
    value = counting.add_accuracy(counting.add_accuracy(value, first), delta([3, 4], [3, 4]))
    assert (value["models"][MODEL], value["seen"]) == (
        {"role": "serving", "correct": 3, "total": 4},
        {"0": 4},
    )


def test_a_shadow_gets_accuracy_and_agreement():
    """With a shadow model each window gets both models' accuracy and their agreement."""
    window = NOW_MS - NOW_MS % MINUTE_MS
    batch = [
        labelled("setosa", "setosa", window + 1, offset=1, shadow="setosa"),  # both right
        labelled("virginica", "versicolor", window + 2, offset=2, shadow="virginica"),  # the shadow right
        labelled(None, "setosa", window + 3, offset=3, shadow="virginica"),  # no label: only compared
        labelled("setosa", "setosa", window + 4, offset=4),  # the shadow failed on it: not compared
    ]

    [delta] = classifying.accuracy_deltas(
        classifying.tally(batch, clocks(), NOW_MS, serving=MODEL, shadow="m2")
    )
    value = counting.add_accuracy(None, delta)

    assert value["models"] == {
        MODEL: {"role": "serving", "correct": 2, "total": 3},
        "m2": {"role": "shadow", "correct": 2, "total": 2},
    }
    assert (value["compared"], value["agreed"]) == (3, 1)
    accuracies = {
        orjson.loads(key)[1]: message for key, message in counting.window_accuracies(window, value, MINUTE_MS)
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


def test_no_shadow_model_no_agreement():
    """Without a shadow model nothing is compared and no agreement is published."""
    window = NOW_MS - NOW_MS % MINUTE_MS
    counted = classifying.tally([labelled("setosa", "setosa", window)], clocks(), NOW_MS, serving=MODEL)

    [(key, message)] = counting.window_accuracies(
        window, counting.add_accuracy(None, classifying.accuracy_deltas(counted)[0]), MINUTE_MS
    )

    assert orjson.loads(key) == [window, MODEL]
    assert "agreement" not in message


def test_a_window_count_is_keyed_by_pair_and_start():
    """A window count is keyed by its (species, predictedSpecies) and its window start."""
    delta = classifying.window_deltas(
        classifying.tally([labelled("setosa", "virginica", NOW_MS)], clocks(), NOW_MS, MODEL)
    )[0]

    key, count = counting.window_count(delta, 7, MINUTE_MS)

    start = NOW_MS - NOW_MS % MINUTE_MS
    assert orjson.loads(key) == ["setosa", "virginica", start]
    assert count.to_representation() == {
        "species": "setosa",
        "predictedSpecies": "virginica",
        "startMs": start,
        "endMs": start + MINUTE_MS,
        "count": 7,
    }
