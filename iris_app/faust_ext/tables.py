"""Windowed tables that expire windows by event time, and whose changelog writes can be awaited.

- Faust expires windows relative to time.time() (`Table._del_old_keys`); replayed
  or late data would then lose windows that are still open in event time. Here
  each partition's newest window end (`_partition_latest_timestamp`) stands in
  for "now".
- Faust sends a table's changelog writes in the background and only logs one
  that fails (`_on_changelog_sent`); an agent would then acknowledge its input
  though the state it wrote is lost. Here the writes are kept until the agent
  takes and awaits them (`take_writes`), so a failed write fails the agent.
"""

from __future__ import annotations

import asyncio
from heapq import heappop
from typing import Any

import faust


class EventTimeTable(faust.Table):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._writes: list[asyncio.Future] = []

    def send_changelog(self, *args: Any, **kwargs: Any) -> faust.types.FutureMessage:
        write = super().send_changelog(*args, **kwargs)
        self._writes.append(write)
        return write

    def take_writes(self) -> list[asyncio.Future]:
        """The changelog writes since the last call: await them before acknowledging the input."""
        writes, self._writes = self._writes, []
        return writes

    def _on_changelog_sent(self, fut: faust.types.FutureMessage) -> None:
        if not fut.cancelled() and fut.exception() is None:  # a failure is raised where it is awaited
            super()._on_changelog_sent(fut)

    async def _del_old_keys(self) -> None:
        for partition, window_ends in self._partition_timestamps.items():
            newest = self._partition_latest_timestamp[partition]
            while window_ends and self.window.stale(window_ends[0], newest):
                end = heappop(window_ends)
                for key in self._partition_timestamp_keys.pop((partition, end), ()):
                    self.data.pop(key, None)
