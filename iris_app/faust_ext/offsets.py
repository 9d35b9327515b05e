"""What a partition's offsets mean to the consumer: the last delivered, a jump, the acknowledged ranges.

The read offset is the last offset delivered (Faust's `_read_offset`, kept so by Consumer.seek): a fetch
is delivered from the record after it, and a fetch that begins further on has jumped records.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from aiokafka.structs import ConsumerRecord


def read_before(offset: int | None) -> int | None:
    """The last offset read before reading from `offset` (None: no offset, anything may come).

    Seeked to 42: 41 counts as read. Seeked to 0: -1, and a fetch beginning past 0 has jumped."""
    return None if offset is None else offset - 1


def already_delivered(offset: int, last: int | None) -> bool:
    """Whether the record at `offset` has been delivered, `last` being the last offset delivered.

    Read offset 41: a fetch of 40, 41, 42 delivers only 42."""
    return last is not None and offset <= last


def jumped(offset: int, last: int | None) -> bool:
    """Whether a fetch has moved past records not delivered yet, `last` being the last offset delivered.

    Read offset 41, fetch starts at 44: 42 and 43 are unread, so the partition is seeked to 42."""
    return last is not None and offset > last + 1


def contiguous(records: Sequence[ConsumerRecord]) -> int:
    """How many of `records` (in offset order) follow each other without a gap from the first.

    40, 41, 42: 3; 40, 41, 45, 46: 2 (45 jumped 42-44)."""
    n = len(records)
    if n == 0 or records[-1].offset - records[0].offset == n - 1:
        return n
    first = records[0].offset
    return next(i for i, record in enumerate(records) if record.offset != first + i)


class AckedRanges:
    """A partition's acknowledged offsets as ranges, and the offset they let a commit reach."""

    __slots__ = ("ranges",)

    def __init__(self) -> None:
        self.ranges: list[list[int]] = []  # [first, last], sorted, not touching each other

    def add(self, first: int, last: int) -> int:
        """Acknowledge `first`..`last`; the number of offsets newly acknowledged."""
        ranges = self.ranges
        if ranges and ranges[-1][1] + 1 == first:  # the usual case: right after the last one
            ranges[-1][1] = last
        else:
            bisect.insort(ranges, [first, last])
        return last - first + 1

    def commit_offset(self, committed: int | None) -> int | None:
        """The offset to commit: one past the run of acknowledged offsets starting at `committed` (the offset
        committed now); None while the record at `committed` is unacknowledged.

        Committed 100, acknowledged 100-149 and 150-199: 200. Acknowledged 101-199 only: None."""
        ranges = self.ranges
        if not ranges or (committed is not None and ranges[0][0] > committed):
            return None
        end = ranges[0][1]
        for first, last in ranges[1:]:
            if first > end + 1:
                break
            end = max(end, last)
        return end + 1

    def committed(self, offset: int) -> None:
        """Forget the offsets below `offset`, now committed."""
        ranges = self.ranges
        while ranges and ranges[0][1] < offset:
            del ranges[0]
        if ranges and ranges[0][0] < offset:
            ranges[0][0] = offset

    def __bool__(self) -> bool:
        return bool(self.ranges)
