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

from faust.exceptions import ConsumerNotStarted
from faust.types import TP

from . import consumer
from .membership import leave_at_once

# Seconds a rebalance waits for the agents to finish the records they have taken (scoring, sending): those
# not acknowledged by then are read again by the partitions' next owner, and classified twice. Every
# worker's rebalance waits for it, so it is short.
IN_FLIGHT_WAIT = 1.0
# Seconds a stop waits for them: a worker catching up holds two batches of up to a thousand records, and on
# a loaded machine they take seconds. The wait ends as soon as they are acknowledged.
STOP_IN_FLIGHT_WAIT = 5.0
# Seconds the commit and the leave may take (a broker out of reach): then the stop goes on without.
LEAVE_TIMEOUT = 10.0


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
        """Stop reading; let the agents finish the records they have taken (STOP_IN_FLIGHT_WAIT at most) and
        stop them; deliver what they sent; commit the acknowledged offsets; leave the group. Once, at the
        app's stop. The records fetched and not taken yet are left to the partitions' next owner.

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
            await self._finish_in_flight(STOP_IN_FLIGHT_WAIT)
        await app.agents.stop()  # what they still hold is not acknowledged: read again by the next owner
        self._left = True  # the partitions are about to be another's: no commit but the one below
        try:
            async with asyncio.timeout(LEAVE_TIMEOUT):
                await app.producer.flush()
                await self.maybe_wait_for_commit_to_finish()  # else this commit is skipped
                await super().commit()
                await self._thread.leave_group()
        except TimeoutError:
            self.log.warning("No leave in %.0f s: the session timeout moves the partitions", LEAVE_TIMEOUT)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        """Before a rebalance: fetch nothing more, and let the agents finish the records they have taken
        (IN_FLIGHT_WAIT at most), so that the commit of the revoked partitions covers them. Faust drops
        them (it clears the queues, and stops the flow: an event is then not acknowledged), and the next
        owner would classify them again. A commit under way (Faust's timer) is waited for first: Faust
        skips a commit asked for while one is under way, and the revoked partitions' would be lost."""
        if revoked and not self.app.should_stop and self.flow_active:
            # As Faust pauses them next. The flow stays on until Faust stops it: an acknowledgement while
            # it is stopped counts for nothing (Consumer._assignment_changed).
            self.pause_partitions(revoked)
            await self._finish_in_flight(IN_FLIGHT_WAIT)
        await self.maybe_wait_for_commit_to_finish()  # else the revoked partitions' commit is skipped
        await super().on_partitions_revoked(revoked)

    async def _finish_in_flight(self, seconds: float) -> None:
        """Drop the records the agents have not taken (as Faust drops them at a rebalance), and wait until
        every one they have taken is acknowledged, or `seconds` pass."""
        self.app.flow_control.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while self.in_flight():
                    # Faust's ack and ack_fetch notify this future (Faust's own wait for it swallows the
                    # cancellation of a timeout, and would wait on).
                    self._waiting_for_ack = asyncio.get_running_loop().create_future()
                    try:
                        await self._waiting_for_ack
                    finally:
                        self._waiting_for_ack = None

    async def commit(self, topics: set[TP] | None = None, start_new_transaction: bool = True) -> bool:
        """Faust's commit, none once the worker has left its group: the partitions are another's."""
        if self._left:
            return False
        return await super().commit(topics, start_new_transaction=start_new_transaction)
