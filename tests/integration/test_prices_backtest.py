"""Backtests over real and hand-made daily histories, through the library and the CLI."""

from __future__ import annotations

import csv
import itertools
import json
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from daemon.prices.backtest import backtest
from daemon.prices.providers import read_stooq_bulk
from daemon.rules import load_rules_text

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
AAPL = SHARED / "corpus" / "prices" / "stooq_bulk_aapl.us.txt"
DEMO = REPO / "tests" / "fixtures" / "prices" / "bulk_demo.us.txt"

MOVE_10 = """
rules:
  - id: move-10
    title: Close-to-close move of 10% or more
    category: price
    severity: medium
    when:
      price: {change_pct: {abs_gte: 10}, window: 1d}
"""
MOVE_10_WEEK = MOVE_10.replace("id: move-10", "id: move-10-week") + "    cooldown: 7d\n"

needs_aapl = pytest.mark.skipif(not AAPL.exists(), reason=f"real AAPL history not found at {AAPL} (../shared)")


def expected_days(path: Path, ticker: str, threshold: float = 10.0) -> list[tuple[date, float]]:
    """Independent of daemon.prices: plain csv and arithmetic on consecutive rows."""
    with path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["<TICKER>"] == ticker]
    rows.sort(key=lambda r: r["<DATE>"])
    out = []
    for prev, cur in itertools.pairwise(rows):
        p, c = float(prev["<CLOSE>"]), float(cur["<CLOSE>"])
        pct = (c - p) / p * 100
        if abs(pct) >= threshold:
            out.append((datetime.strptime(cur["<DATE>"], "%Y%m%d").date(), pct))
    return out


@needs_aapl
def test_aapl_every_ten_percent_day_and_no_other() -> None:
    want = expected_days(AAPL, "AAPL.US")
    # guard against a threshold knife-edge making the comparison depend on float formula order
    with AAPL.open() as f:
        next(f)
        assert all(len(line.split(",")) == 10 for line in f)
    got = list(backtest(read_stooq_bulk(AAPL), load_rules_text(MOVE_10, "move10.yaml")))
    assert [(r["date"], r["ticker"], r["rule"]) for r in got] == [(d.isoformat(), "AAPL", "move-10") for d, _ in want]
    for r, (_, pct) in zip(got, want, strict=True):
        assert r["change_pct"] == pytest.approx(pct, abs=1e-3)
    assert len(got) == 63
    # consecutive sessions that both moved >=10% are two alerts: each bar is a new session,
    # so the rule re-arms without needing a day below the threshold in between
    days = [d for d, _ in want]
    pairs = [(a, b) for a, b in itertools.pairwise(days) if (b - a).days <= 3]
    assert (date(1997, 8, 6), date(1997, 8, 7)) in pairs
    assert (date(2001, 4, 18), date(2001, 4, 19)) in pairs


@needs_aapl
def test_aapl_cooldown_keeps_a_week_between_alerts() -> None:
    want: list[date] = []
    for d, _ in expected_days(AAPL, "AAPL.US"):
        if not want or d - want[-1] >= timedelta(days=7):
            want.append(d)
    got = [r["date"] for r in backtest(read_stooq_bulk(AAPL), load_rules_text(MOVE_10_WEEK, "w.yaml"))]
    assert got == [d.isoformat() for d in want]
    assert len(got) < 63


def test_demo_file_split_is_not_an_alert_and_tickers_interleave_by_date() -> None:
    got = list(backtest(read_stooq_bulk(DEMO), load_rules_text(MOVE_10, "move10.yaml")))
    assert [(r["date"], r["ticker"]) for r in got] == [
        ("2026-01-20", "DEMO"),
        ("2026-01-21", "DEMO"),
        ("2026-01-27", "OTHR"),
        ("2026-02-03", "DEMO"),
    ]
    # the raw file halves on 2026-02-18 (unadjusted 2:1 split): plain csv math would call it -50%
    raw = expected_days(DEMO, "DEMO.US")
    assert (date(2026, 2, 18), pytest.approx(-49.5, abs=0.1)) in raw
    assert "2026-02-18" not in {r["date"] for r in got}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon.cli_prices", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_backtest_writes_json_lines(tmp_path: Path) -> None:
    rules = tmp_path / "move.yaml"
    rules.write_text(MOVE_10, encoding="utf-8")
    res = run_cli("backtest", str(DEMO), "--rules", str(rules))
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert lines == [
        {"date": "2026-01-20", "ticker": "DEMO", "rule": "move-10", "change_pct": 11.9999},
        {"date": "2026-01-21", "ticker": "DEMO", "rule": "move-10", "change_pct": -12.0},
        {"date": "2026-01-27", "ticker": "OTHR", "rule": "move-10", "change_pct": -11.0},
        {"date": "2026-02-03", "ticker": "DEMO", "rule": "move-10", "change_pct": 15.0},
    ]


def test_cli_reports_bad_rules_and_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(MOVE_10.replace("change_pct", "chnge_pct"))
    res = run_cli("backtest", str(DEMO), "--rules", str(bad))
    assert res.returncode == 2 and res.stdout == ""
    assert f"{bad}:8:15: unknown price metric" in res.stderr
    good = tmp_path / "good.yaml"
    good.write_text(MOVE_10)
    notbulk = tmp_path / "x.csv"
    notbulk.write_text("Date,Open,High,Low,Close,Volume\n2026-03-18,1,1,1,1,1\n")
    res = run_cli("backtest", str(notbulk), "--rules", str(good))
    assert res.returncode == 1
    assert "not a Stooq bulk file" in res.stderr
