"""Windowed tables that expire windows by event time, and whose changelog writes can be awaited.

- Faust expires windows relative to time.time() (`Table._del_old_keys`); replayed
  or late data would then lose windows that are still open in event time. Faust
  also only expires the windows it saw set since it started (its heaps of window
  ends, `_partition_timestamps`, which grow with every update), never those
  restored from disk or the changelog, and it sends no tombstone. Here a cleanup
  scans the RocksDB store of each active partition (`Store._dbs`), takes the
  newest window start found there or set since as the partition's event time,
  and deletes every window past the grace, with a tombstone in the changelog
  (so a compacted changelog shrinks). `expired()` tells an agent that a window
  is gone, so it does not start it again at zero.
- Faust sends a table's changelog writes in the background and only logs one
  that fails (`_on_changelog_sent`); an agent would then acknowledge its input
  though the state it wrote is lost. Here the writes are kept until the agent
  takes and awaits them (`take_writes`), so a failed write fails the agent.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust


class EventTimeTable(faust.Table):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._writes: list[asyncio.Future] = []
        self.newest_start: dict[int, float] = {}  # event time per partition: its newest window start (s)

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

    def _maybe_set_key_ttl(self, key: Any, partition: int) -> None:
        start = key[1][0]
        if start > self.newest_start.get(partition, start - 1):
            self.newest_start[partition] = start

    def _maybe_del_key_ttl(self, key: Any, partition: int) -> None:
        pass  # nothing kept per key

    def expired(self, partition: int, start_ms: int) -> bool:
        """Whether the window starting at `start_ms` on `partition` is past the grace of its event time."""
        newest = self.newest_start.get(partition)
        return newest is not None and start_ms / 1000 <= newest - self.window.expires

    async def on_recovery_completed(self, active_tps: set, standby_tps: set) -> None:
        await super().on_recovery_completed(active_tps, standby_tps)
        await self._del_old_keys()  # restored windows: their partition's event time, and expiry

    async def _del_old_keys(self) -> None:
        store, changelog = self.data, self.changelog_topic.get_topic_name()
        actives = {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == changelog}
        for partition, db in list(store._dbs.items()):
            if partition not in actives:
                continue  # a standby: its active owner expires it, and the tombstones reach it here
            windows = [(raw, store._decode_key(raw)[1][0]) for raw in store._visible_keys(db)]
            for _, start in windows:
                self._maybe_set_key_ttl((None, (start, None)), partition)
            for raw, start in windows:
                if self.expired(partition, round(start * 1000)):
                    store._del(raw)
                    faust.Table.send_changelog(
                        self, partition, raw, None, key_serializer="raw", value_serializer="raw"
                    )
            await asyncio.sleep(0)  # a long scan lets the agents run
