"""Frozen values that flow between the pipeline stages.

Every stage takes and returns these, never ORM rows, so a stage can be tested alone and no
stage needs to import another stage to know the shape of its input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import IntEnum
from types import MappingProxyType
from typing import Literal

CATEGORIES: tuple[str, ...] = (
    "earnings",
    "guidance",
    "m&a",
    "financing",
    "capital-return",
    "management",
    "legal-regulatory",
    "analyst",
    "filing",
    "price",
    "other",
)

CATEGORY_LABELS: Mapping[str, str] = MappingProxyType(
    {
        "earnings": "results",
        "guidance": "guidance",
        "m&a": "M&A",
        "financing": "financing",
        "capital-return": "dividends & buybacks",
        "management": "management",
        "legal-regulatory": "legal & regulatory",
        "analyst": "analysts",
        "filing": "filing",
        "price": "price move",
        "other": "other",
    }
)


class Severity(IntEnum):
    """Ordered so digests can sort and subscribers can set a floor."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, value: str | int | Severity) -> Severity:
        if isinstance(value, Severity):
            return value
        if isinstance(value, int):
            return cls(value)
        return cls[value.strip().upper()]

    @property
    def label(self) -> str:
        return self.name.lower()


# Filings read for what they say (ingest/filings): stored "pending", then their press release or
# primary document gives the story its headline. Amendments ("8-K/A") are read too.
FILING_FORMS_READ: tuple[str, ...] = ("8-K", "6-K", "10-K", "10-Q", "20-F")
# How long mail waits for a pending filing to be read before it goes out as the feed gave it.
FILING_READ_HOLD = timedelta(minutes=30)


def is_filing_to_read(form: str | None) -> bool:
    return bool(form) and str(form).upper().removesuffix("/A") in FILING_FORMS_READ


Frequency = Literal["immediate", "daily", "weekly"]
FREQUENCIES: tuple[str, ...] = ("immediate", "daily", "weekly")


@dataclass(frozen=True, slots=True)
class Ticker:
    symbol: str
    name: str = ""
    exchange: str = ""
    aliases: tuple[str, ...] = ()
    cik: str | None = None


@dataclass(frozen=True, slots=True)
class Watchlist:
    tickers: tuple[Ticker, ...] = ()

    def symbols(self) -> tuple[str, ...]:
        return tuple(t.symbol for t in self.tickers)

    def get(self, symbol: str) -> Ticker | None:
        for t in self.tickers:
            if t.symbol == symbol:
                return t
        return None


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """One pollable URL. A per-ticker template in sources.yaml expands to one spec per ticker."""

    id: str
    url: str
    kind: Literal["feed", "prices"] = "feed"
    every: timedelta = timedelta(minutes=10)
    jitter: timedelta = timedelta(seconds=30)
    allow_private: bool = False
    ticker: str | None = None  # set when expanded from a per_ticker template
    provider: str | None = None  # prices only: yahoo | stooq | csv
    market_hours: str | None = None  # prices only: exchange calendar code, e.g. XNYS
    label: str = ""  # human name shown in digests ("SEC EDGAR", "GlobeNewswire")
    # a story published longer ago than this when first seen is backlog: stored, never mailed
    max_age: timedelta = timedelta(hours=72)
    # allow_private covers the source's own address; its redirects may go private only with this
    allow_private_redirects: bool = False

    @property
    def display(self) -> str:
        return self.label or self.id


@dataclass(frozen=True, slots=True)
class FetchResult:
    url: str
    status: int  # 0 when no HTTP answer came (DNS, timeout, refused, guard)
    body: bytes = b""
    etag: str | None = None
    last_modified: str | None = None
    content_type: str = ""
    final_url: str = ""
    error: str | None = None
    elapsed_s: float = 0.0
    retry_after: float | None = None  # seconds the server asked us to wait (429/503 Retry-After)

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def ok(self) -> bool:
        return self.error is None and 200 <= self.status < 300


