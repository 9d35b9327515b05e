"""The windowed tables: per-window counts of (species, predictedSpecies), and per-window accuracy.

Both are RocksDB-backed, changelogged tumbling-window Tables on event time
(faust_ext.tables: expiry by event time, changelog writes that can be awaited).
"""

from __future__ import annotations

import faust

from .application import app, settings
from .faust_ext.tables import EventTimeTable


def count_key(species: str, predicted_species: str) -> str:
    """The count table's key (and its delta topic's, so both partition alike)."""
    return f"{species}/{predicted_species}"


ACCURACY_KEY = "all"  # one key: a window's accuracy spans all species, and its updates are few
WINDOW_MS = settings.window_ms  # a window's length: where its messages say it ends, and the event clocks


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


# (species/predictedSpecies, window) -> {"count", "seen"} (counting.add_count);
# ("all", window) -> {"models", "compared", "agreed", "seen"} (counting.add_accuracy).
# "seen": the highest input offset counted per source partition.
window_counts = windowed_table("window-counts", dict)
window_accuracy = windowed_table("window-accuracy", dict)
