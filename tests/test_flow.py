"""Records delivered to an agent's queue and emptied out of it by Faust's flow control are read again, before
any later record of their partition (faust_ext.flow, Consumer.rewind)."""

from __future__ import annotations

import faust
import pytest
from support.drain import IRIS_0, consumer, drain, fetch, records, seek_to_committed, seeks_of

from iris_app.faust_ext.app import App
from iris_app.faust_ext.consumer import Consumer


def events(c: Consumer, first: int, last: int) -> list[faust.Event]:
    """Events of iris 0's records `first` to `last`, as the consumer delivers them one by one."""
    return [
        faust.Event(c.app, None, None, {}, c._to_message(IRIS_0, record))
        for record in records(range(first, last + 1))
    ]


def emptied(first: int, last: int, bulk: bool):
    """A step: the flow control empties the agent's queue, which holds records `first` to `last`."""

    async def empty(c: Consumer) -> None:
        c.rewind([fetch(c, first, last)] if bulk else events(c, first, last))

    return empty


@pytest.mark.parametrize("bulk", [False, True], ids=["record by record", "a fetch at a time"])
def test_records_emptied_out_of_the_queue_are_delivered_again_before_later_ones(bulk):
    """239-242 delivered, then emptied out of the queue unhandled: the next fetch (243) has jumped them.
    Delivered after them, 243 would reach the counting agent first, and its mark would skip 239-242."""
    c = consumer()
    seeks = seeks_of(c)
    steps = [
        seek_to_committed(239),
        [239, 240, 241, 242],
        emptied(239, 242, bulk),
        [243],
        list(range(239, 244)),
    ]
    assert drain(c, steps, bulk=bulk) == [239, 240, 241, 242, 239, 240, 241, 242, 243]
    assert set(seeks) == {239}  # by the drain loop, and again at the jump of a fetch begun before its seek


def test_a_partition_that_fetches_nothing_more_is_read_again_from_the_records_emptied():
    c = consumer()
    seeks = seeks_of(c)
    drain(c, [seek_to_committed(239), [239, 240, 241, 242], emptied(241, 242, bulk=False), []])
    assert seeks == [241]


def test_a_seek_to_the_committed_offsets_since_leaves_no_rewind():
    """Emptied 241-242, then a rebalance seeks to the committed 239: reading goes on from 239, not 241."""
    c = consumer()
    seeks = seeks_of(c)
    steps = [
        seek_to_committed(239),
        [239, 240, 241, 242],
        emptied(241, 242, False),
        seek_to_committed(239),
        [],
    ]
    drain(c, steps)
    assert seeks == []


def test_a_fetch_emptied_out_of_the_queue_is_no_longer_waited_for():
    c = consumer()
    emptied_out = fetch(c, 100, 149)
    c._unacked_fetches.add(emptied_out)
    c.rewind([emptied_out])
    assert emptied_out not in c._unacked_fetches


def test_the_flow_control_hands_what_it_empties_to_the_consumer():
    app = App("flow-test", broker="kafka://localhost:9")
    handed: list = []
    app.consumer.rewind = handed.extend
    queue = app.FlowControlQueue(maxsize=10, clear_on_resume=True)
    queue.put_nowait("first")
    queue.put_nowait("second")
    app.flow_control.resume()  # Faust's resume empties every stream queue
    assert (handed, queue.qsize()) == (["first", "second"], 0)
