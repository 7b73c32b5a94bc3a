"""Price source -> quotes -> price event -> price rule -> alert naming the news before the move."""

from __future__ import annotations

import asyncio
import email
import json
from datetime import date, datetime, time, timedelta
from email import policy
from pathlib import Path
from zoneinfo import ZoneInfo

from feedserver import FeedServer
from workspace import NOW, TEST_RULES, make_workspace, rss

from daemon.ingest.pipeline import Pipeline
from daemon.mail.digest import DigestService
from daemon.prices.calendar import is_trading_day
from daemon.service import App

NY = ZoneInfo("America/New_York")
PRICE_RULES = (
    TEST_RULES
    + """\
  - id: big-move
    title: Price moved 5% or more in a day
    category: price
    severity: critical
    when:
      price: {change_pct: {abs_gte: 5}, window: 1d}
"""
)


def chart(closes: list[float], last_day: date) -> bytes:
    """A Yahoo chart v8 answer with one bar per trading session ending on `last_day`."""
    days: list[date] = []
    d = last_day
    while len(days) < len(closes):
        if is_trading_day(d):
            days.append(d)
        d -= timedelta(days=1)
    days.reverse()
    stamps = [int(datetime.combine(x, time(9, 30), tzinfo=NY).timestamp()) for x in days]
    quote = {"open": closes, "high": closes, "low": closes, "close": closes, "volume": [1_000_000] * len(closes)}
    doc = {
        "chart": {
            "result": [
                {
                    "meta": {"symbol": "KC", "exchangeTimezoneName": "America/New_York", "currency": "USD"},
                    "timestamp": stamps,
                    "indicators": {"quote": [quote]},
                }
            ],
            "error": None,
        }
    }
    return json.dumps(doc).encode()


def test_a_drop_alerts_once_with_the_news_before_it(tmp_path: Path, feed_server: FeedServer) -> None:
    closes = [10.0 + 0.01 * i for i in range(24)] + [10.23 * 0.92]  # last session: -8%
    feed_server.add("/v8/finance/chart/KC", chart(closes, NOW.date()), content_type="application/json")
    story_time = (NOW - timedelta(hours=2)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    feed = rss([("Kingsoft Cloud cuts full-year guidance", "https://wire.example.com/kc-cut", "KC lowered.")])
    feed_server.add("/news.xml", feed.replace(b"Thu, 26 Nov 2026 13:00:00 GMT", story_time.encode()))
    sources = (
        "sources:\n"
        f"  - id: news\n    url: {feed_server.url('/news.xml')}\n    allow_private: true\n    jitter: 0s\n"
        f"  - id: prices\n    kind: prices\n    provider: yahoo\n    every: 5m\n    market_hours: XNYS\n"
        f"    url: {feed_server.url('/v8/finance/chart/{symbol}')}\n    allow_private: true\n"
    )
    watch = "tickers:\n  - symbol: KC\n    name: Kingsoft Cloud Holdings Limited\n    aliases: [Kingsoft Cloud]\n"
    app = App.load(make_workspace(tmp_path, sources, rules=PRICE_RULES, watchlist=watch))
    pipeline = Pipeline(app.settings, app.repo, app.watchlist, app.specs)
    pipeline.sync(NOW)

    first = asyncio.run(pipeline.poll_due(NOW, app.rules))
    price_reports = [s for s in first.sources if s.key == "prices:KC"]
    assert price_reports and price_reports[0].error is None, price_reports
    assert [m.rule_id for _t, ms in price_reports[0].price_events for m in ms] == ["big-move"]
    assert len(app.repo.quote_history("KC")) == 25

    # still down 8% five polls later: no new alert (re-arms only after the condition was false)
    for k in range(1, 6):
        later = asyncio.run(pipeline.poll_due(NOW + timedelta(minutes=5 * k + 1), app.rules))
        assert all(not s.price_events for s in later.sources)
    # the next poll is scheduled on the session, not on a fixed clock
    src = next(s for s in app.repo.list_sources() if s.id == "prices:KC")
    assert src.next_due_at > NOW + timedelta(minutes=26)

    app.repo.add_subscriber("kc@example.com", ["KC"], now=NOW - timedelta(days=3))
    service = DigestService(app.settings, app.repo, app.watchlist)
    report = service.close_due(NOW + timedelta(minutes=31))
    assert report.alerts == 1
    alert_row = next(r for r in app.repo.outbox_rows() if r.kind == "alert")
    msg = email.message_from_bytes(alert_row.raw, policy=policy.default)
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "KC -8.0% vs previous close" in text
    assert "News in the 6 hours before" in text and "Kingsoft Cloud cuts full-year guidance" in text
