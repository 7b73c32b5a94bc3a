from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from daemon.models import Quote
from daemon.prices.events import (
    detect_splits,
    events_for_history,
    merge_snapshot,
    move_since,
    price_event,
)
from daemon.prices.providers import StooqProvider, YahooProvider, daily_at

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "prices"
NY = ZoneInfo("America/New_York")
NOW = datetime(2026, 3, 18, 15, 0, tzinfo=NY)


def sessions(n: int, start: date = date(2025, 1, 6)) -> list[date]:
    """n weekdays from start (holidays ignored: the tests that use this do not look at gaps)."""
    out: list[date] = []
    d = start
    while len(out) < n:
        if d.weekday() < 5:
            out.append(d)
        d += timedelta(days=1)
    return out


def bars(closes: list[float], volumes: list[float] | None = None, opens: list[float] | None = None) -> list[Quote]:
    days = sessions(len(closes))
    return [
        Quote(
            "KC",
            daily_at(d),
            c,
            open=(opens[i] if opens else c),
            volume=(volumes[i] if volumes else 1000.0),
        )
        for i, (d, c) in enumerate(zip(days, closes, strict=True))
    ]


def yahoo(name: str) -> list[Quote]:
    return YahooProvider().parse((FIX / name).read_bytes(), "KC", now=NOW)


def test_change_gap_last_prev_close() -> None:
    ev = price_event(bars([100.0, 94.0], opens=[100.0, 97.0]))
    assert ev is not None
    assert ev.ticker == "KC" and ev.window == "1d"
    assert ev.metrics["change_pct"] == pytest.approx(-6.0)
    assert ev.metrics["gap_pct"] == pytest.approx(-3.0)
    assert ev.metrics["last"] == 94.0 and ev.metrics["prev_close"] == 100.0
    assert price_event(bars([100.0])) is None
    assert len(list(events_for_history(bars([1.0, 2.0, 3.0])))) == 2  # one per bar with a previous bar


def test_high_days_reports_the_length_of_the_window_it_tops() -> None:
    # a peak, then 251 lower closes, then a close above those but below the peak
    closes = [180.0] + [100.0 + (i % 7) for i in range(251)] + [150.0]
    ev = price_event(bars(closes))
    assert ev is not None
    assert ev.metrics["high_days"] == 252.0  # highest of the last 252 closes (itself included)
    assert ev.metrics["low_days"] == 1.0
    evs = list(events_for_history(bars([5.0, 4.0, 3.0, 6.0, 2.5])))
    assert [e.metrics["high_days"] for e in evs] == [1.0, 1.0, 4.0, 1.0]  # 6.0 tops all four (a doubling, not 1:2)
    assert [e.metrics["low_days"] for e in evs] == [2.0, 3.0, 1.0, 5.0]
    # a tie is not a new high
    ev = price_event(bars([5.0, 4.0, 5.0]))
    assert ev is not None and ev.metrics["high_days"] == 2.0


def test_volume_ratio_uses_twenty_sessions_and_skips_zeros() -> None:
    vols = [9999.0] * 5 + [100.0, 0.0, 300.0, 0.0] * 5 + [400.0]  # last 20 before today: 10 zeros
    ev = price_event(bars([10.0] * len(vols), volumes=vols))
    assert ev is not None
    assert ev.metrics["volume_ratio"] == pytest.approx(400.0 / 200.0)
    zero_today = price_event(bars([10.0] * 7, volumes=[100.0] * 6 + [0.0]))
    assert zero_today is not None and "volume_ratio" not in zero_today.metrics
    too_few = price_event(bars([10.0] * 6, volumes=[0.0, 0.0, 100.0, 100.0, 0.0, 500.0]))
    assert too_few is not None and "volume_ratio" not in too_few.metrics


def test_zero_volume_fixture() -> None:
    quotes = yahoo("yahoo_zero_volume.json")
    ev = price_event(quotes)
    assert ev is not None
    past = [q.volume for q in quotes[-21:-1] if q.volume]
    assert len(past) == 17  # three zero-volume sessions skipped
    assert ev.metrics["volume_ratio"] == pytest.approx(6_000_000 / (sum(past) / len(past)))


def test_unadjusted_two_for_one_split_is_flagged_not_a_fifty_percent_drop() -> None:
    quotes = yahoo("yahoo_split.json")
    raw = {q.at.date(): q for q in quotes}
    assert raw[date(2026, 3, 16)].close / raw[date(2026, 3, 13)].close < 0.55  # the raw answer halves
    assert [(s.at.date(), s.label) for s in detect_splits(quotes)] == [(date(2026, 3, 16), "2:1")]
    evs = {e.at.date(): e for e in events_for_history(quotes)}
    day = evs[date(2026, 3, 16)]
    assert day.metrics["split_ratio"] == 2.0
    assert abs(day.metrics["change_pct"]) < 5
    assert day.metrics["prev_close"] == pytest.approx(raw[date(2026, 3, 13)].close / 2)
    assert all("split_ratio" not in e.metrics for d, e in evs.items() if d != date(2026, 3, 16))
    # the same series without the split gives the same day-over-day changes
    plain = {e.at.date(): e for e in events_for_history(yahoo("yahoo_ok.json"))}
    for d, e in plain.items():
        assert evs[d].metrics["change_pct"] == pytest.approx(e.metrics["change_pct"], abs=0.6)


