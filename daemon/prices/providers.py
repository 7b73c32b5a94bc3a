"""Price providers: where a quote comes from, and how its answer is read without trusting it.

A provider does no I/O. It says which URL to fetch (`url_for`) and turns the bytes the pipeline
fetched into clean `Quote`s (`parse`), because HTTP has one home (daemon.ingest.fetch) and a pure
parser can be tested on captured answers. Free quote sources fail in odd ways, all answered
with HTTP 200: Stooq's daily quota ("Exceeded the daily hits limit"), "N/D" fields, "No data",
an HTML page from a proxy or consent wall; Yahoo's `chart.error`, null bars, NaN. Every such
answer becomes a `ProviderError` with a one-line reason and a `kind` the caller can act on
(back off on "quota", give up on "not-found"), never an exception from deep inside json or csv.

Bars are cleaned, not trusted: a bar without a positive, finite close is dropped (nulls, NaN,
zero, negative), a bad open/high/low/volume becomes None (zero volume is kept: it is a fact
that the events stage knows to skip), duplicates of one session keep the last answer, bars
dated after `now` are dropped, and an answer whose newest bar is older than the session before
the latest one is "stale" (the quote would describe an old market). Split jumps are not fixed
here but in `daemon.prices.events`, which sees the whole history.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import quote as urlquote
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from daemon.errors import ConfigError, KeynewsError
from daemon.models import Quote

from . import calendar

ErrorKind = Literal["quota", "no-data", "not-found", "html", "format", "stale", "upstream"]

#: kinds after which trying again later can help
RETRYABLE: frozenset[str] = frozenset({"quota", "html", "stale", "upstream"})

# Assumed, not verified: Stooq stamps its quotes in Polish local time (Stooq does not document it);
# check against a live answer: a US close should read 22:0x in summer, 21:0x/22:0x around DST gaps.
_WARSAW = ZoneInfo("Europe/Warsaw")


class ProviderError(KeynewsError):
    """A provider answer that gives no usable quotes; `quotes` keeps what was readable (stale)."""

    def __init__(
        self,
        provider: str,
        symbol: str,
        message: str,
        *,
        kind: ErrorKind = "format",
        quotes: Iterable[Quote] = (),
    ) -> None:
        self.provider = provider
        self.symbol = symbol
        self.kind: ErrorKind = kind
        self.quotes: tuple[Quote, ...] = tuple(quotes)
        self.message = message
        super().__init__(f"{provider} {symbol}: {message}")

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE


class PriceProvider(Protocol):
    name: str

    def url_for(self, symbol: str) -> str: ...

    def parse(self, body: bytes, symbol: str, *, now: datetime) -> list[Quote]: ...


# ----------------------------------------------------------------------------- shared cleaning


def _num(value: object) -> float | None:
    """A finite float, or None for null, NaN, inf, text like 'N/D' and other junk."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        f = float(value)
    elif isinstance(value, str):
        try:
            f = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return f if math.isfinite(f) else None


def _price(value: object) -> float | None:
    f = _num(value)
    return f if f is not None and f > 0 else None


def _volume(value: object) -> float | None:
    f = _num(value)
    return f if f is not None and f >= 0 else None


