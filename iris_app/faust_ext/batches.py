"""An agent's events a batch at a time, taken straight from its channel buffer, and their acknowledgement."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

import faust


async def batches(stream: faust.StreamT, size: int, within: float) -> AsyncIterator[list[faust.EventT]]:
    """The stream's events, up to `size` at a time, waiting at most `within` seconds to fill a batch.

    Each event is tracked as unacknowledged, as Faust's stream tracks it: the caller
    acknowledges it (`acknowledge`) once handled, and only then is its offset committed.
    """
    app = stream.app
    queue = stream.channel.queue
    unacked = app.consumer._unacked_messages
    loop = asyncio.get_running_loop()
    while True:
        try:
            batch = [await queue.get()]
            deadline = loop.time() + within
            while len(batch) < size:
                if queue.empty():
                    try:
                        async with asyncio.timeout_at(deadline):
                            batch.append(await queue.get())
                    except TimeoutError:
                        break
                else:
                    batch.append(queue.get_nowait())
        except StopAsyncIteration:  # Faust throws it into the queue when the agent stops: the stream ends
            return
        # Events fetched before a rebalance are dropped, as Faust's stream drops them:
        # the new assignment reads them again from the committed offsets.
        if not app.flow_control.is_active():
            continue
        generation = app.consumer_generation_id
        events = [event for event in batch if event.message.generation_id == generation]
        for event in events:
            message = event.message
            if not message.tracked:
                message.tracked = True
                unacked.add(message)
        if events:
            yield events


def acknowledge(events: Iterable[faust.EventT]) -> None:
    """Acknowledge events read in the current assignment; leave those read before a rebalance.

    Their partitions are read again from the committed offsets, as Faust's stream skips them.
    While a rebalance runs (the flow is stopped) nothing is acknowledged.
    """
    events = list(events)
    if not events or not events[0].app.flow_control.is_active():
        return
    generation = events[0].app.consumer_generation_id
    for event in events:
        if event.message.generation_id == generation:
            event.ack()
