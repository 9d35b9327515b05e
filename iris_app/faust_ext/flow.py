"""The app's flow control: when it empties the agents' queues, the consumer reads their records again.

Faust's flow control (mode's FlowControlEvent) empties every stream queue when it
resumes the flow, and when a rebalance revokes partitions. A resume comes more than
once as a worker finishes recovery, and the consumer delivers records in between:
records it counts as delivered are then thrown away while the partition reads on
after them. The counting agents, which count a source partition's records in
offset order, then count later records first and skip the dropped ones when they
come again: a count short of the truth. So the queues' contents are handed to the
consumer as they are emptied, and it reads each partition again from its first
record thrown away (Consumer.rewind).
"""

from __future__ import annotations

from asyncio import AbstractEventLoop
from collections.abc import Callable, Iterable

from mode.utils.queues import FlowControlEvent


class FlowControl(FlowControlEvent):
    """Faust's flow control, telling `on_cleared` what each emptying of the queues throws away."""

    def __init__(self, on_cleared: Callable[[Iterable], None], loop: AbstractEventLoop | None) -> None:
        super().__init__(loop=loop)
        self._on_cleared = on_cleared

    def clear(self) -> None:
        cleared = [item for queue in self._queues for item in queue._queue]
        super().clear()
        if cleared:
            self._on_cleared(cleared)
