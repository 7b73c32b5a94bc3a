from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from daemon.prices.calendar import (
    is_open,
    latest_session_date,
    next_poll_at,
    session,
    sessions_between,
)

NY = ZoneInfo("America/New_York")
FIVE = timedelta(minutes=5)


def ny(y: int, m: int, d: int, hh: int = 0, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, ss, tzinfo=NY)


@pytest.mark.parametrize(
    "day",
    [
        date(2026, 3, 21),  # Saturday
        date(2026, 3, 22),  # Sunday
        date(2025, 12, 25),  # Christmas
        date(2026, 11, 26),  # Thanksgiving
        date(2026, 7, 3),  # Independence Day observed (July 4 is a Saturday)
        date(2025, 1, 9),  # day of mourning, President Carter
    ],
)
def test_closed_days_have_no_session(day: date) -> None:
    assert session(day, "XNYS") is None
    assert not is_open(datetime.combine(day, datetime.min.time(), tzinfo=NY).replace(hour=12), "XNYS")


def test_regular_day_session_in_new_york_time() -> None:
    assert session(date(2026, 3, 18), "XNAS") == (ny(2026, 3, 18, 9, 30), ny(2026, 3, 18, 16))
    assert session(date(2026, 7, 2), "NYSE") == (ny(2026, 7, 2, 9, 30), ny(2026, 7, 2, 16))


@pytest.mark.parametrize("day", [date(2026, 11, 27), date(2026, 12, 24), date(2025, 7, 3)])
def test_early_close_at_one(day: date) -> None:
    s = session(day, "XNYS")
    assert s is not None
    assert s[1] == datetime.combine(day, datetime.min.time(), tzinfo=NY).replace(hour=13)
    assert is_open(s[1] - timedelta(seconds=1), "XNYS")
    assert not is_open(s[1], "XNYS")


def test_open_is_inclusive_close_exclusive() -> None:
    assert not is_open(ny(2026, 3, 18, 9, 29, 59))
    assert is_open(ny(2026, 3, 18, 9, 30))
    assert is_open(ny(2026, 3, 18, 15, 59, 59))
    assert not is_open(ny(2026, 3, 18, 16))


def test_dst_transitions_move_the_session_in_utc() -> None:
    # US DST 2026 starts Sunday March 8 and ends Sunday November 1.
    before, after = session(date(2026, 3, 6)), session(date(2026, 3, 9))
    assert before is not None and after is not None
    assert before[0].astimezone(UTC) == datetime(2026, 3, 6, 14, 30, tzinfo=UTC)
    assert after[0].astimezone(UTC) == datetime(2026, 3, 9, 13, 30, tzinfo=UTC)
    autumn_before, autumn_after = session(date(2026, 10, 30)), session(date(2026, 11, 2))
    assert autumn_before is not None and autumn_after is not None
    assert autumn_before[1].astimezone(UTC) == datetime(2026, 10, 30, 20, 0, tzinfo=UTC)
    assert autumn_after[1].astimezone(UTC) == datetime(2026, 11, 2, 21, 0, tzinfo=UTC)
    # 13:45 UTC is open on the Monday after the spring change, still closed the Friday before.
    assert is_open(datetime(2026, 3, 9, 13, 45, tzinfo=UTC))
    assert not is_open(datetime(2026, 3, 6, 13, 45, tzinfo=UTC))


def test_next_poll_across_dst_weekend_is_the_monday_open() -> None:
    friday_after_snapshot = ny(2026, 3, 6, 16, 6)
    got = next_poll_at(friday_after_snapshot, "XNYS", FIVE, last_poll=ny(2026, 3, 6, 16, 5))
    assert got.astimezone(UTC) == datetime(2026, 3, 9, 13, 30, tzinfo=UTC)


