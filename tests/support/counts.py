"""Window counts read until they reach the truth, and, when one falls short, why: the deltas that carried
its records, replayed through the app's own counting step."""

from __future__ import annotations

from collections import Counter

import orjson

from iris_app.counting import add_count
from iris_app.models import WindowDelta
from iris_app.windows import window_start

from .kafka import Kafka, Message
from .records import MINUTE_MS, predicted_labels

Window = tuple[str, str, int]  # (species, predictedSpecies, startMs)


def latest_counts(messages: list[Message]) -> dict[Window, int]:
    """The latest count of each window on iris-classified-window-counts: what compaction keeps."""
    return {tuple(orjson.loads(m.key)): m.json()["count"] for m in messages}


def counts_reaching(kafka: Kafka, truth: Counter, timeout: float) -> dict[Window, int]:
    """The latest published count of each window, read until every window of `truth` reaches its count, or
    as they stand after `timeout`."""
    try:
        return latest_counts(
            kafka.read_until(
                "iris-classified-window-counts",
                lambda ms: all(latest_counts(ms).get(k, 0) >= n for k, n in truth.items()),
                timeout=timeout,
            )
        )
    except AssertionError:  # one is short, or a worker slow: the counts as they stand
        return latest_counts(kafka.read_all("iris-classified-window-counts"))


def differences(counted: dict[Window, int], truth: Counter) -> dict[Window, tuple[int | None, int | None]]:
    """(count, truth) of each window where the two differ."""
    return {
        k: (counted.get(k), truth.get(k))
        for k in counted.keys() | truth.keys()
        if counted.get(k) != truth.get(k)
    }


def why_short(kafka: Kafka, windows: list[Window], sources: list[tuple[Message, str]]) -> str:
    """The trail of each window of `windows`, from the deltas and the count table's changelog."""
    deltas = [(m, m.json()) for m in kafka.read_all("iris-window-deltas")]
    changelog = kafka.read_all("iris_app-window-counts-changelog")
    return "".join(count_trail(window, sources, deltas, changelog) for window in windows)


def counted_onto(value: dict | None, partition: str, offset: int) -> bool:
    """Whether the app's add_count counts the record at `offset` of `partition` onto the count `value`."""
    one = WindowDelta(species="", predictedSpecies="", startMs=0, offsets={partition: [offset]})
    return add_count(value, one)["count"] > (value or {"count": 0})["count"]


def count_trail(
    window: Window,
    sources: list[tuple[Message, str]],
    all_deltas: list[tuple[Message, dict]],
    changelog: list[Message],
) -> str:
    """Why a window's count is short: its records that no delta carried, and those a delta carried but the
    count skipped (the deltas replayed through add_count), with the delta that set the mark."""
    species, predicted, start = window
    expected = {
        (m.partition, m.offset)
        for m, label in sources
        if (m.json()["species"], label, window_start(m.timestamp, MINUTE_MS)) == window
    }
    deltas = [(m, d) for m, d in all_deltas if (d["species"], d["predictedSpecies"], d["startMs"]) == window]
    value, marked_by, carried, counted, lines = None, {}, set(), set(), []
    for m, delta in deltas:
        marks = (value or {"seen": {}})["seen"]
        for partition, offsets in delta["offsets"].items():
            p = int(partition)
            carried |= {(p, o) for o in offsets}
            counting = {(p, o) for o in offsets if counted_onto(value, partition, o)}
            skipped = {(p, o) for o in offsets} - counting - counted
            counted |= counting
            if skipped:
                lines.append(
                    f"  delta @{m.offset} skipped {sorted(skipped)}: mark {marks.get(partition, -1)}, "
                    f"delta @{marked_by.get(partition)}"
                )
        value = add_count(value, WindowDelta(**delta))
        marked_by |= {p: m.offset for p, mark in value["seen"].items() if mark != marks.get(p)}
    listing = [
        f"  @{m.offset} t={m.timestamp} "
        + " ".join(f"{p}:{min(o)}-{max(o)}({len(o)})" for p, o in d["offsets"].items() if o)
        for m, d in deltas
    ]
    writes = [
        m
        for m in changelog
        if m.key and f"{species}/{predicted}".encode() in m.key and str(start // 1000).encode() in m.key
    ]
    values = [f"  @{m.offset} t={m.timestamp} {m.value[:200]!r}" for m in writes]
    wrong = wrong_values(writes, carried)
    return "\n".join(
        [
            f"--- {window}: {len(expected)} records, {len(carried & expected)} carried by deltas, "
            f"{len(counted & expected)} counted replaying them; carried by no delta: "
            f"{sorted(expected - carried)[:20]}; counted but not expected: {sorted(counted - expected)[:20]}",
            *lines,
            "deltas:",
            *listing[-60:],
            "changelog (last 10):",
            *values[-10:],
            "changelog values whose count is not that of the records below their marks (first 5):",
            *wrong[:5],
            "",
        ]
    )


def wrong_values(writes: list[Message], carried: set[tuple[int, int]]) -> list[str]:
    """The changelog values (each with the one before it) whose count differs from the number of carried
    records at or below their own marks: where the table lost an update, or counted one twice."""
    lines, before = [], None
    for m in writes:
        value = m.json() if m.value else None
        if value is not None:
            marks = {int(p): mark for p, mark in value["seen"].items()}
            below = sum(1 for p, o in carried if o <= marks.get(p, -1))
            if below != value["count"]:
                previous = f"@{before.offset} t={before.timestamp} {before.value!r}" if before else "none"
                lines.append(
                    f"  @{m.offset} t={m.timestamp} {m.value!r}: {below} below its marks; before: {previous}"
                )
        before = m
    return lines


def truth_of(kafka: Kafka, keys: list[bytes], scorer) -> tuple[list[tuple[Message, str]], Counter]:
    """The records of `keys` as `iris` holds them, each with the label direct scoring gives it, and the
    count each window must reach: what the workers must have published once every record is counted."""
    wanted = set(keys)
    inputs = {m.key: m for m in kafka.read_until("iris", lambda ms: wanted <= {m.key for m in ms})}
    sources = [inputs[key] for key in keys]
    labels = predicted_labels(scorer, [m.json() for m in sources])
    truth = Counter(
        (m.json()["species"], label, window_start(m.timestamp, MINUTE_MS))
        for m, label in zip(sources, labels)
    )
    return list(zip(sources, labels)), truth
