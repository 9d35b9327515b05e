"""Tumbling event-time windows: which window a timestamp falls in, and which records are too late."""

from __future__ import annotations


def window_start(timestamp_ms: int, size_ms: int) -> int:
    """The start of the epoch-aligned window holding `timestamp_ms`."""
    return timestamp_ms - timestamp_ms % size_ms


class EventClock:
    """The newest event time seen, and whether a record's window may still be counted.

    A record counts while its window ended less than `grace_ms` before the newest
    event time; older windows have expired from the table (SPEC).
    """

    def __init__(self, size_ms: int, grace_ms: int) -> None:
        self.size_ms = size_ms
        self.grace_ms = grace_ms
        self.newest_ms: int | None = None

    def observe(self, timestamp_ms: int) -> None:
        if self.newest_ms is None or timestamp_ms > self.newest_ms:
            self.newest_ms = timestamp_ms

    def is_late(self, start_ms: int) -> bool:
        """True when the window starting at `start_ms` is past counting."""
        return self.newest_ms is not None and start_ms + self.size_ms <= self.newest_ms - self.grace_ms
