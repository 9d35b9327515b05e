"""FetchQueue: a partition's fetched records queued for the classify agent as Fetches, records that
follow a Fetch still in the queue joining it, and the partition paused only when the agent is behind."""

from __future__ import annotations

from types import SimpleNamespace

from aiokafka.structs import ConsumerRecord
from mode.utils.queues import FlowControlEvent, ThrowableQueue
from support.drain import IRIS_0, records

from iris_app.faust_ext.batches import taken
from iris_app.faust_ext.fetches import FETCH_RECORDS, FETCHES_QUEUED, FetchQueue


def fetch_queue() -> tuple[FetchQueue, list]:
    """A partition's FetchQueue on a real stream queue, and the partitions it paused."""
    paused: list = []
    consumer = SimpleNamespace(
        app=SimpleNamespace(sensors=SimpleNamespace(on_topic_buffer_full=lambda tp: None)),
        on_buffer_full=paused.append,
        on_buffer_drop=lambda tp: None,
    )
    channel = SimpleNamespace(queue=ThrowableQueue(flow_control=FlowControlEvent()))
    return FetchQueue(channel, consumer, IRIS_0), paused


def span(first: int, last: int) -> list[ConsumerRecord]:
    """Records `first` to `last` of iris 0."""
    return records(range(first, last + 1))


def ignore(fetch) -> None:
    return None


def offsets(queue: FetchQueue) -> list[list[int]]:
    """The offsets of each Fetch in the queue, in order."""
    return [[r.offset for r in fetch.records] for fetch in list(queue.queue._queue)]


def test_records_that_follow_a_queued_fetch_join_it():
    queue, _ = fetch_queue()
    queue.add(span(0, 2), 1, ignore)
    assert queue.add(span(3, 4), 1, ignore) == []
    assert offsets(queue) == [[0, 1, 2, 3, 4]]


def test_records_after_a_fetch_the_agent_has_taken_make_a_new_one():
    queue, _ = fetch_queue()
    queue.add(span(0, 2), 1, ignore)
    taken(queue.queue.get_nowait())
    queue.add(span(3, 4), 1, ignore)
    assert offsets(queue) == [[3, 4]]


def test_records_of_a_new_assignment_make_a_new_fetch():
    queue, _ = fetch_queue()
    queue.add(span(0, 2), 1, ignore)
    queue.add(span(3, 4), 2, ignore)
    assert offsets(queue) == [[0, 1, 2], [3, 4]]


def test_a_fetch_grows_to_its_limit_and_the_rest_makes_another():
    queue, _ = fetch_queue()
    queue.add(span(0, FETCH_RECORDS - 6), 1, ignore)
    queue.add(span(FETCH_RECORDS - 5, FETCH_RECORDS + 4), 1, ignore)
    assert [len(fetch) for fetch in offsets(queue)] == [FETCH_RECORDS, 5]


def test_a_trickle_of_small_fetches_does_not_pause_the_partition():
    queue, paused = fetch_queue()
    for first in range(0, 3 * FETCHES_QUEUED * 5, 5):
        queue.add(span(first, first + 4), 1, ignore)
    assert paused == []


def test_the_partition_is_paused_when_its_queued_fetches_reach_the_mark():
    queue, paused = fetch_queue()
    for first in range(0, (FETCHES_QUEUED + 1) * FETCH_RECORDS, FETCH_RECORDS):
        queue.add(span(first, first + FETCH_RECORDS - 1), 1, ignore)
    assert paused == [IRIS_0]
