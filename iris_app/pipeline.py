"""How the agents move work along: a stage that runs one batch ahead, and acknowledgement on delivery."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TypeVar

import faust

from .faust_ext.batches import acknowledge
from .faust_ext.fetches import Fetch

T = TypeVar("T")
R = TypeVar("R")

SETTLE_EVERY = 500  # events held unacknowledged at most, while their input keeps coming


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


class Delivery:
    """Outputs sent and not yet known delivered, and the inputs (events, Fetches) to acknowledge then.

    Faust commits an input offset once its event is acknowledged: acknowledging
    only after every output (changelog writes included) is delivered means a
    record is never committed and lost. A failed send raises here, in the agent.
    Inputs read before a rebalance are not acknowledged (faust_ext.batches.acknowledge).
    """

    def __init__(self, inputs: Iterable[faust.EventT | Fetch] = ()) -> None:
        self.inputs: list[faust.EventT | Fetch] = list(inputs)
        self.sent: list[Awaitable] = []

    def add(self, *sent: Awaitable) -> None:
        self.sent += sent

    async def settle(self) -> None:
        """Wait until everything sent is delivered, then acknowledge the inputs."""
        await asyncio.gather(*self.sent)
        acknowledge(self.inputs)
        self.inputs, self.sent = [], []

    async def settle_when_idle(self, event: faust.EventT, queue: asyncio.Queue) -> None:
        """Hold `event` until its input pauses (or SETTLE_EVERY wait), then settle: one wait, many events."""
        self.inputs.append(event)
        if queue.empty() or len(self.inputs) >= SETTLE_EVERY:
            await self.settle()