def daily_at(day: date) -> datetime:
    """The `Quote.at` of a daily bar: the session date at 00:00 UTC."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def make_bar(
    ticker: str,
    at: datetime,
    close: object,
    open_: object = None,
    high: object = None,
    low: object = None,
    volume: object = None,
    *,
    daily: bool = True,
) -> Quote | None:
    """One cleaned bar, or None when it has no usable close."""
    c = _price(close)
    if c is None:
        return None
    o, h, lo = _price(open_), _price(high), _price(low)
    if h is not None and lo is not None and h < lo:
        h = lo = None  # inverted range: the provider mixed columns up, keep only what is sure
    if h is not None and h < c * 0.999999:
        h = None
    if lo is not None and lo > c * 1.000001:
        lo = None
    return Quote(ticker=ticker, at=at, close=c, open=o, high=h, low=lo, volume=_volume(volume), daily=daily)


def _session_day(q: Quote, exchange: str) -> date:
    return q.at.date() if q.daily else calendar.local_date(q.at, exchange)


def finish(
    provider: str,
    symbol: str,
    bars: Iterable[Quote],
    *,
    now: datetime | None,
    exchange: str = "XNYS",
    dropped: int = 0,
) -> list[Quote]:
    """Sort, keep one bar per session (the last answer wins), drop future bars, check freshness."""
    by_day: dict[tuple[date, bool], Quote] = {}
    today = calendar.local_date(now, exchange) if now is not None else None
    for q in bars:
        day = _session_day(q, exchange)
        if today is not None and day > today:
            dropped += 1
            continue
        by_day[(day, q.daily)] = q
    out = sorted(by_day.values(), key=lambda q: (q.at, not q.daily))
    if not out:
        hint = f" ({dropped} bars without a usable close)" if dropped else ""
        raise ProviderError(provider, symbol, f"no usable quotes in the answer{hint}", kind="no-data")
    if now is not None:
        latest = calendar.latest_session_date(now, exchange)
        oldest_ok = calendar.previous_session(latest, exchange)[0].date()
        newest = _session_day(out[-1], exchange)
        if newest < oldest_ok:
            raise ProviderError(
                provider,
                symbol,
                f"stale data: newest bar is {newest.isoformat()}, expected {latest.isoformat()} "
                f"or {oldest_ok.isoformat()}",
                kind="stale",
                quotes=out,
            )
    return out


def _text(body: bytes) -> str:
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    return body.decode("utf-8", errors="replace").strip()


def _looks_html(text: str) -> bool:
    head = text[:200].lstrip().lower()
    return head.startswith(("<!doctype", "<html", "<head", "<body", "<?xml")) or "<html" in head


def _html_error(provider: str, symbol: str, text: str) -> ProviderError:
    lower = text.lower()
    title = ""
    i = lower.find("<title")
    if i >= 0:
        j, k = lower.find(">", i), lower.find("</title", i)
        if j >= 0 and k > j:
            title = " ".join(text[j + 1 : k].split())[:120]
    what = f": {title!r}" if title else ""
    return ProviderError(provider, symbol, f"answered an HTML page, not quotes{what}", kind="html")


# ----------------------------------------------------------------------------- Yahoo


class YahooProvider:
    """Yahoo Finance chart API (v8): JSON with parallel timestamp/open/high/low/close/volume arrays."""

    name = "yahoo"

    def __init__(
        self, base_url: str = "https://query1.finance.yahoo.com", range_: str = "2y", exchange: str = "XNYS"
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.range = range_  # 2y: enough bars for a 252-day high and a 20-day volume average
        self.exchange = exchange

    def url_for(self, symbol: str, *, range_: str | None = None, interval: str = "1d") -> str:
        ysym = symbol.strip().upper().replace(".", "-")  # BRK.B -> BRK-B
        query = urlencode({"range": range_ or self.range, "interval": interval})
        return f"{self.base_url}/v8/finance/chart/{urlquote(ysym, safe='^=-')}?{query}"

    def parse(self, body: bytes, symbol: str, *, now: datetime | None) -> list[Quote]:
        text = _text(body)
        if not text:
            raise ProviderError(self.name, symbol, "empty answer", kind="no-data")
        if text.startswith("<"):
            raise _html_error(self.name, symbol, text)
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise ProviderError(self.name, symbol, f"answer is not JSON ({e.msg} at char {e.pos})") from None
        chart = doc.get("chart") if isinstance(doc, dict) else None
        if not isinstance(chart, dict):
            raise ProviderError(self.name, symbol, "JSON without a `chart` object")
        err = chart.get("error")
        if err:
            code = str(err.get("code", "")) if isinstance(err, dict) else str(err)
            desc = str(err.get("description", "")) if isinstance(err, dict) else ""
            kind: ErrorKind = "not-found" if code.lower().replace(" ", "") == "notfound" else "upstream"
            raise ProviderError(self.name, symbol, f"chart error {code}: {desc}".rstrip(": "), kind=kind)
        results = chart.get("result")
        if not isinstance(results, list) or not results or not isinstance(results[0], dict):
            raise ProviderError(self.name, symbol, "chart has no result", kind="no-data")
        res = results[0]
        meta = res.get("meta")
        tz = _yahoo_zone(meta if isinstance(meta, dict) else {})
        stamps = res.get("timestamp")
        if not isinstance(stamps, list) or not stamps:
            raise ProviderError(self.name, symbol, "chart has no bars (empty timestamp list)", kind="no-data")
        try:
            q = res["indicators"]["quote"][0]
        except (KeyError, IndexError, TypeError):
            raise ProviderError(self.name, symbol, "chart has no indicators.quote series") from None
        cols = {k: q.get(k) for k in ("open", "high", "low", "close", "volume")}
        if not isinstance(cols["close"], list):
            raise ProviderError(self.name, symbol, "chart has no close series")
        n = len(stamps)
        for k, v in cols.items():
            if v is not None and (not isinstance(v, list) or len(v) != n):
                got = len(v) if isinstance(v, list) else type(v).__name__
                raise ProviderError(self.name, symbol, f"series `{k}` has {got} values for {n} timestamps")
        bars: list[Quote] = []
        dropped = 0
        for i, ts in enumerate(stamps):
            t = _num(ts)
            if t is None:
                dropped += 1
                continue
            day = datetime.fromtimestamp(t, tz).date()

            def col(k: str, i: int = i) -> object:
                v = cols[k]
                return v[i] if isinstance(v, list) else None

            bar = make_bar(symbol, daily_at(day), col("close"), col("open"), col("high"), col("low"), col("volume"))
            if bar is None:
                dropped += 1
            else:
                bars.append(bar)
        return finish(self.name, symbol, bars, now=now, exchange=self.exchange, dropped=dropped)


def _yahoo_zone(meta: dict[str, object]) -> tzinfo:
    """The exchange's zone, so a bar stamped at the 09:30 open lands on its own session date."""
    name = meta.get("exchangeTimezoneName")
    if isinstance(name, str):
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    off = _num(meta.get("gmtoffset"))
    if off is not None:
        return timezone(timedelta(seconds=int(off)))
    return ZoneInfo("America/New_York")


