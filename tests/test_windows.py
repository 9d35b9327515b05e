"""Tumbling event-time windows: alignment, per-partition event time, lateness and clock skew."""

from __future__ import annotations

from iris_app.windows import EventClocks, Verdict, window_start

MINUTE = 60_000
HOUR = 3_600_000
NOW = 100 * HOUR  # the worker's clock
SKEW = 5 * MINUTE


def test_windows_are_aligned_to_the_epoch_with_an_exclusive_end():
    assert window_start(1604302260000, MINUTE) == 1604302260000
    assert window_start(1604302260123, MINUTE) == 1604302260000
    assert window_start(1604302319999, MINUTE) == 1604302260000
    assert window_start(1604302320000, MINUTE) == 1604302320000
    assert window_start(0, MINUTE) == 0
    assert window_start(1604302265000, 10_000) == 1604302260000


def test_a_window_counts_until_it_ended_grace_before_the_partitions_newest_event():
    clocks = EventClocks(MINUTE, HOUR, SKEW)
    assert clocks.judge(0, 10 * HOUR, NOW) is Verdict.COUNTED
    assert clocks.judge(0, 9 * HOUR, NOW) is Verdict.COUNTED  # an older event does not move it back
    assert clocks.newest_ms[0] == 10 * HOUR
    assert clocks.judge(0, 9 * HOUR, NOW) is Verdict.COUNTED  # its window ends after newest - grace
    assert clocks.judge(0, 9 * HOUR - 1, NOW) is Verdict.LATE  # its window ends exactly at newest - grace
    assert clocks.judge(0, 0, NOW) is Verdict.LATE


def test_no_grace_means_only_windows_still_open_count():
    clocks = EventClocks(MINUTE, 0, SKEW)
    assert clocks.judge(0, 5 * MINUTE + 1, NOW) is Verdict.COUNTED
    assert clocks.judge(0, 5 * MINUTE, NOW) is Verdict.COUNTED
    assert clocks.judge(0, 4 * MINUTE, NOW) is Verdict.LATE


def test_each_partition_keeps_its_own_event_time():
    clocks = EventClocks(MINUTE, HOUR, SKEW)
    assert clocks.judge(0, NOW, NOW) is Verdict.COUNTED
    # Partition 1 replays data two hours old: late on partition 0, but partition 1 has seen nothing newer.
    assert clocks.judge(1, NOW - 2 * HOUR, NOW) is Verdict.COUNTED
    assert clocks.judge(0, NOW - 2 * HOUR, NOW) is Verdict.LATE


def test_a_record_from_the_future_or_before_the_epoch_counts_not_and_moves_no_clock():
    clocks = EventClocks(MINUTE, HOUR, SKEW)
    assert clocks.judge(0, NOW, NOW) is Verdict.COUNTED
    assert clocks.judge(0, NOW + HOUR, NOW) is Verdict.SKEWED
    assert clocks.judge(0, -1, NOW) is Verdict.SKEWED
    assert clocks.newest_ms[0] == NOW
    assert clocks.judge(0, NOW + SKEW, NOW) is Verdict.COUNTED  # at the limit it still counts
    assert clocks.judge(0, NOW - 30 * MINUTE, NOW) is Verdict.COUNTED  # and nothing current became late