def test_reverse_split_and_a_crash_that_is_not_a_split() -> None:
    rev = price_event(bars([1.00, 1.02, 10.1], opens=[1.0, 1.0, 10.15]))  # 1:10 reverse split
    assert rev is not None and rev.metrics["split_ratio"] == pytest.approx(0.1)
    assert rev.metrics["change_pct"] == pytest.approx((10.1 / 10.2 - 1) * 100)
    # -52% close, but opened 9% away from a half: a real move (AAPL 2000-09-29 shape)
    crash = price_event(bars([53.5, 25.75], opens=[53.0, 29.2]))
    assert crash is not None and "split_ratio" not in crash.metrics
    assert crash.metrics["change_pct"] == pytest.approx(-51.87, abs=0.01)


def test_gap_in_the_answer_is_reported_as_missing_sessions() -> None:
    evs = {e.at.date(): e for e in events_for_history(yahoo("yahoo_gap.json"))}
    assert date(2026, 3, 10) not in evs
    after = evs[date(2026, 3, 12)]
    assert after.metrics["missing_sessions"] == 3.0  # March 9, 10 and 11 absent
    # weekends and the Presidents Day holiday are not gaps
    assert "missing_sessions" not in evs[date(2026, 2, 17) + timedelta(days=6)].metrics  # Monday 23rd
    assert sum("missing_sessions" in e.metrics for e in evs.values()) == 1


def test_nulls_are_skipped_and_the_change_spans_the_null_bar() -> None:
    quotes = yahoo("yahoo_nulls.json")
    days = [q.at.date() for q in quotes]
    assert date(2026, 2, 24) not in days and date(2026, 3, 2) not in days
    ev = {e.at.date(): e for e in events_for_history(quotes)}[date(2026, 2, 25)]
    assert ev.metrics["missing_sessions"] == 1.0
    prev = next(q for q in quotes if q.at.date() == date(2026, 2, 23))
    assert ev.metrics["prev_close"] == prev.close


def test_live_snapshot_stands_for_its_session() -> None:
    history = StooqProvider().parse((FIX / "stooq_history_ok.csv").read_bytes(), "KC", now=NOW)
    snap = Quote("KC", datetime(2026, 3, 18, 18, 30, tzinfo=UTC), 12.5, open=11.9, volume=5e5, daily=False)
    merged = merge_snapshot(history, snap)
    assert merged[-1] is snap and len(merged) == len(history)
    ev = price_event(merged)
    assert ev is not None and ev.at == snap.at
    assert ev.metrics["prev_close"] == history[-2].close
    # the next day's snapshot extends the history instead
    nxt = Quote("KC", datetime(2026, 3, 19, 14, 0, tzinfo=UTC), 12.0, daily=False)
    assert len(merge_snapshot(history, nxt)) == len(history) + 1


def test_move_since_a_story() -> None:
    closes = {date(2026, 3, 16): 10.0, date(2026, 3, 17): 11.0, date(2026, 3, 18): 12.1}
    hist = [Quote("KC", daily_at(d), c) for d, c in closes.items()]
    # during the 17th's session: the base is the 16th's close
    assert move_since(hist, datetime(2026, 3, 17, 11, 0, tzinfo=NY)) == pytest.approx(21.0)
    # after the 17th's close (16:00 New York = 20:00 UTC in March 2026)
    assert move_since(hist, datetime(2026, 3, 17, 20, 0, tzinfo=UTC)) == pytest.approx(10.0)
    assert move_since(hist, datetime(2026, 3, 17, 19, 59, tzinfo=UTC)) == pytest.approx(21.0)
    assert move_since(hist, datetime(2026, 3, 1, tzinfo=UTC)) is None  # no price before the story
    assert move_since(hist, datetime(2026, 3, 18, 21, 0, tzinfo=UTC)) is None  # none after it
    live = Quote("KC", datetime(2026, 3, 19, 15, 0, tzinfo=UTC), 13.31, daily=False)
    assert move_since([*hist, live], datetime(2026, 3, 18, 21, 0, tzinfo=UTC)) == pytest.approx(10.0)
    with pytest.raises(ValueError, match="aware"):
        move_since(hist, datetime(2026, 3, 17, 12))


def test_one_ticker_per_history() -> None:
    mixed = [Quote("KC", daily_at(date(2026, 3, 16)), 1.0), Quote("AAPL", daily_at(date(2026, 3, 17)), 2.0)]
    with pytest.raises(ValueError, match="one ticker"):
        list(events_for_history(mixed))
