"""The app's consumer (faust_ext): records delivered in order from where the partition was seeked to,
a record at a time or a fetch at a time; commits that never pass an unacknowledged record."""

from __future__ import annotations

import asyncio
import logging
import re
from types import SimpleNamespace

import pytest
from support.drain import (
    IRIS_0,
    consumer,
    drain,
    fetch,
    flow_resumes,
    rebalance_begins,
    seek_to_committed,
    seeks_of,
)

from iris_app.faust_ext.batches import batches
from iris_app.faust_ext.consumer import Consumer
from iris_app.faust_ext.fetches import Fetch


@pytest.mark.parametrize("bulk", [False, True], ids=["record by record", "a fetch at a time"])
def test_records_fetched_before_the_seek_are_dropped(bulk):
    """Records fetched before the seek to the committed offset are not delivered. Faust resumes the flow
    for table recovery before it seeks a new assignment's partitions; a fetch begun before the rebalance,
    after the last record read (10, not yet acknowledged, so committed there), would go through first:
    out of order, and taken by Faust's commit rule for the run to commit."""
    c = consumer()
    assert drain(c, [[11, 12], seek_to_committed(10), [10, 11, 12]], bulk=bulk) == [10, 11, 12]


@pytest.mark.parametrize("bulk", [False, True], ids=["record by record", "a fetch at a time"])
def test_records_delivered_after_a_rebalance_are_delivered_once(bulk):
    """A fetch that comes while the flow is stopped is dropped, and the partition waits for the recovery's
    seek (to 10). Seeking on its own then, to the committed 10 too, the drain loop delivered 10 and 11
    before the recovery's seek ended, which took the partition back to 10: 10 and 11 came twice."""
    c = consumer()
    seeks_of(c)
    steps = [
        seek_to_committed(10),
        rebalance_begins,
        [10, 11],
        flow_resumes,
        [10, 11],
        seek_to_committed(10),
        [12, 13],
        [10, 11, 12, 13],
    ]
    assert drain(c, steps, bulk=bulk) == [10, 11, 12, 13]


@pytest.mark.parametrize("bulk", [False, True], ids=["record by record", "a fetch at a time"])
def test_a_jump_is_read_again_from_its_first_record(bulk):
    """A fetch that jumps past unread records (12-39) is read again from the first of them."""
    c = consumer()
    seeks = seeks_of(c)
    assert drain(c, [seek_to_committed(10), [10, 11], [40, 41], [12, 13]], bulk=bulk) == [10, 11, 12, 13]
    assert seeks == [12]


@pytest.mark.parametrize("bulk", [False, True], ids=["record by record", "a fetch at a time"])
def test_a_jump_in_records_flowing_is_a_warning(bulk, caplog):
    c = consumer()
    seeks_of(c)
    drain(c, [seek_to_committed(10), [10, 11], [40, 41], [12, 13]], bulk=bulk)
    assert jumps(caplog) == [(logging.WARNING, "fetched offset 40 after 11")]


@pytest.mark.parametrize("bulk", [False, True], ids=["record by record", "a fetch at a time"])
def test_records_fetched_before_a_rebalance_seek_are_read_again_without_a_warning(bulk, caplog):
    """Read up to 15, committed 12: the rebalance seeks back to 12, and a fetch made before the seek
    (16, 17) comes after it. Nothing is missing, so an operator is not warned at every rebalance."""
    caplog.set_level(logging.INFO)
    c = consumer()
    seeks = seeks_of(c)
    steps = [seek_to_committed(10), list(range(10, 16)), seek_to_committed(12), [16, 17], list(range(12, 18))]
    assert drain(c, steps, bulk=bulk) == [*range(10, 16), *range(12, 18)]
    assert seeks == [12]
    assert jumps(caplog) == [(logging.INFO, "fetched offset 16 after 11")]


