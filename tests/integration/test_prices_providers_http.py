"""Provider answers fetched over real HTTP on 127.0.0.1 (plain urllib), then parsed."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from feedserver import FeedServer

from daemon.models import Quote
from daemon.prices.providers import ProviderError, StooqProvider, YahooProvider, get_provider

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "prices"
NY = ZoneInfo("America/New_York")
NOW = datetime(2026, 3, 18, 15, 0, tzinfo=NY)  # Wednesday, session open

YAHOO = {
    "KC": ("yahoo_ok.json", "application/json;charset=utf-8"),
    "NUL": ("yahoo_nulls.json", "application/json;charset=utf-8"),
    "GAP": ("yahoo_gap.json", "application/json;charset=utf-8"),
    "OLD": ("yahoo_stale.json", "application/json;charset=utf-8"),
    "SPLT": ("yahoo_split.json", "application/json;charset=utf-8"),
    "ZVOL": ("yahoo_zero_volume.json", "application/json;charset=utf-8"),
    "NOPE": ("yahoo_not_found.json", "application/json;charset=utf-8"),
    "PROXY": ("html_error.html", "text/html; charset=utf-8"),
}
STOOQ_HISTORY = {
    "KC": "stooq_history_ok.csv",
    "DIRT": "stooq_history_dirty.csv",
    "QUOTA": "stooq_quota.txt",
    "NODATA": "stooq_no_data.txt",
    "PROXY": "html_error.html",
}
STOOQ_QUOTE = {"KC": "stooq_quote_ok.csv", "XYZQ": "stooq_quote_nd.csv", "QUOTA": "stooq_quota.txt"}


def _path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


@pytest.fixture(scope="module")
def server() -> Iterator[FeedServer]:
    with FeedServer() as srv:
        base = srv.url("")
        y, s = YahooProvider(base_url=base), StooqProvider(base_url=base)
        for sym, (name, ctype) in YAHOO.items():
            srv.add(_path(y.url_for(sym)), (FIX / name).read_bytes(), ctype, etag=False)
        for sym, name in STOOQ_HISTORY.items():
            srv.add(_path(s.url_for(sym)), (FIX / name).read_bytes(), "text/csv", etag=False)
        for sym, name in STOOQ_QUOTE.items():
            srv.add(_path(s.url_for(sym, kind="quote")), (FIX / name).read_bytes(), "text/csv", etag=False)
        yield srv


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as r:  # loopback only
        assert r.status == 200  # every failure below is an HTTP 200, as the real services do
        body: bytes = r.read()
        return body


def yahoo(server: FeedServer, sym: str) -> list[Quote]:
    p = YahooProvider(base_url=server.url(""))
    return p.parse(fetch(p.url_for(sym)), sym, now=NOW)


def stooq(server: FeedServer, sym: str, kind: Literal["history", "quote"] = "history") -> list[Quote]:
    p = StooqProvider(base_url=server.url(""), kind=kind)
    return p.parse(fetch(p.url_for(sym)), sym, now=NOW)


def test_yahoo_ok(server: FeedServer) -> None:
    quotes = yahoo(server, "KC")
    assert len(quotes) == 22
    assert quotes[0].at.date() == date(2026, 2, 17) and quotes[-1].at.date() == date(2026, 3, 18)
    # bars are stamped 09:30 New York; across the DST change (March 8) each still lands on its own date
    assert [q.at.date() for q in quotes if date(2026, 3, 5) <= q.at.date() <= date(2026, 3, 10)] == [
        date(2026, 3, 5),
        date(2026, 3, 6),
        date(2026, 3, 9),
        date(2026, 3, 10),
    ]
    assert all(q.at.hour == 0 and q.daily and q.ticker == "KC" for q in quotes)
    last = quotes[-1]
    assert (last.open, last.high, last.low, last.close, last.volume) == (11.86, 11.92, 11.82, 11.83, 2274104.0)
    assert server.hits("/v8/finance/chart/KC?range=2y&interval=1d") == 1


def test_yahoo_nulls_drop_the_bar_without_a_close(server: FeedServer) -> None:
    quotes = yahoo(server, "NUL")
    assert len(quotes) == 20
    assert date(2026, 2, 24) not in {q.at.date() for q in quotes}  # all-null bar
    assert date(2026, 3, 2) not in {q.at.date() for q in quotes}  # close null, open present


def test_yahoo_gap_keeps_only_what_came(server: FeedServer) -> None:
    days = {q.at.date() for q in yahoo(server, "GAP")}
    assert len(days) == 19 and not days & {date(2026, 3, 9), date(2026, 3, 10), date(2026, 3, 11)}


def test_yahoo_stale_answer_during_a_session_is_an_error_that_keeps_the_bars(server: FeedServer) -> None:
    with pytest.raises(ProviderError) as ei:
        yahoo(server, "OLD")
    e = ei.value
    assert e.kind == "stale" and e.retryable
    assert str(e) == "yahoo OLD: stale data: newest bar is 2026-03-10, expected 2026-03-18 or 2026-03-17"
    assert e.quotes[-1].at.date() == date(2026, 3, 10)
    # the same answer read on the evening of March 11 is fresh enough (one session of lag)
    p = YahooProvider(base_url=server.url(""))
    ok = p.parse(fetch(p.url_for("OLD")), "OLD", now=datetime(2026, 3, 11, 20, 0, tzinfo=NY))
    assert ok[-1].at.date() == date(2026, 3, 10)


def test_yahoo_split_answer_parses_unadjusted(server: FeedServer) -> None:
    quotes = {q.at.date(): q for q in yahoo(server, "SPLT")}
    assert quotes[date(2026, 3, 16)].close == pytest.approx(quotes[date(2026, 3, 13)].close / 2, rel=0.05)


def test_yahoo_zero_volume_is_kept_as_zero(server: FeedServer) -> None:
    vols = [q.volume for q in yahoo(server, "ZVOL")]
    assert vols.count(0.0) == 3 and vols[-1] == 6_000_000


@pytest.mark.parametrize(
    ("sym", "kind", "text"),
    [
        ("NOPE", "not-found", "yahoo NOPE: chart error Not Found: No data found, symbol may be delisted"),
        ("PROXY", "html", "yahoo PROXY: answered an HTML page, not quotes: '502 Bad Gateway'"),
    ],
)
def test_yahoo_errors(server: FeedServer, sym: str, kind: str, text: str) -> None:
    with pytest.raises(ProviderError) as ei:
        yahoo(server, sym)
    assert ei.value.kind == kind and str(ei.value) == text


def test_stooq_history_ok_matches_yahoo(server: FeedServer) -> None:
    s, y = stooq(server, "KC"), yahoo(server, "KC")
    assert [(q.at, q.close, q.volume) for q in s] == [(q.at, q.close, q.volume) for q in y]
    assert server.hits("/q/d/l/?s=kc.us&i=d") == 1


def test_stooq_dirty_history_is_cleaned(server: FeedServer) -> None:
    quotes = stooq(server, "DIRT")
    days = [q.at.date() for q in quotes]
    assert len(days) == len(set(days)) == 19  # NaN, negative, N/D rows dropped; duplicate day merged
    for bad in (date(2026, 2, 19), date(2026, 2, 24), date(2026, 3, 2)):
        assert bad not in days
    partial = next(q for q in quotes if q.at.date() == date(2026, 2, 26))
    assert (partial.high, partial.low, partial.volume, partial.close) == (None, None, None, 11.65)
    assert quotes[-1].volume == 0.0  # the later duplicate of March 18 wins


def test_stooq_quote_is_a_live_snapshot_in_utc(server: FeedServer) -> None:
    (q,) = stooq(server, "KC", "quote")
    assert not q.daily
    assert q.at.isoformat() == "2026-03-18T19:59:58+00:00"  # 20:59:58 Warsaw (CET) = 15:59:58 New York
    assert q.close == 11.83


@pytest.mark.parametrize(
    ("sym", "kind", "err", "text"),
    [
        ("QUOTA", "history", "quota", "stooq QUOTA: over quota: Exceeded the daily hits limit"),
        ("QUOTA", "quote", "quota", "stooq QUOTA: over quota: Exceeded the daily hits limit"),
        ("NODATA", "history", "no-data", "stooq NODATA: no data for this symbol"),
        ("XYZQ", "quote", "no-data", "stooq XYZQ: no data (N/D) for this symbol"),
        ("PROXY", "history", "html", "stooq PROXY: answered an HTML page, not quotes: '502 Bad Gateway'"),
    ],
)
def test_stooq_errors(server: FeedServer, sym: str, kind: Literal["history", "quote"], err: str, text: str) -> None:
    with pytest.raises(ProviderError) as ei:
        stooq(server, sym, kind)
    assert ei.value.kind == err and str(ei.value) == text
    assert ei.value.retryable == (err in ("quota", "html"))


def test_registry_builds_providers_pointing_at_the_server(server: FeedServer) -> None:
    p = get_provider("yahoo", base_url=server.url(""))
    assert p.name == "yahoo"
    assert p.parse(fetch(p.url_for("KC")), "KC", now=NOW)[-1].close == 11.83
