"""Batches of a Faust stream's events, read ahead while the caller works on the last one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import faust


async def batches(stream: faust.StreamT, size: int, within: float) -> AsyncIterator[list[faust.EventT]]:
    """The stream's events, up to `size` at a time, waiting at most `within` seconds to fill a batch.

    Unlike Stream.take_events, which stops reading while its caller handles a batch
    (so a worker alternates between reading and scoring), the next batch gathers
    meanwhile. A batch's events are acknowledged once the caller asks for the next
    one, so their offsets are committed only after they were handled: at least once.
    """
    read_ahead: asyncio.Queue[faust.EventT] = asyncio.Queue(size)
    reading = asyncio.ensure_future(_read(stream.noack(), read_ahead))
    loop = asyncio.get_running_loop()
    try:
        while True:
            first = asyncio.ensure_future(read_ahead.get())
            await asyncio.wait([first, reading], return_when=asyncio.FIRST_COMPLETED)
            if reading.done():  # the stream ended, or failed: say why
                first.cancel()
                reading.result()
                return
            batch = [first.result()]
            deadline = loop.time() + within
            while len(batch) < size:
                if read_ahead.empty():
                    try:
                        async with asyncio.timeout_at(deadline):
                            batch.append(await read_ahead.get())
                    except TimeoutError:
                        break
                else:
                    batch.append(read_ahead.get_nowait())
            yield batch
            for event in batch:
                await stream.ack(event)
    finally:
        reading.cancel()


async def _read(stream: faust.StreamT, into: asyncio.Queue[faust.EventT]) -> None:
    async for event in stream.events():
        await into.put(event)
