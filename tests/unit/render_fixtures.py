"""A fixed digest used by the render and message tests (and the goldens)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from daemon.models import Digest, DigestEntry, Explanation, Severity, TickerSection

NOW = datetime(2025, 3, 4, 22, 0, tzinfo=UTC)


def _entry(i: int, **kw: object) -> DigestEntry:
    base: dict[str, object] = {
        "title": f"Story number {i}",
        "url": f"https://news.example.com/story/{i}",
        "source": "Business Wire",
        "published_at": NOW - timedelta(hours=i),
        "summary": "A short clean summary of the story.",
        "categories": ("other",),
        "severity": Severity.MEDIUM,
        "explanations": (),
        "rule_titles": (),
    }
    base.update(kw)
    return DigestEntry(**base)  # type: ignore[arg-type]


def sample_digest(kind: str = "digest") -> Digest:
    aapl = TickerSection(
        symbol="AAPL",
        name="Apple Inc.",
        last_price=189.12,
        day_change_pct=1.4,
        overflow=3,
        entries=(
            _entry(
                1,
                title="Apple reports record first quarter results",
                categories=("earnings", "guidance"),
                severity=Severity.HIGH,
                explanations=(
                    Explanation("earnings.results", "title", "first quarter results", 21, 42),
                    Explanation("earnings.results", "summary", "financial results", 10, 27),
                    Explanation("guidance.raise", "summary", "raises outlook", 40, 54),
                ),
                rule_titles=("Quarterly results", "Guidance change"),
                also_reported_by=("Reuters", "GlobeNewswire"),
                move_since_pct=4.2,
                summary=(
                    "Apple today announced financial results for its fiscal 2025 first quarter "
                    "and raises outlook for services revenue, citing strong demand across regions."
                ),
            ),
            _entry(
                2,
                title='<script>alert("x")</script> Apple <img src=x onerror=alert(1)> buyback',
                url="javascript:alert(document.cookie)",
                summary='Click <a href="javascript:alert(1)" onclick="steal()">here</a> \r\nBcc: evil@example.com',
                categories=("capital-return",),
                explanations=(Explanation("capital.buyback", "title", "buyback"),),
                rule_titles=("Buyback",),
                move_since_pct=-0.8,
            ),
        ),
    )
    msft = TickerSection(
        symbol="MSFT",
        name="Microsoft Corporation",
        entries=(
            _entry(
                3,
                title="Microsoft files 8-K: departure of a director",
                source="SEC EDGAR",
                url="https://www.sec.gov/Archives/edgar/data/789019/0000950170-25-000001-index.htm",
                categories=("filing", "management"),
                severity=Severity.CRITICAL,
                explanations=(Explanation("sec.8k.502", "filing_items", "5.02"),),
                rule_titles=("Officer or director change (8-K 5.02)",),
                summary="",
            ),
        ),
    )
    return Digest(
        subscriber_email="ann@example.com",
        kind=kind,  # type: ignore[arg-type]
        window_key="2025-03-04",
        generated_at=NOW,
        tz="America/New_York",
        sections=(aapl, msft),
        subject="keynews: AAPL results, MSFT 8-K 5.02 (+2 more)",
        unsubscribe_url="https://keynews.example.com/u/tok123",
        preferences_url="https://keynews.example.com/p/tok123",
        more_url="https://keynews.example.com/d/2025-03-04",
    )


def huge_digest(tickers: int = 40, per_ticker: int = 40) -> Digest:
    sections = tuple(
        TickerSection(
            symbol=f"T{t:03d}",
            name=f"Ticker {t} Holdings",
            last_price=100.0 + t,
            day_change_pct=0.5,
            entries=tuple(
                _entry(
                    i,
                    title=f"T{t:03d} headline {i} " + "word " * 30,
                    summary="lorem ipsum " * 60,
                    categories=("earnings", "analyst"),
                    explanations=(Explanation("r1", "title", "headline"),),
                    rule_titles=("Rule one",),
                    also_reported_by=("Reuters", "Bloomberg"),
                )
                for i in range(per_ticker)
            ),
        )
        for t in range(tickers)
    )
    base = sample_digest()
    return Digest(
        subscriber_email=base.subscriber_email,
        kind="digest",
        window_key=base.window_key,
        generated_at=NOW,
        tz="Europe/Berlin",
        sections=sections,
        subject="keynews: a big day",
        unsubscribe_url=base.unsubscribe_url,
        preferences_url=base.preferences_url,
        more_url=base.more_url,
    )


def sample_alert() -> Digest:
    base = sample_digest("alert")
    first = base.sections[0]
    section = TickerSection(
        symbol=first.symbol,
        name=first.name,
        entries=first.entries[:1],
        last_price=first.last_price,
        day_change_pct=first.day_change_pct,
    )
    return Digest(
        subscriber_email=base.subscriber_email,
        kind="alert",
        window_key="alert:1",
        generated_at=NOW,
        tz=base.tz,
        sections=(section,),
        subject="AAPL: Apple reports record first quarter results",
        unsubscribe_url=base.unsubscribe_url,
        preferences_url=base.preferences_url,
        more_url="",
    )
