"""A throwaway operator setup for integration tests: rules dir, SQLite file, settings.

Tests use their own small rule pack (not the default one in rules/) so what they assert does not
move when the default pack is tuned.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from daemon.config import Settings

TEST_RULES = """\
rules:
  - id: results
    title: Quarterly or annual results
    category: earnings
    severity: high
    when:
      any:
        - headline: {phrases: ["financial results", "quarterly results", "beats on revenue"]}
        - filing: {form: ["8-K"], items: ["2.02"]}
    unless:
      headline: {phrases: ["to announce", "conference call"]}
  - id: deals
    title: Mergers and acquisitions
    category: m&a
    severity: high
    when:
      headline: {phrases: ["to acquire", "merger agreement", "acquisition of"]}
  - id: guidance-cut
    title: Guidance cut
    category: guidance
    severity: critical
    when:
      headline: {regex: '\\b(cuts|lowers|slashes)\\b.*\\b(guidance|outlook|forecast)\\b'}
"""

WATCHLIST = """\
tickers:
  - symbol: KC
    exchange: NASDAQ
    name: Kingsoft Cloud Holdings Limited
    aliases: ["Kingsoft Cloud"]
    cik: "0001795589"
  - symbol: ACME
    exchange: NYSE
    name: Acme Widgets Inc.
    aliases: ["Acme Widgets"]
"""

NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)


def rss(items: list[tuple[str, str, str]], *, title: str = "Test wire") -> bytes:
    """A small RSS 2.0 document: (title, link, description) per item."""
    from xml.sax.saxutils import escape

    body = "".join(
        f"<item><title>{escape(t)}</title><link>{escape(link)}</link>"
        f"<description>{escape(d)}</description><guid>{escape(link)}</guid>"
        f"<pubDate>Thu, 26 Nov 2026 13:00:00 GMT</pubDate></item>"
        for t, link, d in items
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>{escape(title)}</title>'
        f"<link>https://wire.example.com/</link><description>t</description>{body}</channel></rss>"
    ).encode()


def make_workspace(
    tmp: Path, sources_yaml: str, *, rules: str = TEST_RULES, watchlist: str = WATCHLIST, **overrides: object
) -> Settings:
    rules_dir = tmp / "rules"
    rules_dir.mkdir(parents=True, exist_ok=True)
    (rules_dir / "pack.yaml").write_text(rules, encoding="utf-8")
    (rules_dir / "watchlist.yaml").write_text(watchlist, encoding="utf-8")
    (rules_dir / "sources.yaml").write_text(sources_yaml, encoding="utf-8")
    settings = Settings(
        database_url=f"sqlite:///{tmp / 'keynews.db'}",
        rules_dir=rules_dir,
        outbox_dir=tmp / "outbox",
        secret_key="test-secret",
        fetch_timeout=2.0,
        mail_from="keynews <news@keynews.test>",
        base_url="https://news.keynews.test",
    )
    return replace(settings, **overrides)  # type: ignore[arg-type]


def settings_env(settings: Settings) -> dict[str, str]:
    """The same settings as KEYNEWS_* variables, for tests that run the real `keynews` command."""
    env = {
        "KEYNEWS_DATABASE_URL": settings.database_url,
        "KEYNEWS_RULES_DIR": str(settings.rules_dir),
        "KEYNEWS_OUTBOX_DIR": str(settings.outbox_dir),
        "KEYNEWS_SECRET_KEY": settings.secret_key,
        "KEYNEWS_FETCH_TIMEOUT": str(settings.fetch_timeout),
        "KEYNEWS_MAIL_FROM": settings.mail_from,
        "KEYNEWS_BASE_URL": settings.base_url,
        "KEYNEWS_CONFIG": "/nonexistent/keynews.yaml",
        "KEYNEWS_WEB_PORT": "0",
    }
    if settings.smtp_host:
        env["KEYNEWS_SMTP_HOST"] = settings.smtp_host
        env["KEYNEWS_SMTP_PORT"] = str(settings.smtp_port)
    return env
