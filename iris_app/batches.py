"""Batches of an agent's events, and a pipeline stage that runs one batch ahead."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import faust

T = TypeVar("T")
R = TypeVar("R")


async def batches(stream: faust.StreamT, size: int, within: float) -> AsyncIterator[list[faust.EventT]]:
    """The stream's events, up to `size` at a time, waiting at most `within` seconds to fill a batch.

    Faust's stream iteration costs a turn of the event loop and four sensor calls
    per event: more than scoring the record. A batch is instead taken at once
    from the stream's channel buffer, which the consumer keeps filling meanwhile.
    Each event is tracked as unacknowledged, as Faust's stream would track it:
    the caller acknowledges it (`event.ack()`) once handled, and only then is its
    offset committed. Faust's consumer counts tracked events as in flight (its
    wait before a rebalance, off in this app, would wait for them).
    """
    app = stream.app
    queue = stream.channel.queue
    unacked = app.consumer._unacked_messages
    loop = asyncio.get_running_loop()
    while True:
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


async def ahead(items: AsyncIterator[T], start: Callable[[T], Awaitable[R]]) -> AsyncIterator[R]:
    """`await start(item)` for each item in order, the next one started while the caller handles this one.

    So a stage that mostly waits (scoring on the scorer's thread) overlaps the
    caller's own work on the previous result, instead of the two taking turns.
    """
    started: asyncio.Queue[asyncio.Future[R]] = asyncio.Queue(1)

    async def start_each() -> None:
        async for item in items:
            await started.put(asyncio.ensure_future(start(item)))

    starting = asyncio.ensure_future(start_each())
    try:
        while True:
            next_result = asyncio.ensure_future(started.get())
            await asyncio.wait([next_result, starting], return_when=asyncio.FIRST_COMPLETED)
            if not next_result.done():  # the items ended, or failed: say why
                next_result.cancel()
                starting.result()
                return
            yield await next_result.result()
    finally:
        starting.cancel()
        while not started.empty():
            started.get_nowait().cancel()
