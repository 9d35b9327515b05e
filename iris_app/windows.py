"""Tumbling event-time windows: which window a timestamp falls in, and which records may count.

Event time is kept per input partition, as Kafka Streams keeps stream time per
task: one partition's old or replayed data makes no other partition's records
late. A timestamp that is negative or too far ahead of the worker's clock is
classified but neither counted nor allowed to move event time (SPEC).
"""

from __future__ import annotations

from enum import Enum


def window_start(timestamp_ms: int, size_ms: int) -> int:
    """The start of the epoch-aligned window holding `timestamp_ms`."""
    return timestamp_ms - timestamp_ms % size_ms


class Verdict(Enum):
    COUNTED = "counted"
    LATE = "late"  # its window ended more than the grace before the partition's event time
    SKEWED = "skewed"  # negative, or too far ahead of the worker's clock


class EventClocks:
    """The newest event time seen on each input partition, and whether a record may be counted."""

    def __init__(self, size_ms: int, grace_ms: int, max_skew_ms: int) -> None:
        self.size_ms = size_ms
        self.grace_ms = grace_ms
        self.max_skew_ms = max_skew_ms
        self.newest_ms: dict[int, int] = {}

    def judge(self, partition: int, timestamp_ms: int, now_ms: int) -> Verdict:
        """Advance `partition`'s event time with a record's timestamp, and say whether it counts."""
        if timestamp_ms < 0 or timestamp_ms > now_ms + self.max_skew_ms:
            return Verdict.SKEWED
        newest = self.newest_ms.get(partition)
        if newest is None or timestamp_ms > newest:
            self.newest_ms[partition] = newest = timestamp_ms
        if window_start(timestamp_ms, self.size_ms) + self.size_ms <= newest - self.grace_ms:
            return Verdict.LATE
        return Verdict.COUNTED
