"""End to end on a real broker: records in `iris` come out classified, dead-lettered and counted."""

from __future__ import annotations

from collections import Counter

import orjson
from aiokafka.partitioner import DefaultPartitioner
from support.records import GOOD, MINUTE_MS, by_key, keyed, now_ms, predicted_labels

from iris_app.settings import Settings
from iris_app.windows import window_start


def test_good_records_come_out_classified(worker, kafka, scorer):
    """With exactly the SPEC's keys, the model that scored them, their event time and source headers."""
    records = GOOD * 4
    keys = keyed("good", len(records))
    sent_at = now_ms()
    kafka.produce(
        "iris",
        [
            (key, orjson.dumps({**record, "comment": "ignored extra key"}), sent_at + i)
            for i, (key, record) in enumerate(zip(keys, records))
        ],
    )

    out = by_key(kafka.read_until("iris-classified", lambda ms: len(by_key(ms, keys)) == len(keys)), keys)

    expected_labels = predicted_labels(scorer, records)
    partitions = list(range(Settings().partitions))
    for i, (key, record, label) in enumerate(zip(keys, records, expected_labels)):
        message = out[key]
        assert message.json() == {**record, "predictedSpecies": label, "modelId": scorer.model_id}
        assert list(message.json())[-2:] == ["predictedSpecies", "modelId"]
        assert message.timestamp == sent_at + i  # event time is carried to the output
        source = dict(message.headers)  # where it came from, for consumers that drop duplicates
        assert (source["iris-source-topic"], source["iris-source-partition"]) == (
            b"iris",
            b"%d" % message.partition,
        )
        assert int(source["iris-source-offset"]) >= 0
        # In the partition Kafka's default partitioner picks for its key (murmur2, as the Java clients).
        assert message.partition == DefaultPartitioner()(key, partitions, partitions)
    assert set(expected_labels) == {"setosa", "versicolor", "virginica"}


BAD = {
    b"not json": "not JSON",
    b"[1, 2, 3]": "not a JSON object but list",
    b'{"sepalLength":5.1,"sepalWidth":3.5,"petalLength":1.4}': "petalWidth: missing",
    b'{"sepalLength":"5.1","sepalWidth":3.5,"petalLength":1.4,"petalWidth":0.2}': "sepalLength: not a number",
    b'{"sepalLength":5.1,"sepalWidth":-3.5,"petalLength":1.4,"petalWidth":0.2}': "sepalWidth: negative",
    b'{"sepalLength":5.1,"sepalWidth":3.5,"petalLength":1e999,"petalWidth":0.2}': "not JSON",
    b'{"sepalLength":5.1,"sepalWidth":3.5,"petalLength":1.4,"petalWidth":0.2,"species":"rose"}': (
        'species: unknown "rose"'
    ),
    b'{"sepalLength":5.1,"pad":"' + b"x" * 20_000 + b'"}': "message too large",
    b"\xff\xfe not utf-8": "not JSON",
}


def test_bad_records_go_to_the_dlq_with_their_reason(worker, kafka):
    """And the good ones between them are unaffected."""
    bad_keys = keyed("bad", len(BAD))
    good_keys = keyed("fine", len(BAD))
    produced = []
    for bad_key, good_key, value in zip(bad_keys, good_keys, BAD):
        produced += [(bad_key, value, None), (good_key, orjson.dumps(GOOD[0]), None)]
    kafka.produce("iris", produced)

    dlq = by_key(
        kafka.read_until("iris-dlq", lambda ms: len(by_key(ms, bad_keys)) == len(bad_keys)), bad_keys
    )
    classified = kafka.read_until("iris-classified", lambda ms: len(by_key(ms, good_keys)) == len(good_keys))

    for key, (value, reason) in zip(bad_keys, BAD.items()):
        letter = dlq[key].json()
        assert letter["error"].startswith(reason), letter["error"]
        assert letter["topic"] == "iris"
        assert letter["key"] == key.decode()
        assert isinstance(letter["offset"], int) and isinstance(letter["partition"], int)
        assert letter["timestamp"] == dlq[key].timestamp
        try:
            assert letter["value"] == value.decode()
        except UnicodeDecodeError:
            assert letter["value"] == "//4gbm90IHV0Zi04"  # base64 of the original bytes
    assert not by_key(classified, bad_keys), "a bad record was classified"
    assert all(m.json()["predictedSpecies"] == "setosa" for m in by_key(classified, good_keys).values())


