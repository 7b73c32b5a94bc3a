"""From a quote history to the measures `price:` rules test (change, gap, highs, volume).

Why a whole history and not two quotes: a day's move means something only against the bars
before it. "Highest close in N days" needs the run of lower closes behind it, the volume ratio
needs a 20-session average, and a close that halves overnight is either a crash or a 2:1 split,
which only the previous close and today's open can tell apart.

Splits: a bar whose open is within `SPLIT_OPEN_TOL` of prev_close / n and whose close is within
`SPLIT_CLOSE_TOL` of it, for n a common split ratio (2:1 … 20:1, or a 1:n reverse split), is
taken as a split the provider has not adjusted for yet. Earlier bars are divided by n (volumes
multiplied), so the split day reports its real move, and its event carries `split_ratio = n`
(reverse: 1/n) for the digest to mention. Reverse 1:2 is not considered: a stock doubling
overnight is a move worth an alert more often than a 1:2 consolidation is. The cost: a genuine
crash that opens and closes at exactly a half, third, quarter… of the previous close is taken
for a split; the open tolerance
is kept tight (2%) because real crashes rarely open exactly there (AAPL's -52% of 2000-09-29
opened 9% away from a half, so it stays a move).

Metrics beyond models.PriceEvent's list: `split_ratio` (see above) and `missing_sessions` (the
exchange held sessions between this bar and the previous one that the provider did not give;
change_pct is then a multi-session move and says so).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta

from daemon.models import PriceEvent, Quote

from . import calendar

VOLUME_WINDOW = 20  # sessions in the volume average
VOLUME_MIN_SAMPLES = 5  # fewer non-zero volumes than this: no volume_ratio
SPLIT_OPEN_TOL = 0.02
SPLIT_CLOSE_TOL = 0.10
SPLIT_RATIOS: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8, 10, 15, 20)
REVERSE_SPLIT_RATIOS: tuple[int, ...] = (3, 4, 5, 8, 10, 15, 20, 25, 30, 40, 50)


@dataclass(frozen=True, slots=True)
class Split:
    at: datetime  # the first bar at the new share count
    ratio: float  # new shares per old share: 2.0 for 2:1, 0.1 for 1:10

    @property
    def label(self) -> str:
        return f"{self.ratio:g}:1" if self.ratio >= 1 else f"1:{1 / self.ratio:g}"


def session_day(q: Quote | PriceEvent, exchange: str = "XNYS") -> date:
    """The trading date a bar or event belongs to (daily bars are stamped 00:00 UTC of it)."""
    at = q.at
    if isinstance(q, Quote):
        return at.date() if q.daily else calendar.local_date(at, exchange)
    if at.utcoffset() == timedelta(0) and at.timetz().replace(tzinfo=None) == time(0):
        return at.date()
    return calendar.local_date(at, exchange)


def _near(x: float, target: float, tol: float) -> bool:
    return abs(x / target - 1.0) <= tol


def split_ratio(prev_close: float, bar: Quote) -> float | None:
    """The split that explains this bar's jump from `prev_close`, or None for an ordinary move."""
    if bar.open is None or prev_close <= 0:
        return None
    for n in SPLIT_RATIOS:
        t = prev_close / n
        if _near(bar.open, t, SPLIT_OPEN_TOL) and _near(bar.close, t, SPLIT_CLOSE_TOL):
            return float(n)
    for n in REVERSE_SPLIT_RATIOS:
        t = prev_close * n
        if _near(bar.open, t, SPLIT_OPEN_TOL) and _near(bar.close, t, SPLIT_CLOSE_TOL):
            return 1.0 / n
    return None


def detect_splits(quotes: Sequence[Quote]) -> list[Split]:
    return [Split(q.at, r) for prev, q in itertools.pairwise(quotes) if (r := split_ratio(prev.close, q)) is not None]


def _scale(q: Quote, factor: float) -> Quote:
    """Prices divided by `factor`, volume multiplied: the bar as if the split had happened before it."""

    def div(v: float | None) -> float | None:
        return None if v is None else v / factor

    vol = None if q.volume is None else q.volume * factor
    return replace(q, close=q.close / factor, open=div(q.open), high=div(q.high), low=div(q.low), volume=vol)


def adjust_for_splits(quotes: Sequence[Quote], splits: Sequence[Split]) -> list[Quote]:
    """Bars before each split rescaled to the latest share count."""
    out = list(quotes)
    for s in splits:
        out = [_scale(q, s.ratio) if q.at < s.at else q for q in out]
    return out


