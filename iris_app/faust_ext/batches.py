"""An agent's input a batch at a time, taken straight from its channel buffer, and its acknowledgement."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

import faust

from .fetches import Fetch


async def batches(stream: faust.StreamT, size: int, within: float) -> AsyncIterator[list[Fetch]]:
    """The stream's Fetches (consumer.py delivers a partition of raw bytes a fetch at a time), as many as
    hold up to `size` records, waiting at most `within` seconds for more once one has come.

    The caller acknowledges each Fetch (`acknowledge`) once handled; only then is its offset committed.
    """
    app = stream.app
    queue = stream.channel.queue
    loop = asyncio.get_running_loop()
    while True:
        try:
            batch = [taken(await queue.get())]
            records, deadline = len(batch[0].records), loop.time() + within
            while records < size:
                if queue.empty():
                    try:
                        async with asyncio.timeout_at(deadline):
                            batch.append(taken(await queue.get()))
                    except TimeoutError:
                        break
                else:
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
    while its batch fills too (the flow control's emptying of the queues no longer reaches it)."""
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
