"""The counting agents' steps (`count` and `tally_accuracy`), as plain functions: each record counted once.

A table value keeps, next to its figures, the highest input offset it has counted
from each source partition ("seen"), and both change in one changelog record. A
record is counted when its offset is above that mark: each source partition's
records reach the counting agents in offset order (a batch's outputs are delivered
before the next batch is sent, the consumer hands records over only in order from
a seek, and a new owner of a partition starts from its committed offset, after
every delta its records caused: no commit passes an unacknowledged record; see
faust_ext), so a record at or below the mark has been counted, and a replay of it
is recognised and skipped. A delta's lists all come from one batch, so they share
the marks of the value they add to.
"""

from __future__ import annotations

from typing import Any

import orjson

from .models import AccuracyDelta, Offsets, WindowCount, WindowDelta


def above(seen: dict[str, int], offsets: Offsets) -> int:
    """How many distinct records of `offsets` lie above the marks of `seen`: those not counted yet.

    Distinct: a batch can hold a record twice (read again after a seek back), and it counts once."""
    return sum(
        len({offset for offset in listed if offset > seen.get(partition, -1)})
        for partition, listed in offsets.items()
    )


def marks_after(seen: dict[str, int], *offsets: Offsets) -> dict[str, int]:
    """The marks of `seen` moved past every offset of `offsets`."""
    marks = dict(seen)
    for each in offsets:
        for partition, listed in each.items():
            if listed:
                marks[partition] = max(marks.get(partition, -1), *listed)
    return marks


def add_count(value: dict[str, Any] | None, delta: WindowDelta) -> dict[str, Any]:
    """A window count (`{"count", "seen"}`) after a delta, each record counted once however often replayed."""
    value = value or {"count": 0, "seen": {}}
    seen = value["seen"]
    return {"count": value["count"] + above(seen, delta.offsets), "seen": marks_after(seen, delta.offsets)}


def add_accuracy(value: dict[str, Any] | None, delta: AccuracyDelta) -> dict[str, Any]:
    """A window's accuracy tallies (`{"models": {modelId: {"role", "correct", "total"}}, "compared", "agreed",
    "seen"}`) after a delta, each record once however often replayed."""
    value = value or {"models": {}, "compared": 0, "agreed": 0, "seen": {}}
    seen, models = value["seen"], dict(value["models"])
    for model_id, part in delta.models.items():
        before = models.get(model_id, {"correct": 0, "total": 0})
        models[model_id] = {
            "role": part["role"],
            "correct": before["correct"] + above(seen, part["correct"]),
            "total": before["total"] + above(seen, part["labelled"]),
        }
    return {
        "models": models,
        "compared": value["compared"] + above(seen, delta.compared),
        "agreed": value["agreed"] + above(seen, delta.agreed),
        "seen": marks_after(seen, delta.compared, *(part["labelled"] for part in delta.models.values())),
    }


def window_count(delta: WindowDelta, count: int, window_ms: int) -> tuple[bytes, WindowCount]:
    """The key and message of a window's count after an update (SPEC: the key names the triple)."""
    return orjson.dumps([delta.species, delta.predictedSpecies, delta.startMs]), WindowCount(
        species=delta.species,
        predictedSpecies=delta.predictedSpecies,
        startMs=delta.startMs,
        endMs=delta.startMs + window_ms,
        count=count,
    )


def window_accuracies(
    start_ms: int, value: dict[str, Any], window_ms: int
) -> list[tuple[bytes, dict[str, Any]]]:
    """The keys and messages of a window's accuracy after an update, one per model (SPEC): `accuracy` is
    null while the window has no labelled record; `agreement` comes while a shadow model is compared."""
    outputs = []
    for model_id, tallies in value["models"].items():
        correct, total = tallies["correct"], tallies["total"]
        message = {
            "startMs": start_ms,
            "endMs": start_ms + window_ms,
            "modelId": model_id,
            "role": tallies["role"],
            "correct": correct,
            "total": total,
            "accuracy": correct / total if total else None,
        }
        if value["compared"]:
            message["agreement"] = value["agreed"] / value["compared"]
        outputs.append((orjson.dumps([start_ms, model_id]), message))
    return outputs
