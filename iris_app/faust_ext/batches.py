"""An agent's input a batch at a time, taken straight from its channel buffer, and its acknowledgement."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import faust

from .fetches import Fetch


async def batches(stream: faust.StreamT, size: int) -> AsyncIterator[list[Fetch]]:
    """The stream's Fetches (consumer.py delivers a partition of raw bytes a fetch at a time), as many as
    are queued, up to `size` records; only the first is waited for.

    A batch is what came while the last one was handled: a trickle of records goes on at once in
    small batches, a backlog in full ones, with no timer in between.
    The caller acknowledges each Fetch (`acknowledge`) once handled; only then is its offset committed.
    """
    app = stream.app
    queue = stream.channel.queue
    while True:
        try:
            batch = [taken(await queue.get())]
            records = len(batch[0].records)
            while records < size and not queue.empty():
                batch.append(taken(queue.get_nowait()))
                records += len(batch[-1].records)
        except StopAsyncIteration:  # Faust throws it into the queue when the agent stops: the stream ends
            return
        # Fetches read before a rebalance are dropped, as Faust's stream drops their events:
        # the new assignment reads them again from the committed offsets.
        if not app.flow_control.is_active():
            continue
        generation = app.consumer_generation_id
        fetches = [fetch for fetch in batch if fetch.generation == generation]
        if fetches:
            yield fetches


def taken(fetch: Fetch) -> Fetch:
    """`fetch`, marked taken as it leaves the queue: a rebalance or a stop waits for it (faust_ext.handover),
    as the flow control's emptying of the queues no longer reaches it; no more records join it."""
    fetch.taken = True
    return fetch


def acknowledge(inputs: Iterable[faust.EventT | Fetch]) -> None:
    """Acknowledge events and Fetches read in the current assignment; leave those read before a rebalance.

    Their partitions are read again from the committed offsets, as Faust's stream skips them.
    While a rebalance runs (the flow is stopped) nothing is acknowledged.
    """
    for item in inputs:
        if type(item) is Fetch:
            item.ack()  # the consumer checks its generation (Consumer.ack_fetch)
            continue
        app = item.app
        if app.flow_control.is_active() and item.message.generation_id == app.consumer_generation_id:
            item.ack()
