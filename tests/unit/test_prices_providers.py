from __future__ import annotations

import json
from datetime import date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from daemon.errors import ConfigError
from daemon.prices.providers import (
    CsvFileProvider,
    ProviderError,
    StooqProvider,
    YahooProvider,
    get_provider,
    make_bar,
    parse_stooq_bulk,
    read_stooq_bulk,
)

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "prices"
NY = ZoneInfo("America/New_York")
NOW = datetime(2026, 3, 18, 15, 0, tzinfo=NY)


def chart(days: list[date], **cols: list[object]) -> bytes:
    stamps = [int(datetime.combine(d, time(9, 30), tzinfo=NY).timestamp()) for d in days]
    quote = {k: cols.get(k, [1.0] * len(days)) for k in ("open", "high", "low", "close", "volume")}
    meta = {"exchangeTimezoneName": "America/New_York", "gmtoffset": -14400}
    doc = {"chart": {"result": [{"meta": meta, "timestamp": stamps, "indicators": {"quote": [quote]}}], "error": None}}
    return json.dumps(doc).encode()


def test_urls() -> None:
    y, s = YahooProvider(), StooqProvider()
    assert y.url_for("KC") == "https://query1.finance.yahoo.com/v8/finance/chart/KC?range=2y&interval=1d"
    assert (
        y.url_for("brk.b", range_="5d")
        == "https://query1.finance.yahoo.com/v8/finance/chart/BRK-B?range=5d&interval=1d"
    )
    assert s.url_for("KC") == "https://stooq.com/q/d/l/?s=kc.us&i=d"
    assert s.url_for("AAPL", start=date(2024, 1, 2)) == "https://stooq.com/q/d/l/?s=aapl.us&i=d&d1=20240102"
    assert s.url_for("KC", kind="quote") == "https://stooq.com/q/l/?s=kc.us&f=sd2t2ohlcv&h&e=csv"
    assert s.url_for("BRK.B") == "https://stooq.com/q/d/l/?s=brk-b.us&i=d"
    assert CsvFileProvider(FIX).url_for("KC") == (FIX / "kc.us.txt").resolve().as_uri()


def test_registry() -> None:
    assert isinstance(get_provider("Yahoo"), YahooProvider)
    assert get_provider("stooq", kind="quote").url_for("KC").startswith("https://stooq.com/q/l/")
    assert get_provider("csv", directory=FIX).name == "csv"
    with pytest.raises(ConfigError, match="unknown price provider 'bloomberg' \\(known: csv, stooq, yahoo\\)"):
        get_provider("bloomberg")
    with pytest.raises(ConfigError, match="price provider 'yahoo'"):
        get_provider("yahoo", colour="red")


def test_yahoo_rejects_junk_with_a_reason() -> None:
    y = YahooProvider()
    cases = {
        b"": ("no-data", "yahoo KC: empty answer"),
        b"Too Many Requests\r\n": ("format", "yahoo KC: answer is not JSON (Expecting value at char 0)"),
        b'{"finance": {"error": null}}': ("format", "yahoo KC: JSON without a `chart` object"),
        b'{"chart": {"result": [], "error": null}}': ("no-data", "yahoo KC: chart has no result"),
        b'{"chart": {"result": null, "error": {"code": "Bad Request", "description": "Invalid input"}}}': (
            "upstream",
            "yahoo KC: chart error Bad Request: Invalid input",
        ),
    }
    for body, (kind, text) in cases.items():
        with pytest.raises(ProviderError) as ei:
            y.parse(body, "KC", now=NOW)
        assert (ei.value.kind, str(ei.value)) == (kind, text)
    short = chart([date(2026, 3, 17), date(2026, 3, 18)], close=[1.0])
    with pytest.raises(ProviderError, match="series `close` has 1 values for 2 timestamps"):
        y.parse(short, "KC", now=NOW)
    nothing = chart([date(2026, 3, 17)], close=[None])
    with pytest.raises(ProviderError, match="no usable quotes in the answer \\(1 bars without a usable close\\)"):
        y.parse(nothing, "KC", now=NOW)


