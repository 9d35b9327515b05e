"""An agent's events a batch at a time, taken straight from its channel buffer.

Faust's stream iteration costs a turn of the event loop and four sensor calls
per event: more than scoring the record. A batch is instead taken at once from
the stream's channel buffer, which the consumer keeps filling meanwhile. Each
event is tracked as unacknowledged, as Faust's stream tracks it (Stream._c_aiter:
`message.tracked`, `consumer._unacked_messages`): the caller acknowledges it
(`event.ack()`) once handled, and only then is its offset committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

import faust


async def batches(stream: faust.StreamT, size: int, within: float) -> AsyncIterator[list[faust.EventT]]:
    """The stream's events, up to `size` at a time, waiting at most `within` seconds to fill a batch."""
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

    Their partitions were assigned again and are read again from the committed
    offsets, as Faust's stream skips them. Acknowledged now, they would enter the
    new assignment's record of acknowledged offsets (Consumer._acked), and a commit
    made before it knows its committed offset (between the revocation and the seek)
    would take them as the first run of consecutive offsets, past records not read yet.
    While a rebalance runs (the flow is stopped) nothing is acknowledged, for the same reason.
    """
    events = list(events)
    if not events or not events[0].app.flow_control.is_active():
        return
    generation = events[0].app.consumer_generation_id
    for event in events:
        if event.message.generation_id == generation:
            event.ack()
