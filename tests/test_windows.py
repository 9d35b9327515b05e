"""Tumbling event-time windows: alignment, and when a record is too late to count."""

from __future__ import annotations

from iris_app.windows import EventClock, window_start

MINUTE = 60_000
HOUR = 3_600_000


def test_windows_are_aligned_to_the_epoch_with_an_exclusive_end():
    assert window_start(1604302260000, MINUTE) == 1604302260000
    assert window_start(1604302260123, MINUTE) == 1604302260000
    assert window_start(1604302319999, MINUTE) == 1604302260000
    assert window_start(1604302320000, MINUTE) == 1604302320000
    assert window_start(0, MINUTE) == 0
    assert window_start(1604302265000, 10_000) == 1604302260000


def test_a_window_counts_until_it_ended_grace_before_the_newest_event():
    clock = EventClock(MINUTE, HOUR)
    assert not clock.is_late(0)  # nothing seen yet: nothing is late
    clock.observe(10 * HOUR)
    clock.observe(9 * HOUR)  # an older event does not move the clock back
    assert clock.newest_ms == 10 * HOUR
    assert not clock.is_late(10 * HOUR)
    assert not clock.is_late(9 * HOUR - MINUTE + 1)  # ends 1 ms after newest - grace
    assert clock.is_late(9 * HOUR - MINUTE)  # ends exactly at newest - grace
    assert clock.is_late(0)


def test_no_grace_means_only_windows_still_open_count():
    clock = EventClock(MINUTE, 0)
    clock.observe(5 * MINUTE + 1)
    assert not clock.is_late(5 * MINUTE)
    assert clock.is_late(4 * MINUTE)