def prepare(quotes: Sequence[Quote], exchange: str = "XNYS") -> tuple[list[Quote], dict[datetime, float]]:
    """One ticker's bars sorted, one per session (a live snapshot replaces its day's bar), split-adjusted."""
    tickers = {q.ticker for q in quotes}
    if len(tickers) > 1:
        raise ValueError(f"one ticker per history, got {', '.join(sorted(tickers))}")
    by_day: dict[date, Quote] = {}
    for q in sorted(quotes, key=lambda q: (session_day(q, exchange), not q.daily, q.at)):
        by_day[session_day(q, exchange)] = q
    bars = [by_day[d] for d in sorted(by_day)]
    splits = detect_splits(bars)
    return adjust_for_splits(bars, splits), {s.at: s.ratio for s in splits}


def merge_snapshot(history: Sequence[Quote], snapshot: Quote, exchange: str = "XNYS") -> list[Quote]:
    """Daily history plus a live quote: the quote stands for its session's bar."""
    return prepare([*history, snapshot], exchange)[0]


def _prev_beyond(values: Sequence[float], higher: bool) -> list[int]:
    """For each i, the index of the last earlier value that is >= (or <=) it; -1 if none. O(n)."""
    out: list[int] = []
    stack: list[int] = []
    for i, v in enumerate(values):
        while stack and (values[stack[-1]] < v if higher else values[stack[-1]] > v):
            stack.pop()
        out.append(stack[-1] if stack else -1)
        stack.append(i)
    return out


def events_for_history(quotes: Sequence[Quote], *, window: str = "1d", exchange: str = "XNYS") -> Iterator[PriceEvent]:
    """One event per bar that has a previous bar (the first has nothing to compare with)."""
    bars, splits = prepare(quotes, exchange)
    closes = [q.close for q in bars]
    prev_high = _prev_beyond(closes, higher=True)
    prev_low = _prev_beyond(closes, higher=False)
    for i in range(1, len(bars)):
        q, prev = bars[i], bars[i - 1]
        pc = prev.close
        m: dict[str, float] = {
            "last": q.close,
            "prev_close": pc,
            "change_pct": (q.close / pc - 1.0) * 100.0,
            "high_days": float(i - prev_high[i]),
            "low_days": float(i - prev_low[i]),
        }
        if q.open is not None:
            m["gap_pct"] = (q.open / pc - 1.0) * 100.0
        if q.volume:
            past = [v for b in bars[max(0, i - VOLUME_WINDOW) : i] if (v := b.volume)]
            if len(past) >= VOLUME_MIN_SAMPLES:
                m["volume_ratio"] = q.volume / (sum(past) / len(past))
        if q.at in splits:
            m["split_ratio"] = splits[q.at]
        missing = calendar.sessions_between(session_day(prev, exchange), session_day(q, exchange), exchange)
        if missing:
            m["missing_sessions"] = float(missing)
        yield PriceEvent(ticker=q.ticker, at=q.at, metrics=m, window=window)


def price_event(quotes: Sequence[Quote], *, window: str = "1d", exchange: str = "XNYS") -> PriceEvent | None:
    """The event of the latest bar, or None with fewer than two bars."""
    last: PriceEvent | None = None
    for last in events_for_history(quotes, window=window, exchange=exchange):  # noqa: B007
        pass
    return last


def _as_of(q: Quote, exchange: str) -> datetime:
    """When a bar's close was known: the session close for daily bars, the quote time otherwise."""
    if not q.daily:
        return q.at
    s = calendar.session(q.at.date(), exchange)
    if s is not None:
        return s[1]
    return datetime.combine(q.at.date(), time(21, 0), tzinfo=UTC)


def move_since(history: Sequence[Quote], published_at: datetime, exchange: str = "XNYS") -> float | None:
    """% move from the last close known at the story's time to the latest price.

    None when no price is older than the story or none is newer (a "+0.0% since" would claim a
    measurement that was not made).
    """
    if published_at.tzinfo is None:
        raise ValueError("published_at must be timezone-aware")
    bars = prepare(history, exchange)[0] if history else []
    base: Quote | None = None
    for q in bars:
        if _as_of(q, exchange) <= published_at:
            base = q
        else:
            break
    if base is None or base is bars[-1]:
        return None
    return (bars[-1].close / base.close - 1.0) * 100.0
