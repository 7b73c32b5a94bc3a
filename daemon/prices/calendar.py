"""Exchange sessions: when a price source is worth polling.

Prices only change while the exchange trades, so polling follows the session: at the source's
interval during regular hours, one snapshot a few minutes after the close (the official close
settles after the bell), nothing on weekends or exchange holidays.

Holidays and early closes come from the `holidays` package (`holidays.NYSE`, categories
"public" and "half_day"). Why that and not exchange_calendars / pandas_market_calendars: it is
maintained (yearly releases that add ad-hoc closings such as days of mourning), it is light
(pure Python, no pandas/numpy), and it is already a project dependency. NASDAQ observes the same
holidays and early closes as the NYSE, so both exchange codes share one table.

All functions are pure: `now` is passed in and must be timezone-aware.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

#: How long after the close the one post-close snapshot is taken: the closing auction prints and
#: providers publish the official close a few minutes after the bell.
CLOSE_SNAPSHOT_DELAY = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Exchange:
    code: str
    tz: ZoneInfo
    open: time
    close: time
    early_close: time
    holiday_market: str  # market code in the `holidays` package


_NY = ZoneInfo("America/New_York")


def _us_equities(code: str) -> Exchange:
    return Exchange(
        code=code, tz=_NY, open=time(9, 30), close=time(16, 0), early_close=time(13, 0), holiday_market="NYSE"
    )


EXCHANGES: dict[str, Exchange] = {"XNYS": _us_equities("XNYS"), "XNAS": _us_equities("XNAS")}
_ALIASES = {"NYSE": "XNYS", "NASDAQ": "XNAS", "NMS": "XNAS", "NYQ": "XNYS", "NAS": "XNAS", "NGM": "XNAS"}


def get_exchange(code: str) -> Exchange:
    """Operators write XNYS, NYSE or NASDAQ; all resolve to one calendar or a clear error."""
    key = code.strip().upper()
    key = _ALIASES.get(key, key)
    try:
        return EXCHANGES[key]
    except KeyError:
        known = ", ".join(sorted([*EXCHANGES, *_ALIASES]))
        raise ValueError(f"unknown exchange calendar {code!r} (known: {known})") from None


@lru_cache(maxsize=256)
def _closed_days(market: str, year: int) -> frozenset[date]:
    return frozenset(holidays.financial_holidays(market, years=year).keys())


@lru_cache(maxsize=256)
def _half_days(market: str, year: int) -> frozenset[date]:
    return frozenset(holidays.financial_holidays(market, years=year, categories=("half_day",)).keys())


def is_trading_day(day: date, exchange: str = "XNYS") -> bool:
    ex = get_exchange(exchange)
    return day.weekday() < 5 and day not in _closed_days(ex.holiday_market, day.year)


def session(now_date: date, exchange: str = "XNYS") -> tuple[datetime, datetime] | None:
    """(open, close) of the regular session on that local date, aware in the exchange zone; None if closed."""
    ex = get_exchange(exchange)
    if not is_trading_day(now_date, ex.code):
        return None
    close = ex.early_close if now_date in _half_days(ex.holiday_market, now_date.year) else ex.close
    return (
        datetime.combine(now_date, ex.open, tzinfo=ex.tz),
        datetime.combine(now_date, close, tzinfo=ex.tz),
    )


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"naive datetime {now.isoformat()}: pass an aware datetime (UTC)")


def local_date(now: datetime, exchange: str = "XNYS") -> date:
    _require_aware(now)
    return now.astimezone(get_exchange(exchange).tz).date()


def is_open(now: datetime, exchange: str = "XNYS") -> bool:
    """True during the regular session: open inclusive, close exclusive."""
    s = session(local_date(now, exchange), exchange)
    return s is not None and s[0] <= now < s[1]


def next_session(after: date, exchange: str = "XNYS") -> tuple[datetime, datetime]:
    """The first session strictly after the local date `after`."""
    day = after
    for _ in range(30):  # the longest closure on record (1914) aside, a few days suffice
        day += timedelta(days=1)
        s = session(day, exchange)
        if s is not None:
            return s
    raise ValueError(f"no {exchange} session within 30 days after {after.isoformat()}")


def previous_session(before: date, exchange: str = "XNYS") -> tuple[datetime, datetime]:
    """The last session strictly before the local date `before`."""
    day = before
    for _ in range(30):
        day -= timedelta(days=1)
        s = session(day, exchange)
        if s is not None:
            return s
    raise ValueError(f"no {exchange} session within 30 days before {before.isoformat()}")


def latest_session_date(now: datetime, exchange: str = "XNYS") -> date:
    """Local date of the most recent session that has opened at `now` (today's once it opened)."""
    today = local_date(now, exchange)
    s = session(today, exchange)
    if s is not None and now >= s[0]:
        return today
    return previous_session(today, exchange)[0].date()


def sessions_between(first: date, last: date, exchange: str = "XNYS") -> int:
    """Number of sessions strictly between two local dates: >0 means bars are missing between them."""
    count = 0
    day = first + timedelta(days=1)
    while day < last:
        if is_trading_day(day, exchange):
            count += 1
        day += timedelta(days=1)
    return count


def next_poll_at(
    now: datetime,
    exchange: str = "XNYS",
    every: timedelta = timedelta(minutes=5),
    last_poll: datetime | None = None,
) -> datetime:
    """When a price source on this exchange should be polled next.

    - Session open: `now + every`, unless that reaches the close; then the close snapshot.
    - Closed, today's session is over and its snapshot is not taken: the snapshot at
      close + CLOSE_SNAPSHOT_DELAY (or now, when that moment already passed).
    - Otherwise: the next session's open.

    The snapshot counts as taken when `last_poll` is at or after close + CLOSE_SNAPSHOT_DELAY, so
    it happens exactly once per session; a poll between the bell and that moment does not count
    (the official close may not be published yet). A snapshot missed on an earlier day is not
    caught up later (no polls on weekends or holidays); the next session brings fresh data anyway.
    The result is in the exchange's zone.
    """
    _require_aware(now)
    if every <= timedelta(0):
        raise ValueError(f"poll interval must be positive, got {every}")
    if last_poll is not None:
        _require_aware(last_poll)
    ex = get_exchange(exchange)
    now_local = now.astimezone(ex.tz)
    today = now_local.date()
    s = session(today, ex.code)
    if s is not None:
        open_dt, close_dt = s
        if now_local < open_dt:
            return open_dt
        snapshot_at = close_dt + CLOSE_SNAPSHOT_DELAY
        if now_local < close_dt:
            candidate = now_local + every
            return candidate if candidate < close_dt else snapshot_at
        if last_poll is None or last_poll < snapshot_at:
            return max(now_local, snapshot_at)
    return next_session(today, ex.code)[0]