# ----------------------------------------------------------------------------- Stooq


_STOOQ_HISTORY = ("date", "open", "high", "low", "close")
_STOOQ_QUOTE = ("symbol", "date", "time", "open", "high", "low", "close")


class StooqProvider:
    """stooq.com CSV: daily history (`/q/d/l/`) or the latest quote (`/q/l/`)."""

    name = "stooq"

    def __init__(
        self,
        base_url: str = "https://stooq.com",
        kind: Literal["history", "quote"] = "history",
        exchange: str = "XNYS",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.kind = kind
        self.exchange = exchange

    @staticmethod
    def stooq_symbol(symbol: str) -> str:
        s = symbol.strip().lower().replace(".", "-")
        if s.endswith("-us"):
            s = s[:-3]
        return f"{s}.us"

    def url_for(
        self, symbol: str, *, kind: Literal["history", "quote"] | None = None, start: date | None = None
    ) -> str:
        s = self.stooq_symbol(symbol)
        if (kind or self.kind) == "quote":
            return f"{self.base_url}/q/l/?s={urlquote(s)}&f=sd2t2ohlcv&h&e=csv"
        extra = f"&d1={start.strftime('%Y%m%d')}" if start is not None else ""
        return f"{self.base_url}/q/d/l/?s={urlquote(s)}&i=d{extra}"

    def parse(self, body: bytes, symbol: str, *, now: datetime | None) -> list[Quote]:
        text = _text(body)
        if not text:
            raise ProviderError(self.name, symbol, "empty answer", kind="no-data")
        lower = text.lower()
        if "exceeded the daily hits limit" in lower or "daily hits limit" in lower:
            raise ProviderError(self.name, symbol, f"over quota: {text.splitlines()[0][:120]}", kind="quota")
        if _looks_html(text):
            raise _html_error(self.name, symbol, text)
        if lower in ("no data", "brak danych"):
            raise ProviderError(self.name, symbol, "no data for this symbol", kind="no-data")
        rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
        head = tuple(c.strip().lower() for c in rows[0])
        if head[:5] == _STOOQ_HISTORY:
            bars, dropped = self._history(rows[1:], head, symbol)
        elif head[:7] == _STOOQ_QUOTE:
            bars, dropped = self._quotes(rows[1:], symbol)
        elif len(head) >= 7 and "." in head[0]:  # quote without the header line (no &h)
            bars, dropped = self._quotes(rows, symbol)
        else:
            raise ProviderError(self.name, symbol, f"unexpected CSV header {','.join(rows[0])[:80]!r}")
        if not bars and dropped:
            raise ProviderError(self.name, symbol, "no data (N/D) for this symbol", kind="no-data")
        return finish(self.name, symbol, bars, now=now, exchange=self.exchange, dropped=dropped)

    def _history(self, rows: list[list[str]], head: tuple[str, ...], symbol: str) -> tuple[list[Quote], int]:
        ix = {name: i for i, name in enumerate(head)}
        bars: list[Quote] = []
        dropped = 0
        for r in rows:

            def get(name: str, r: list[str] = r) -> str | None:
                i = ix.get(name)
                return r[i] if i is not None and i < len(r) else None

            day = _date(get("date") or "")
            bar = None
            if day is not None:
                bar = make_bar(symbol, daily_at(day), get("close"), get("open"), get("high"), get("low"), get("volume"))
            if bar is None:
                dropped += 1
            else:
                bars.append(bar)
        return bars, dropped

    def _quotes(self, rows: list[list[str]], symbol: str) -> tuple[list[Quote], int]:
        bars: list[Quote] = []
        dropped = 0
        for r in rows:
            if len(r) < 7:
                dropped += 1
                continue
            day = _date(r[1])
            clock = _clock(r[2])
            if day is None:
                dropped += 1
                continue
            at = datetime.combine(day, clock, tzinfo=_WARSAW).astimezone(UTC) if clock else daily_at(day)
            bar = make_bar(symbol, at, r[6], r[3], r[4], r[5], r[7] if len(r) > 7 else None, daily=clock is None)
            if bar is None:
                dropped += 1
            else:
                bars.append(bar)
        return bars, dropped


def _date(s: str) -> date | None:
    s = s.strip()
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return datetime.strptime(s, fmt).date()
        except ValueError:
            continue
    return None


def _clock(s: str) -> time | None:
    s = s.strip()
    for fmt in ("%H:%M:%S", "%H%M%S"):
        try:
            return datetime.strptime(s, fmt).time()
        except ValueError:
            continue
    return None


# ----------------------------------------------------------------------------- Stooq bulk files


_BULK_HEAD = ("<ticker>", "<per>", "<date>", "<time>", "<open>", "<high>", "<low>", "<close>", "<vol>")


def bulk_ticker(raw: str) -> str:
    """`AAPL.US` -> `AAPL`: the watchlist symbol of a bulk-file row."""
    t = raw.strip().upper()
    return t[:-3] if t.endswith(".US") else t


def parse_stooq_bulk(body: bytes, *, source: str = "<bytes>", symbol: str | None = None) -> list[Quote]:
    """Rows of Stooq's bulk download format; with `symbol`, only that ticker's rows."""
    text = _text(body)
    if not text:
        raise ProviderError("csv", symbol or source, "empty file", kind="no-data")
    if _looks_html(text):
        raise _html_error("csv", symbol or source, text)
    reader = csv.reader(io.StringIO(text))
    head = tuple(c.strip().lower() for c in next(reader, []))
    if head[: len(_BULK_HEAD)] != _BULK_HEAD:
        raise ProviderError(
            "csv", symbol or source, f"not a Stooq bulk file: header {','.join(head)[:80]!r}", kind="format"
        )
    want = bulk_ticker(symbol) if symbol else None
    bars: list[Quote] = []
    per_ticker: dict[str, int] = {}
    for lineno, r in enumerate(reader, start=2):
        if len(r) < 9 or not r[0].strip():
            continue
        ticker = bulk_ticker(r[0])
        if want is not None and ticker != want:
            continue
        if r[1].strip().upper() != "D":
            raise ProviderError(
                "csv", symbol or source, f"{source}:{lineno}: only daily bars (<PER> D) are supported, got {r[1]!r}"
            )
        day = _date(r[2])
        bar = make_bar(ticker, daily_at(day), r[7], r[4], r[5], r[6], r[8]) if day is not None else None
        if bar is not None:
            bars.append(bar)
            per_ticker[ticker] = per_ticker.get(ticker, 0) + 1
    if not bars:
        what = f"no rows for {want}" if want else "no usable rows"
        raise ProviderError("csv", symbol or source, f"{source}: {what}", kind="no-data")
    # one bar per (ticker, session); the file order is not trusted
    seen: dict[tuple[str, datetime], Quote] = {(q.ticker, q.at): q for q in bars}
    return sorted(seen.values(), key=lambda q: (q.ticker, q.at))


def read_stooq_bulk(path: Path) -> list[Quote]:
    """Every daily bar of a Stooq bulk file (one or more tickers), ticker without `.US`."""
    try:
        body = path.read_bytes()
    except OSError as e:
        raise ProviderError("csv", str(path), f"cannot read file: {e.strerror or e}", kind="no-data") from None
    return parse_stooq_bulk(body, source=str(path))


class CsvFileProvider:
    """Offline quotes from Stooq bulk files (`<dir>/<symbol>.us.txt`): demos, tests, backtests.

    No freshness check: an offline history is old by design.
    """

    name = "csv"

    def __init__(self, directory: Path | str = ".") -> None:
        self.directory = Path(directory)

    def url_for(self, symbol: str) -> str:
        return (self.directory / f"{bulk_ticker(symbol).lower()}.us.txt").resolve().as_uri()

    def parse(self, body: bytes, symbol: str, *, now: datetime | None = None) -> list[Quote]:
        bars = parse_stooq_bulk(body, source=symbol, symbol=symbol)
        return [Quote(symbol, q.at, q.close, q.open, q.high, q.low, q.volume, q.daily) for q in bars]


# ----------------------------------------------------------------------------- registry

PROVIDERS: dict[str, type[YahooProvider] | type[StooqProvider] | type[CsvFileProvider]] = {
    "yahoo": YahooProvider,
    "stooq": StooqProvider,
    "csv": CsvFileProvider,
}


def get_provider(name: str, **options: object) -> PriceProvider:
    """The provider named in sources.yaml (`provider: yahoo`); options go to its constructor."""
    key = (name or "").strip().lower()
    cls = PROVIDERS.get(key)
    if cls is None:
        raise ConfigError(f"unknown price provider {name!r} (known: {', '.join(sorted(PROVIDERS))})")
    try:
        return cls(**options)  # type: ignore[arg-type]
    except TypeError as e:
        raise ConfigError(f"price provider {key!r}: {e}") from None