@dataclass(frozen=True, slots=True)
class RawEntry:
    """An entry as the feed gave it: HTML still in, dates not yet trusted."""

    title: str = ""
    link: str = ""
    guid: str = ""
    summary_html: str = ""
    published: datetime | None = None  # as parsed, may be naive or in any zone
    author: str = ""
    tags: tuple[str, ...] = ()
    ticker_hints: tuple[str, ...] = ()  # tickers the feed itself tagged (sa:symbol, category)
    form: str | None = None  # SEC form type when the feed says so
    filing_items: tuple[str, ...] = ()  # 8-K item numbers, e.g. ("2.02", "9.01")
    accession: str | None = None  # EDGAR accession number, 0001234567-26-000001


@dataclass(frozen=True, slots=True)
class ParseResult:
    entries: tuple[RawEntry, ...]
    feed_title: str = ""
    error: str | None = None  # set when the document could not be read as a feed at all
    warning: str | None = None  # recoverable oddities (feedparser's bozo on a readable feed)


@dataclass(frozen=True, slots=True)
class Item:
    """A normalized story from one source."""

    uid: str
    source_id: str
    url: str
    title: str
    summary: str  # clean plain text, never HTML
    published_at: datetime  # aware, UTC
    guid: str = ""
    form: str | None = None
    filing_items: tuple[str, ...] = ()
    tickers: tuple[str, ...] = ()
    ticker_hints: tuple[str, ...] = ()
    source_label: str = ""
    accession: str | None = None  # EDGAR accession number of a filing

    @property
    def text(self) -> str:
        return f"{self.title}\n{self.summary}" if self.summary else self.title


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a rule fired: which field, and the exact text that matched there."""

    rule_id: str
    field: str
    text: str
    start: int = -1
    end: int = -1

    def as_dict(self) -> dict[str, object]:
        return {"rule": self.rule_id, "field": self.field, "text": self.text, "start": self.start, "end": self.end}


@dataclass(frozen=True, slots=True)
class Match:
    rule_id: str
    rule_title: str
    category: str
    severity: Severity
    ticker: str  # "" when the item touches no watched ticker and the rule is unscoped
    explanations: tuple[Explanation, ...] = ()


@dataclass(frozen=True, slots=True)
class Quote:
    """One bar of history or one live snapshot."""

    ticker: str
    at: datetime  # aware, UTC; for daily bars the session date at 00:00 UTC
    close: float
    open: float | None = None
    high: float | None = None
    low: float | None = None
    volume: float | None = None
    daily: bool = True


@dataclass(frozen=True, slots=True)
class PriceEvent:
    """Measures of one ticker at one moment, for `price:` rule conditions.

    metrics keys: change_pct (vs previous close), gap_pct (open vs previous close),
    volume_ratio (volume / 20-day average), high_days / low_days (this close is the highest /
    lowest of that many days), last, prev_close.
    """

    ticker: str
    at: datetime
    metrics: Mapping[str, float] = field(default_factory=dict)
    window: str = "1d"


@dataclass(frozen=True, slots=True)
class DigestEntry:
    """One story in a digest, with everything a template needs and nothing it must compute."""

    title: str
    url: str
    source: str
    published_at: datetime
    summary: str
    categories: tuple[str, ...]
    severity: Severity
    explanations: tuple[Explanation, ...]
    rule_titles: tuple[str, ...]
    also_reported_by: tuple[str, ...] = ()
    move_since_pct: float | None = None


@dataclass(frozen=True, slots=True)
class TickerSection:
    symbol: str
    name: str
    entries: tuple[DigestEntry, ...]
    overflow: int = 0
    last_price: float | None = None
    day_change_pct: float | None = None


@dataclass(frozen=True, slots=True)
class Digest:
    subscriber_email: str
    kind: Literal["digest", "alert"]
    window_key: str
    generated_at: datetime
    tz: str
    sections: tuple[TickerSection, ...]
    subject: str
    unsubscribe_url: str = ""
    preferences_url: str = ""
    more_url: str = ""
