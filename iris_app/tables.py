"""The windowed tables: per-window counts of (species, predictedSpecies), and per-window accuracy.

Both are RocksDB-backed, changelogged tumbling-window Tables on event time.
"""

from __future__ import annotations

from heapq import heappop

import faust

from .app import app, settings


class EventTimeTable(faust.Table):
    """A windowed Table whose old windows expire by event time, not by the wall clock.

    Faust expires windows relative to time.time(); replayed or late data would then
    lose windows that are still open in event time. Here each partition's newest
    window end stands in for "now".
    """

    async def _del_old_keys(self) -> None:
        for partition, window_ends in self._partition_timestamps.items():
            newest = self._partition_latest_timestamp[partition]
            while window_ends and self.window.stale(window_ends[0], newest):
                end = heappop(window_ends)
                for key in self._partition_timestamp_keys.pop((partition, end), ()):
                    self.data.pop(key, None)


def count_key(species: str, predicted_species: str) -> str:
    """The count table's key (and its delta topic's, so both partition alike)."""
    return f"{species}/{predicted_species}"


ACCURACY_KEY = "all"  # one key: a window's accuracy spans all species, and its updates are few


def window_start_of(event: faust.EventT) -> float:
    """Event time for the tables: the window start a delta carries, in seconds."""
    return event.value.startMs / 1000


def windowed_table(name: str, default: type) -> faust.tables.wrappers.WindowWrapper:
    """A RocksDB-backed, changelogged tumbling-window table on event time."""
    table = EventTimeTable(
        app,
        name=name,
        beacon=app.tables.beacon,
        default=default,
        key_type=str,
        partitions=settings.partitions,
        # A few keys per window: small RocksDB write buffers (Faust's default is 3 × 64 MiB for
        # each partition's database, standbys included) keep a worker's memory small.
        options={"write_buffer_size": 1 << 20, "max_write_buffer_number": 2},
    )
    return (
        app.tables.add(table)
        .tumbling(
            settings.window_seconds,
            # One window more than the grace: a window the classify side still counts is never gone.
            expires=settings.window_grace_seconds + settings.window_seconds,
        )
        .relative_to(window_start_of)
    )


window_counts = windowed_table("window-counts", int)  # (species/predictedSpecies, window) -> count
window_accuracy = windowed_table("window-accuracy", list)  # ("all", window) -> [correct, total]