def test_yahoo_nan_negative_future_and_duplicates() -> None:
    days = [date(2026, 3, 16), date(2026, 3, 17), date(2026, 3, 17), date(2026, 3, 18), date(2026, 3, 19)]
    body = chart(
        days,
        close=[float("nan"), 10.0, 10.5, -3.0, 11.0],  # json.dumps writes NaN, as some proxies do
        open=[1.0, -2.0, 10.2, 1.0, 1.0],
        high=[1.0, 10.1, 10.0, 1.0, 1.0],  # 10.0 < close 10.5: not a high
        low=[1.0, 9.9, 10.1, 1.0, 1.0],
        volume=[1, -5, 7, 1, 1],
    )
    quotes = YahooProvider().parse(body, "KC", now=NOW)
    # NaN and negative closes dropped, the 19th is after `now`, the second 17th wins over the first
    assert [(q.at.date(), q.close, q.open, q.high, q.low, q.volume) for q in quotes] == [
        (date(2026, 3, 17), 10.5, 10.2, None, None, 7.0)
    ]


def test_stale_check_is_against_the_latest_session() -> None:
    y = YahooProvider()
    body = chart([date(2026, 3, 19), date(2026, 3, 20)])  # Thursday, Friday
    # Monday before the open: Friday is the latest session -> fresh
    assert len(y.parse(body, "KC", now=datetime(2026, 3, 23, 8, 0, tzinfo=NY))) == 2
    # Tuesday during the session: Monday or Tuesday expected -> stale
    with pytest.raises(ProviderError, match="stale data: newest bar is 2026-03-20, expected 2026-03-24 or 2026-03-23"):
        y.parse(body, "KC", now=datetime(2026, 3, 24, 11, 0, tzinfo=NY))
    assert len(y.parse(body, "KC", now=None)) == 2  # no `now`: no freshness check (backtests)


def test_stooq_oddities() -> None:
    s = StooqProvider()
    with pytest.raises(ProviderError, match="unexpected CSV header 'Foo,Bar'"):
        s.parse(b"Foo,Bar\n1,2\n", "KC", now=NOW)
    bom = b"\xef\xbb\xbfDate,Open,High,Low,Close,Volume\n2026-03-18,1,2,0.5,1.5,100\n"
    assert s.parse(bom, "KC", now=NOW)[0].close == 1.5
    headless = b"KC.US,2026-03-18,17:30:02,1,2,0.5,1.5,100\n"  # quote without &h
    (q,) = s.parse(headless, "KC", now=NOW)
    assert not q.daily and q.at.isoformat() == "2026-03-18T16:30:02+00:00"
    no_volume = b"Date,Open,High,Low,Close\n2026-03-18,1,2,0.5,1.5\n"  # indices have no volume column
    assert s.parse(no_volume, "KC", now=NOW)[0].volume is None


def test_make_bar_distrusts_inverted_ranges() -> None:
    at = datetime(2026, 3, 18, tzinfo=NY)
    bar = make_bar("KC", at, 10.0, 10.0, 9.0, 11.0, 5)
    assert bar is not None and (bar.high, bar.low) == (None, None)
    assert make_bar("KC", at, "N/D") is None
    assert make_bar("KC", at, 0) is None


def test_bulk_file_reading() -> None:
    quotes = read_stooq_bulk(FIX / "bulk_demo.us.txt")
    assert {q.ticker for q in quotes} == {"DEMO", "OTHR"}
    assert len(quotes) == 76
    only = parse_stooq_bulk((FIX / "bulk_demo.us.txt").read_bytes(), symbol="othr.us")
    assert len(only) == 38 and {q.ticker for q in only} == {"OTHR"}
    csvp = CsvFileProvider(FIX)
    assert [q.close for q in csvp.parse((FIX / "bulk_demo.us.txt").read_bytes(), "DEMO", now=NOW)][:2] == [
        19.92,
        19.9997,
    ]
    with pytest.raises(ProviderError, match="no rows for KC"):
        csvp.parse((FIX / "bulk_demo.us.txt").read_bytes(), "KC", now=NOW)
    head = b"<TICKER>,<PER>,<DATE>,<TIME>,<OPEN>,<HIGH>,<LOW>,<CLOSE>,<VOL>,<OPENINT>\n"
    intraday = head + b"KC.US,5,20260318,153000,1,1,1,1,1,0\n"
    with pytest.raises(ProviderError, match=r"x\.txt:2: only daily bars"):
        parse_stooq_bulk(intraday, source="x.txt")
    with pytest.raises(ProviderError, match="cannot read file"):
        read_stooq_bulk(FIX / "missing.us.txt")
