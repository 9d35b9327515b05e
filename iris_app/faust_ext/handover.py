"""A stopping worker hands its partitions over at once: it leaves the group first, then stops the rest.

Faust leaves the group last, when the consumer's thread stops: after the tables close, the
agents stop and the producer flushes. The other workers meanwhile wait, and a static member
(a group instance id) does not leave at all: aiokafka sends no LeaveGroup for one, and its
partitions wait out the session timeout. Here the app's stop begins with `Consumer.hand_over`.

What each piece changes in Faust, and why: the package's docstring (faust_ext/__init__.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools

from faust.exceptions import ConsumerNotStarted
from faust.types import TP

from . import consumer
from .membership import leave_at_once

# Seconds a stop waits for the records already fetched to be handled and acknowledged: the rest are
# read again by the partitions' next owner. The other workers' rebalance starts after it.
HAND_OVER_WAIT = 1.0
# Seconds the commit and the leave may take (a broker out of reach): then the stop goes on without.
LEAVE_TIMEOUT = 10.0
POLL = 0.01  # seconds between looks at the agents' queues (they have no event to wait on)


class ConsumerThread(consumer.ConsumerThread):
    async def leave_group(self) -> None:
        """Close the group membership and leave the group (membership.leave_at_once), in the thread."""
        await self.call_thread(leave_at_once, self._ensure_consumer())


class Consumer(consumer.Consumer):
    """The app's consumer, which hands its partitions over first when it stops."""

    _left = False  # the worker has left its group: it commits nothing more

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def hand_over(self) -> None:
        """Stop reading; let the agents handle what was fetched (HAND_OVER_WAIT at most) and stop them;
        deliver what they sent; commit the acknowledged offsets; leave the group. Once, at the app's stop.

        The agents stop before the leave, as Faust stops them before its own: a table written or a
        record sent after it would race the partitions' next owner."""
        try:
            assignment = self.assignment()
        except ConsumerNotStarted:
            return
        if self._left or self.app.client_only:
            return
        app = self.app
        await app._fetcher.stop()  # Faust's stop stops it again (a no-op) and resets it
        if assignment:
            self.pause_partitions(assignment)
            await self._handled_within(HAND_OVER_WAIT)
        await app.agents.stop()  # what they still hold is not acknowledged: read again by the next owner
        try:
            async with asyncio.timeout(LEAVE_TIMEOUT):
                await app.producer.flush()
                await self.commit()
                self._left = True
                await self._thread.leave_group()
        except TimeoutError:
            self.log.warning("No leave in %.0f s: the session timeout moves the partitions", LEAVE_TIMEOUT)
        self._left = True

    async def _handled_within(self, seconds: float) -> None:
        """Wait until every record delivered to the agents is acknowledged, or `seconds` pass."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while not self._all_handled():
                    await asyncio.sleep(POLL)

    def _all_handled(self) -> bool:
        """Whether every stream queue is empty and every record taken from one is acknowledged."""
        channels = set(itertools.chain.from_iterable(self.app.topics._tp_index.values()))
        return all(channel.queue.empty() for channel in channels) and not any(
            not message.acked for message in self._unacked_messages
        )

    async def commit(self, topics: set[TP] | None = None, start_new_transaction: bool = True) -> bool:
        """Faust's commit, none once the worker has left its group: the partitions are another's."""
        if self._left:
            return False
        return await super().commit(topics, start_new_transaction=start_new_transaction)