def test_an_empty_message_goes_to_the_dlq(worker, kafka):
    """One with no value (a tombstone), and one with an empty value."""
    tombstone, empty = keys = keyed("empty", 2)
    kafka.produce("iris", [(tombstone, None, None), (empty, b"", None)])

    dlq = by_key(kafka.read_until("iris-dlq", lambda ms: len(by_key(ms, keys)) == 2), keys)

    assert [dlq[key].json()["error"] for key in keys] == ["empty message", "empty message"]
    assert dlq[tombstone].json()["value"] is None
    assert dlq[empty].json()["value"] == ""


def latest_counts(messages, windows: set[int]) -> dict[tuple[str, str, int], int]:
    """The latest count of each (species, predictedSpecies, startMs) in `windows`: what compaction keeps."""
    latest = {}
    for m in messages:
        count = m.json()
        if count["startMs"] in windows:
            assert orjson.loads(m.key) == [count["species"], count["predictedSpecies"], count["startMs"]]
            latest[count["species"], count["predictedSpecies"], count["startMs"]] = count["count"]
    return latest


def test_records_count_in_their_event_time_window(worker, kafka, scorer):
    # Two minutes a few minutes back, well within the grace period, used by no other test.
    first = window_start(now_ms(), MINUTE_MS) - 10 * MINUTE_MS
    windows = {first, first + MINUTE_MS}
    records = [(GOOD[i % len(GOOD)], first + MINUTE_MS * (i % 2) + 1_000 * i) for i in range(30)]
    kafka.produce("iris", [(None, orjson.dumps(r), ts) for r, ts in records])

    labels = predicted_labels(scorer, [r for r, _ in records])
    expected = Counter(
        (r.get("species", "unknown"), label, window_start(ts, MINUTE_MS))
        for (r, ts), label in zip(records, labels)
    )
    messages = kafka.read_until(
        "iris-classified-window-counts", lambda ms: latest_counts(ms, windows) == expected
    )

    assert sum(latest_counts(messages, windows).values()) == len(records)
    for m in messages:
        count = m.json()
        if count["startMs"] in windows:
            assert count["endMs"] == count["startMs"] + MINUTE_MS
            assert set(count) == {"species", "predictedSpecies", "startMs", "endMs", "count"}


def test_a_late_record_is_classified_not_counted(worker, kafka):
    """Later than the grace period."""
    key = keyed("late", 1)[0]
    now = now_ms()
    late = window_start(now, MINUTE_MS) - 3 * 60 * MINUTE_MS  # three hours back: past the 1 h grace
    marker = window_start(now, MINUTE_MS) - 20 * MINUTE_MS
    setosa = orjson.dumps(GOOD[0])
    # One key, so one partition: the worker sees them in this order.
    kafka.produce("iris", [(key, setosa, now), (key, setosa, late + 5), (key, setosa, marker + 5)])

    messages = kafka.read_until(
        "iris-classified-window-counts",
        lambda ms: ("setosa", "setosa", marker) in latest_counts(ms, {marker}),
    )
    assert latest_counts(messages, {late}) == {}
    classified = kafka.read_until("iris-classified", lambda ms: len([m for m in ms if m.key == key]) == 3)
    assert sorted(m.timestamp for m in classified if m.key == key) == [late + 5, marker + 5, now]


def test_window_updates_publish_the_accuracy(worker, kafka, scorer):
    """Each window update publishes the accuracy over its labelled records."""
    window = window_start(now_ms(), MINUTE_MS) - 30 * MINUTE_MS  # used by no other test
    records = GOOD * 3  # one in five without a true label: not counted toward accuracy
    kafka.produce("iris", [(None, orjson.dumps(r), window + i) for i, r in enumerate(records)])

    labels = predicted_labels(scorer, records)
    labelled = [(r["species"], label) for r, label in zip(records, labels) if "species" in r]
    correct = sum(species == label for species, label in labelled)
    expected = {
        "startMs": window,
        "endMs": window + MINUTE_MS,
        "modelId": scorer.model_id,
        "role": "serving",
        "correct": correct,
        "total": len(labelled),
        "accuracy": correct / len(labelled),
    }  # no shadow model: no agreement

    def latest(messages):
        updates = [m for m in messages if orjson.loads(m.key) == [window, scorer.model_id]]
        return updates[-1].json() if updates else None

    messages = kafka.read_until("iris-classified-window-accuracy", lambda ms: latest(ms) == expected)
    assert latest(messages) == expected
    assert len(labelled) == 12 and 0 < correct <= 12
