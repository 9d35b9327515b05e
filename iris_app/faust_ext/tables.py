"""Windowed tables that expire windows by event time, and whose changelog writes can be awaited."""

from __future__ import annotations

import asyncio
from typing import Any

import faust


class EventTimeTable(faust.Table):
    """A table whose windows expire by their partition's event time; the agent awaits its changelog writes."""

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
        """Delete every window past the grace of its partition's event time, with a changelog tombstone.

        It scans the RocksDB store of each active partition (`Store._dbs`) and takes the newest
        window start found there or set since as the partition's event time.
        """
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