def jumps(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    """The consumer's jump lines: (level, what was fetched after what)."""
    return [
        (r.levelno, re.search(r"fetched offset \d+ after \d+", r.getMessage())[0])
        for r in caplog.records
        if "fetched offset" in r.getMessage()
    ]


@pytest.mark.parametrize("bulk", [False, True], ids=["record by record", "a fetch at a time"])
def test_a_jump_past_records_deleted_by_retention_reads_on_from_the_first_record_left(bulk):
    """Committed 10, records up to 39 deleted: the fetch starts at 40, and reading goes on from 40 (seeking
    back to 10, the fetch would start at 40 again, and the partition would loop)."""
    c = consumer()
    seeks = seeks_of(c, earliest=40)
    assert drain(c, [seek_to_committed(10), [40, 41], [40, 41, 42]], bulk=bulk) == [40, 41, 42]
    assert seeks == [40]


def never_committed(c: Consumer) -> Consumer:
    """`c`, its partition iris 0 holding records from offset 0 and no committed offset."""

    async def no_seek(*partitions) -> None:
        return None

    async def earliest(*partitions) -> dict:
        return {IRIS_0: 0}

    c._thread = type("Thread", (), {"seek_to_beginning": staticmethod(no_seek)})()
    c.earliest_offsets = earliest
    return c


@pytest.mark.parametrize("bulk", [False, True], ids=["record by record", "a fetch at a time"])
def test_a_partition_never_committed_is_read_from_its_first_record(bulk):
    """No committed offset: records 0-7 were fetched before the seek and dropped, and the next fetch
    begins at 8; they are read again from 0, not skipped (they held a window's first counts)."""
    c = never_committed(consumer())
    assert drain(c, [seek_to_committed(None), [8, 9], list(range(10))], bulk=bulk) == list(range(10))


def test_no_commit_passes_the_first_record_of_a_partition_never_committed():
    c = never_committed(consumer())
    drain(c, [seek_to_committed(None)])
    c._acked[IRIS_0] += [8, 9]
    assert c._new_offset(IRIS_0) is None


def test_a_commit_never_passes_an_unacked_record():
    """A commit never passes a record still unacknowledged at the committed offset. Faust commits a run
    of acknowledged offsets that starts one past the committed offset (faust-streaming #606): the record
    at the committed offset, still being handled, would be committed past."""
    c = consumer()
    c._committed_offset[IRIS_0] = 100
    c._acked[IRIS_0] += [102, 101, 103]  # as Consumer.ack appends them
    assert c._new_offset(IRIS_0) is None
    c._acked[IRIS_0].append(100)
    assert c._new_offset(IRIS_0) == 104


def test_a_fetch_is_delivered_up_to_a_gap_and_read_again_from_it():
    c = consumer()
    seeks = seeks_of(c)
    steps = [seek_to_committed(10), [10, 11, 14, 15], [12, 13, 14, 15]]
    assert drain(c, steps, bulk=True) == list(range(10, 16))
    assert seeks == [12]


def test_a_commit_reaches_the_end_of_the_fetches_acknowledged_from_the_committed_offset():
    c = consumer()
    c._committed_offset[IRIS_0] = 100
    for first, last in [(100, 149), (150, 199), (300, 349)]:
        fetch(c, first, last).ack()
    assert c._new_offset(IRIS_0) == 200


def test_a_commit_never_passes_a_fetch_unacknowledged():
    c = consumer()
    c._committed_offset[IRIS_0] = 100
    fetch(c, 150, 199).ack()
    assert c._new_offset(IRIS_0) is None
    fetch(c, 100, 149).ack()
    assert c._new_offset(IRIS_0) == 200


def commit_answered(c: Consumer, taken: bool) -> None:
    """Make `c`'s commits reach a broker that takes them or (a rebalance under way) refuses them."""

    async def commit(offsets) -> bool:
        return taken

    async def flushed() -> None:
        return None

    c._commit, c.app.producer.flush, c.assignment = commit, flushed, lambda: {IRIS_0}


def test_a_commit_the_broker_refused_is_sent_again_by_the_next():
    c = consumer()
    c._committed_offset[IRIS_0] = 100
    fetch(c, 100, 149).ack()
    commit_answered(c, taken=False)
    asyncio.run(c._commit_offsets({IRIS_0: c._new_offset(IRIS_0)}))
    assert (c._committed_offset[IRIS_0], c._new_offset(IRIS_0)) == (100, 150)


def test_a_commit_the_broker_took_leaves_nothing_more_to_commit():
    c = consumer()
    c._committed_offset[IRIS_0] = 100
    fetch(c, 100, 149).ack()
    commit_answered(c, taken=True)
    asyncio.run(c._commit_offsets({IRIS_0: c._new_offset(IRIS_0)}))
    assert (c._committed_offset[IRIS_0], c._new_offset(IRIS_0)) == (150, None)


def test_a_fetch_read_before_a_rebalance_is_not_acknowledged():
    c = consumer()
    c._committed_offset[IRIS_0] = 100
    old = fetch(c, 100, 149)
    c.app.consumer_generation_id += 1
    old.ack()
    assert c._new_offset(IRIS_0) is None


def taken(c: Consumer, first: int, last: int) -> Fetch:
    """A Fetch delivered to the agent and taken by it (being handled)."""
    handled = fetch(c, first, last)
    handled.taken = True
    c._unacked_fetches.add(handled)
    return handled


def test_a_rebalance_waits_for_the_agent_to_acknowledge_the_fetches_it_has_taken():
    async def revoke_while_the_agent_finishes() -> list:
        c = consumer()
        asyncio.get_running_loop().call_soon(taken(c, 100, 149).ack)  # the agent, done with it
        await c._finish_in_flight(60)
        return c._acked_ranges[IRIS_0].ranges

    assert asyncio.run(revoke_while_the_agent_finishes()) == [[100, 149]]


def test_a_rebalance_waits_for_a_fetch_unfinished_no_longer_than_its_limit():
    async def revoke_with_the_agent_stuck() -> bool:
        c = consumer()
        taken(c, 100, 149)
        await c._finish_in_flight(0.1)
        return c.in_flight()

    assert asyncio.run(revoke_with_the_agent_stuck())


def test_a_fetch_held_while_its_batch_fills_is_waited_for():
    """Out of the queue, the Fetch waits up to `within` for more before the agent handles it: a stop that
    did not wait for it let the agent send its records and stopped it before their acknowledgement."""

    async def stop_while_the_batch_fills() -> bool:
        c = consumer()
        queue: asyncio.Queue = asyncio.Queue()
        stream = SimpleNamespace(app=c.app, channel=SimpleNamespace(queue=queue))
        held = fetch(c, 100, 149)
        c._unacked_fetches.add(held)
        queue.put_nowait(held)
        filling = asyncio.ensure_future(anext(batches(stream, size=1000, within=60)))
        while not queue.empty():
            await asyncio.sleep(0)  # a turn of the loop: the agent takes it out of the queue
        try:
            return c.in_flight()
        finally:
            filling.cancel()

    assert asyncio.run(stop_while_the_batch_fills())


def test_a_fetch_the_agent_has_not_taken_is_not_waited_for():
    c = consumer()
    c._unacked_fetches.add(fetch(c, 100, 149))  # still in the agent's queue: the next owner reads it
    assert not c.in_flight()


def test_a_partition_revoked_while_seeking_is_left_to_the_next_seek():
    """The committed offsets come after a rebalance took the partition away: it is not marked positioned
    (its records wait for the next assignment's seek), and no seek of it is tried (it crashed the fetcher)."""
    revoked = consumer()

    async def committed() -> dict:
        return {IRIS_0: None}

    async def must_not_seek(*partitions) -> None:
        raise AssertionError(f"seeked {partitions}")

    revoked.seek_to_committed = committed
    revoked.assignment = lambda: set()
    revoked._thread = type("Thread", (), {"seek_to_beginning": staticmethod(must_not_seek)})()
    asyncio.run(revoked.perform_seek())
    assert IRIS_0 not in revoked._positioned
