"""Settings precedence and sources.yaml expansion: the operator-facing contracts of issue 1."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from daemon.config import load_settings
from daemon.errors import ConfigError
from daemon.models import Ticker, Watchlist
from daemon.sources import load_sources, parse_duration

WATCH = Watchlist(
    tickers=(
        Ticker("KC", "Kingsoft Cloud Holdings Limited", "NASDAQ", ("Kingsoft Cloud",), "0001795589"),
        Ticker("NOCIK", "No Filer Ltd", "HKEX"),
    )
)


def test_env_overrides_file_overrides_defaults(tmp_path: Path) -> None:
    cfg = tmp_path / "keynews.yaml"
    cfg.write_text("database_url: sqlite:///from-file.db\nsmtp_port: 2525\nsmtp_starttls: true\n")
    s = load_settings(cfg, env={"KEYNEWS_SMTP_PORT": "587", "KEYNEWS_RULES_DIR": "/etc/keynews/rules"})
    assert s.database_url == "sqlite:///from-file.db"
    assert s.smtp_port == 587 and s.smtp_starttls is True
    assert s.rules_dir == Path("/etc/keynews/rules")
    assert load_settings(tmp_path / "absent.yaml", env={}).database_url == "sqlite:///keynews.db"


def test_bad_settings_are_named(tmp_path: Path) -> None:
    cfg = tmp_path / "keynews.yaml"
    cfg.write_text("smtp_prot: 25\n")
    with pytest.raises(ConfigError, match="unknown setting 'smtp_prot'"):
        load_settings(cfg, env={})
    with pytest.raises(ConfigError, match="smtp_port"):
        load_settings(tmp_path / "absent.yaml", env={"KEYNEWS_SMTP_PORT": "twenty-five"})


def test_per_ticker_sources_expand_and_skip_tickers_without_cik(tmp_path: Path) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text(
        "defaults: {every: 10m, jitter: 30s}\n"
        "sources:\n"
        "  - id: edgar\n    url: 'https://sec.example.com/cgi?CIK={cik}'\n    per_ticker: true\n    every: 5m\n"
        "  - id: news\n    url: 'https://news.example.com/rss?s={symbol}'\n    per_ticker: true\n"
        "  - id: wire\n    url: 'https://wire.example.com/rss'\n"
        "  - id: off\n    url: 'https://off.example.com/rss'\n    enabled: false\n"
    )
    specs = load_sources(path, WATCH)
    assert [(s.id, s.ticker, s.url) for s in specs] == [
        ("edgar", "KC", "https://sec.example.com/cgi?CIK=0001795589"),
        ("news", "KC", "https://news.example.com/rss?s=KC"),
        ("news", "NOCIK", "https://news.example.com/rss?s=NOCIK"),
        ("wire", None, "https://wire.example.com/rss"),
    ]
    assert specs[0].every == timedelta(minutes=5) and specs[3].every == timedelta(minutes=10)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("sources:\n  - id: a\n    url: x\n    evry: 5m\n", ":4:5: unknown key 'evry'"),
        ("sources:\n  - id: a\n    url: x\n  - id: a\n    url: y\n", ":4:5: duplicate source id 'a'"),
        ("sources:\n  - id: a\n    url: x\n    every: soon\n", "bad duration 'soon'"),
        ("sources:\n  - id: a\n    url: '{ticker}'\n    per_ticker: true\n", "unknown placeholder"),
        ("sources:\n  - id: a\n   url: x\n", ":3:"),
    ],
)
def test_bad_sources_name_file_line_col(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError) as exc:
        load_sources(path, WATCH)
    assert str(path) in str(exc.value) and message in str(exc.value)


def test_durations() -> None:
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("1.5h") == timedelta(minutes=90)
    assert parse_duration(30) == timedelta(seconds=30)
