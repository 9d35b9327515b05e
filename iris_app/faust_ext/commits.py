"""Which offsets the app's consumer commits: Fetches acknowledged as ranges, never past an unhandled record.

A mixin of faust_ext.consumer.Consumer (before Faust's consumer in its bases). What each
piece changes in Faust, and why: the package's docstring (faust_ext/__init__.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping

from faust.types import TP
from mode.utils.futures import notify

from .fetches import Fetch
from .offsets import AckedRanges


class Commits:
    """The commit rule of the app's consumer, and the acknowledgement of Fetches."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._acked_ranges: defaultdict[TP, AckedRanges] = defaultdict(AckedRanges)  # of Fetches (ack_fetch)
        self._unacked_fetches: set[Fetch] = set()  # delivered, not acknowledged yet

    async def _commit_if_due(self, generation: int) -> bool:
        """Commit if `broker_commit_every` records have been acknowledged since the last commit; whether the
        assignment is still `generation`'s, so that delivery goes on."""
        if self._commit_every is not None and self._n_acked >= self._commit_every:
            self._n_acked = 0
            await self.commit()
            return not self._assignment_changed(generation)
        return True

    def ack_fetch(self, fetch: Fetch) -> None:
        """Acknowledge every record of `fetch`, if it was read in the current assignment (one read before a
        rebalance is read again from the committed offset, as Faust's stream drops its events)."""
        self._unacked_fetches.discard(fetch)
        notify(self._waiting_for_ack)  # wakes a wait for the records in flight, as Faust's ack does
        if self._assignment_changed(fetch.generation):
            return
        tp, first, committed = fetch.tp, fetch.first, self._committed_offset.get(fetch.tp)
        if committed is not None:
            first = max(first, committed)  # as Faust's ack: an offset below the committed one is done
        if first <= fetch.last:
            self._n_acked += self._acked_ranges[tp].add(first, fetch.last)

    def _new_offset(self, tp: TP) -> int | None:
        """The offset to commit: the end of the acknowledged run from the committed offset, by Fetches' ranges
        or, for records delivered one by one, Faust's, held back while the committed offset's own record is
        unacknowledged.

        Committed 100, acknowledged 101-103: nothing to commit; with 100 acknowledged too: 104."""
        committed = self._committed_offset[tp]
        ranges = self._acked_ranges.get(tp)
        if ranges:
            return ranges.commit_offset(committed)
        acked = self._acked[tp]
        if acked and committed is not None and min(acked) > committed:
            return None
        return super()._new_offset(tp)

    async def _commit_offsets(self, offsets: Mapping[TP, int], start_new_transaction: bool = True) -> bool:
        """Faust's commit of `offsets`, after which the acknowledged ranges below them are forgotten, only if
        the broker took it. Faust counts the offsets committed either way (and forgets what was
        acknowledged): a commit refused at the start of a rebalance then left the revoked partitions'
        commit nothing to send, and their next owner read seconds of records again."""
        before = {tp: self._committed_offset.get(tp) for tp in offsets}
        did_commit = await super()._commit_offsets(offsets, start_new_transaction=start_new_transaction)
        for tp, offset in offsets.items():
            if not did_commit:
                self._committed_offset[tp] = before[tp]
            elif tp in self._acked_ranges:
                self._acked_ranges[tp].committed(offset)
        return did_commit

    def _filter_tps_with_pending_acks(self, topics: Iterable | None = None) -> Iterator[TP]:
        """The partitions with acknowledged offsets (of records or of Fetches) among `topics` (None: all)."""
        pending = {*self._acked, *(tp for tp, ranges in self._acked_ranges.items() if ranges)}
        return (tp for tp in pending if topics is None or tp in topics or tp.topic in topics)

    def in_flight(self) -> bool:
        """Whether the agents hold records they have taken and not acknowledged (events, or Fetches)."""
        return any(fetch.taken for fetch in self._unacked_fetches) or any(
            not message.acked for message in self._unacked_messages
        )

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        """Commit the acknowledged offsets of revoked partitions, then let Faust forget them."""
        self._positioned.difference_update(revoked)  # delivery of their records stops here
        if revoked and not self.app.should_stop:
            try:
                await self.commit(revoked)
            except Exception as exc:  # the next owner reads them again: at least once
                self.log.warning("Could not commit revoked partitions: %r", exc)
        self._unacked_fetches = {fetch for fetch in self._unacked_fetches if fetch.tp not in revoked}
        for tp in revoked:
            self._acked_ranges.pop(tp, None)
        await super().on_partitions_revoked(revoked)