def test_next_poll_during_session_and_at_close() -> None:
    assert next_poll_at(ny(2026, 3, 18, 10), "XNYS", FIVE, None) == ny(2026, 3, 18, 10, 5)
    # now + every would reach the close: the next poll is the close snapshot.
    assert next_poll_at(ny(2026, 3, 18, 15, 56), "XNYS", FIVE, ny(2026, 3, 18, 15, 51)) == ny(2026, 3, 18, 16, 5)
    # a poll between the bell and the snapshot does not count as the snapshot
    assert next_poll_at(ny(2026, 3, 18, 16, 1), "XNYS", FIVE, ny(2026, 3, 18, 16, 1)) == ny(2026, 3, 18, 16, 5)
    # snapshot overdue (daemon was down): take it now
    assert next_poll_at(ny(2026, 3, 18, 20), "XNYS", FIVE, ny(2026, 3, 18, 15, 55)) == ny(2026, 3, 18, 20)
    # snapshot taken: next session open
    assert next_poll_at(ny(2026, 3, 18, 16, 5, 1), "XNYS", FIVE, ny(2026, 3, 18, 16, 5)) == ny(2026, 3, 19, 9, 30)
    # before the open
    assert next_poll_at(ny(2026, 3, 18, 7), "XNYS", FIVE, None) == ny(2026, 3, 18, 9, 30)
    # Thanksgiving eve after the snapshot -> Friday's (early close) open; Friday snapshot at 13:05
    assert next_poll_at(ny(2026, 11, 25, 17), "XNYS", FIVE, ny(2026, 11, 25, 16, 5)) == ny(2026, 11, 27, 9, 30)
    assert next_poll_at(ny(2026, 11, 27, 12, 58), "XNYS", FIVE, None) == ny(2026, 11, 27, 13, 5)
    # Christmas Eve 2025 (Wed, early close) -> after the snapshot the next open is Friday the 26th
    assert next_poll_at(ny(2025, 12, 24, 13, 6), "XNYS", FIVE, ny(2025, 12, 24, 13, 5)) == ny(2025, 12, 26, 9, 30)


def test_a_simulated_thanksgiving_week_polls_per_session_and_snapshots_once() -> None:
    now = ny(2026, 11, 23, 0, 0)  # Monday midnight
    end = ny(2026, 11, 30, 0, 0)
    last: datetime | None = None
    polls: list[datetime] = []
    while True:
        now = next_poll_at(now, "XNYS", FIVE, last)
        if now >= end:
            break
        polls.append(now)
        last = now
    per_day = Counter(p.date() for p in polls)
    # 09:30..15:55 every 5 minutes = 78 polls, + 1 close snapshot; early close: 09:30..12:55 = 42 + 1
    assert per_day == {
        date(2026, 11, 23): 79,
        date(2026, 11, 24): 79,
        date(2026, 11, 25): 79,
        date(2026, 11, 27): 43,
    }
    snapshots = [p for p in polls if not is_open(p)]
    assert snapshots == [
        ny(2026, 11, 23, 16, 5),
        ny(2026, 11, 24, 16, 5),
        ny(2026, 11, 25, 16, 5),
        ny(2026, 11, 27, 13, 5),
    ]


def test_latest_session_and_missing_sessions() -> None:
    assert latest_session_date(ny(2026, 3, 21, 12)) == date(2026, 3, 20)  # Saturday -> Friday
    assert latest_session_date(ny(2026, 3, 23, 9)) == date(2026, 3, 20)  # Monday before open
    assert latest_session_date(ny(2026, 3, 23, 9, 30)) == date(2026, 3, 23)
    assert sessions_between(date(2026, 3, 20), date(2026, 3, 23)) == 0  # weekend only
    assert sessions_between(date(2026, 11, 25), date(2026, 11, 27)) == 0  # Thanksgiving
    assert sessions_between(date(2026, 3, 16), date(2026, 3, 20)) == 3


def test_bad_input_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="naive"):
        is_open(datetime(2026, 3, 18, 12))
    with pytest.raises(ValueError, match="unknown exchange"):
        session(date(2026, 3, 18), "XLON")
    with pytest.raises(ValueError, match="positive"):
        next_poll_at(ny(2026, 3, 18, 12), "XNYS", timedelta(0), None)
